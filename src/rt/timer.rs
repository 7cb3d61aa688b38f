//! Timers: a deadline in the reactor's heap while a task waits on it, removed when the
//! timer fires or is dropped. No system call: the loop's next wait is bounded by the earliest.

use super::timers::Handle;
use super::{now, reactor, Reactor};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Resolves at (or just after) its deadline, measured on the loop's clock ([`super::now`]).
pub struct Timer {
    when: Instant,
    /// The heap's handle while registered.
    handle: Option<Handle>,
    reactor: Option<Rc<Reactor>>,
}

impl Timer {
    pub fn at(when: Instant) -> Timer {
        Timer {
            when,
            handle: None,
            reactor: None,
        }
    }

    pub fn after(d: Duration) -> Timer {
        Timer::at(now() + d)
    }

    fn unregister(&mut self) {
        if let (Some(h), Some(r)) = (self.handle.take(), &self.reactor) {
            r.timers.borrow_mut().remove(h);
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
        // The loop removes a timer only once its deadline passed, so a registered one is
        // found; registering again is safe all the same.
        let registered = self.handle.is_some_and(|h| timers.set_waker(h, cx.waker()));
        if !registered {
            self.handle = Some(timers.insert(when, cx.waker().clone()));
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.unregister();
    }
}
