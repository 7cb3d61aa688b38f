//! A counting semaphore for tasks on the loop's thread: the one waiting primitive behind the
//! connection cap, the buffer pool and the resolver's queries in flight.
//!
//! Waiters park on an `event_listener::Event`; every unit given back wakes one more waiter
//! (`additional`), so units returned in a row before the first woken task runs never strand
//! the others.

use event_listener::{Event, IntoNotification};
use std::cell::Cell;
use std::rc::Rc;

pub struct Semaphore {
    left: Cell<usize>,
    freed: Event,
}

/// One unit, given back when dropped.
pub struct Permit<'a>(&'a Semaphore);

/// One unit of a shared semaphore, for holders that outlive a borrow (a connection's task).
pub struct OwnedPermit(Rc<Semaphore>);

impl Semaphore {
    pub fn new(units: usize) -> Semaphore {
        Semaphore {
            left: Cell::new(units),
            freed: Event::new(),
        }
    }

    /// Units free now.
    pub fn available(&self) -> usize {
        self.left.get()
    }

    /// Takes a unit without a guard, waiting while none is free; the caller gives it back
    /// with [`Semaphore::release`] (the buffer pool, whose blocks carry the unit).
    pub async fn take_unit(&self) {
        loop {
            if self.try_take_unit() {
                return;
            }
            let listener = self.freed.listen();
            if self.try_take_unit() {
                return;
            }
            listener.await;
        }
    }

    pub fn try_take_unit(&self) -> bool {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                true
            }
            None => false,
        }
    }

    /// Gives back a unit taken with [`Semaphore::take_unit`].
    pub fn release(&self) {
        self.left.set(self.left.get().saturating_add(1));
        self.freed.notify(1.additional());
    }

    pub async fn acquire(&self) -> Permit<'_> {
        self.take_unit().await;
        Permit(self)
    }

    pub fn try_acquire_owned(self: &Rc<Self>) -> Option<OwnedPermit> {
        self.try_take_unit().then(|| OwnedPermit(Rc::clone(self)))
    }

    pub async fn acquire_owned(self: &Rc<Self>) -> OwnedPermit {
        self.take_unit().await;
        OwnedPermit(Rc::clone(self))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn waiters_get_units_as_they_come_back() {
        let sem = Rc::new(Semaphore::new(2));
        let ex = crate::rt::LocalExecutor::new();
        future::block_on(ex.run(async {
            let a = sem.acquire_owned().await;
            let b = sem.acquire().await;
            assert_eq!(sem.available(), 0);
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let s = Rc::clone(&sem);
                    ex.spawn(async move { drop(s.acquire_owned().await) })
                })
                .collect();
            future::yield_now().await;
            assert!(waiters.iter().all(|w| !w.is_finished()));
            // Two units back in a row: both waiters must run, not just the first woken.
            drop(a);
            drop(b);
            for w in waiters {
                w.await;
            }
            assert_eq!(sem.available(), 2);
        }));
    }
}
