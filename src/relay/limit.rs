//! A connection cap: accept loops take a permit per connection and wait when none is left.

use event_listener::{Event, IntoNotification};
use std::cell::Cell;
use std::rc::Rc;

pub struct Limit {
    left: Cell<usize>,
    freed: Event,
}

/// Held for the life of one connection.
pub struct Permit(Rc<Limit>);

impl Limit {
    pub fn new(max: usize) -> Rc<Limit> {
        Rc::new(Limit {
            left: Cell::new(max.max(1)),
            freed: Event::new(),
        })
    }

    pub async fn acquire(self: &Rc<Self>) -> Permit {
        loop {
            if let Some(p) = self.try_acquire() {
                return p;
            }
            let listener = self.freed.listen();
            if let Some(p) = self.try_acquire() {
                return p;
            }
            listener.await;
        }
    }

    fn try_acquire(self: &Rc<Self>) -> Option<Permit> {
        let left = self.left.get();
        if left == 0 {
            return None;
        }
        self.left.set(left - 1);
        Some(Permit(Rc::clone(self)))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.left.set(self.0.left.get() + 1);
        // `additional`: several permits freed in a row must wake as many waiters.
        self.0.freed.notify(1.additional());
    }
}
