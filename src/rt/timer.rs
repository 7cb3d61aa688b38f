//! Timers: a deadline in the reactor's ordered map while a task waits on it, removed when the
//! timer fires or is dropped. No system call: the loop's next wait is bounded by the earliest.

use super::{now, reactor, Reactor};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Resolves at (or just after) its deadline, measured on the loop's clock ([`super::now`]).
pub struct Timer {
    when: Instant,
    /// The map key while registered.
    id: Option<u64>,
    reactor: Option<Rc<Reactor>>,
}

impl Timer {
    pub fn at(when: Instant) -> Timer {
        Timer {
            when,
            id: None,
            reactor: None,
        }
    }

    pub fn after(d: Duration) -> Timer {
        Timer::at(now() + d)
    }

    fn unregister(&mut self) {
        if let (Some(id), Some(r)) = (self.id.take(), &self.reactor) {
            r.timers.borrow_mut().remove(&(self.when, id));
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if now() >= self.when {
            self.unregister();
            return Poll::Ready(());
        }
        if self.reactor.is_none() {
            // Without a reactor (it could not be created) nothing would ever wake this timer:
            // fire now rather than hang; block_on reports the failure itself.
            match reactor() {
                Ok(r) => self.reactor = Some(r),
                Err(_) => return Poll::Ready(()),
            }
        }
        let when = self.when;
        let Some(r) = self.reactor.clone() else {
            return Poll::Ready(());
        };
        let mut timers = r.timers.borrow_mut();
        match self.id {
            Some(id) => {
                if let Some(w) = timers.get_mut(&(when, id)) {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                } else {
                    // Not reachable (the loop removes a timer only once its deadline passed),
                    // but re-registering is always safe.
                    timers.insert((when, id), cx.waker().clone());
                }
            }
            None => {
                let id = r.next_timer.get();
                r.next_timer.set(id.wrapping_add(1));
                timers.insert((when, id), cx.waker().clone());
                drop(timers);
                self.id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.unregister();
    }
}
