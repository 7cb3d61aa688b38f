//! The event loop: one thread, one epoll instance, timers in a heap (`timers`), and [`block_on`]
//! driving a future (in practice `LocalExecutor::run`) until it completes.
//!
//! ```text
//! block_on:  poll the future if it was woken
//!            → epoll_wait (0 ms if still woken, else until the next timer)
//!            → read the clock once → mark sources ready, wake their waiters → fire timers
//! ```
//!
//! Why not async-io, which the first versions used: it is built for many threads. Its reactor
//! sits behind a mutex with a helper thread that takes it over whenever `block_on` stops
//! ticking for a moment, so readiness crossed threads with a futex wake-up; every wait re-armed
//! its one-shot registration (`epoll_ctl`); every timer insert wrote an eventfd. ss-server made
//! about 50 system calls per proxied connection, 16 of them `epoll_ctl`, against libev's 28. Here
//! a socket is registered once, edge-triggered, a waker only sets a flag, and the clock is read
//! once per wake-up ([`now`]).
//!
//! Readiness is edge-triggered, so a source stays "ready" in a direction until an operation in
//! that direction reports `WouldBlock` ([`Async::try_read_with`] and friends clear it); waiting
//! is only for the next edge. Single-threaded by construction: wakers may be called from this
//! thread only (nothing here is `Send`).

mod executor;
mod io;
mod semaphore;
mod timer;
mod timers;

pub use executor::{LocalExecutor, Task};
pub use io::Async;
pub use semaphore::{OwnedPermit, Permit, Semaphore};
pub use timer::Timer;

use crate::sys::{Events, Poller};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Events taken per wait; more stay queued in the kernel for the next one.
const EVENTS_PER_WAIT: usize = 256;

const READ: usize = 0;
const WRITE: usize = 1;

/// The loop's state, one per thread, created on first use.
struct Reactor {
    poller: Poller,
    sources: RefCell<Slab>,
    timers: RefCell<timers::Timers>,
    now: Cell<Instant>,
}

/// Registered sources by key; freed keys are reused.
#[derive(Default)]
struct Slab {
    entries: Vec<Option<Rc<Source>>>,
    free: Vec<usize>,
}

/// One registered descriptor's readiness and waiters, per direction.
struct Source {
    key: usize,
    dirs: RefCell<[Direction; 2]>,
    /// The peer closed its side, or the descriptor failed (sticky).
    closed: Cell<bool>,
}

#[derive(Default)]
struct Direction {
    ready: bool,
    waiters: Waiters,
    /// Waits that found the direction ready with no operation attempted since: a debug check
    /// that I/O goes through `Async`'s operations, which see and report `WouldBlock`.
    #[cfg(debug_assertions)]
    ready_in_a_row: u32,
}

/// Tasks waiting for a direction's next edge. Almost always one (one task reads a socket and
/// one writes it), kept inline so that waiting allocates nothing; a UDP listener may have
/// several tasks waiting to send.
#[derive(Default)]
enum Waiters {
    #[default]
    None,
    One(Waker),
    Many(Vec<Waker>),
}

impl Waiters {
    fn add(&mut self, waker: &Waker) {
        match self {
            Waiters::None => *self = Waiters::One(waker.clone()),
            Waiters::One(w) if w.will_wake(waker) => {}
            Waiters::One(_) => {
                if let Waiters::One(first) = std::mem::take(self) {
                    *self = Waiters::Many(vec![first, waker.clone()]);
                }
            }
            Waiters::Many(all) => {
                if !all.iter().any(|w| w.will_wake(waker)) {
                    all.push(waker.clone());
                }
            }
        }
    }

    /// Moves every waiter to `out`.
    fn drain_into(&mut self, out: &mut Vec<Waker>) {
        match std::mem::take(self) {
            Waiters::None => {}
            Waiters::One(w) => out.push(w),
            Waiters::Many(mut all) => out.append(&mut all),
        }
    }
}

thread_local! {
    static REACTOR: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
}

fn reactor() -> std::io::Result<Rc<Reactor>> {
    REACTOR.with(|r| {
        let mut r = r.borrow_mut();
        if let Some(reactor) = &*r {
            return Ok(Rc::clone(reactor));
        }
        let reactor = Rc::new(Reactor {
            poller: Poller::new()?,
            sources: RefCell::default(),
            timers: RefCell::default(),
            now: Cell::new(Instant::now()),
        });
        *r = Some(Rc::clone(&reactor));
        Ok(reactor)
    })
}

/// The time the loop last woke up: what timers and idle timeouts are measured against, so that
/// a busy loop reads the clock once per wake-up rather than once per operation. Outside a
/// running loop (or before the first one), the current time.
pub fn now() -> Instant {
    REACTOR
        .with(|r| r.borrow().as_ref().map(|r| r.now.get()))
        .unwrap_or_else(Instant::now)
}

/// Wall-clock time in unix seconds (0 for a clock before 1970): what Shadowsocks 2022 stamps
/// its headers with. Read when needed, not cached: it can jump when NTP sets it.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Reactor {
    fn register(&self) -> Rc<Source> {
        let mut slab = self.sources.borrow_mut();
        let key = match slab.free.pop() {
            Some(k) => k,
            None => {
                slab.entries.push(None);
                slab.entries.len() - 1
            }
        };
        // Both directions start out ready: the first operation finds out.
        let ready = || Direction {
            ready: true,
            ..Direction::default()
        };
        let source = Rc::new(Source {
            key,
            dirs: RefCell::new([ready(), ready()]),
            closed: Cell::new(false),
        });
        slab.entries[key] = Some(Rc::clone(&source));
        source
    }

    fn unregister(&self, key: usize) {
        let mut slab = self.sources.borrow_mut();
        if let Some(slot) = slab.entries.get_mut(key) {
            if slot.take().is_some() {
                slab.free.push(key);
            }
        }
    }

    /// One turn: wait for events or the next timer (`block` = false: do not wait at all),
    /// then wake whatever became ready or due.
    fn turn(&self, events: &mut Events, wake: &mut Vec<Waker>, block: bool) -> std::io::Result<()> {
        let timeout = if block {
            self.timers
                .borrow()
                .earliest()
                .map(|when| when.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        let ready = self.poller.wait(events, timeout)?;
        self.now.set(Instant::now());
        {
            let slab = self.sources.borrow();
            for r in ready {
                let Some(Some(source)) = usize::try_from(r.key)
                    .ok()
                    .and_then(|k| slab.entries.get(k))
                else {
                    continue;
                };
                if r.closed {
                    source.closed.set(true);
                }
                let mut dirs = source.dirs.borrow_mut();
                for (dir, now_ready) in [(READ, r.readable), (WRITE, r.writable)] {
                    if now_ready {
                        dirs[dir].ready = true;
                        dirs[dir].waiters.drain_into(wake);
                    }
                }
            }
        }
        let now = self.now.get();
        {
            let mut timers = self.timers.borrow_mut();
            while let Some(w) = timers.pop_due(now) {
                wake.push(w);
            }
        }
        // Woken outside the borrows: a waker may run code that registers or drops sources.
        for w in wake.drain(..) {
            w.wake();
        }
        Ok(())
    }
}

impl Source {
    /// Ready now in `dir`, or registers the task to be woken at the next edge.
    fn poll_ready(&self, dir: usize, cx: &mut Context<'_>) -> Poll<()> {
        let mut dirs = self.dirs.borrow_mut();
        let d = &mut dirs[dir];
        if d.ready {
            #[cfg(debug_assertions)]
            {
                d.ready_in_a_row += 1;
                debug_assert!(
                    d.ready_in_a_row < 10_000,
                    "a source was found ready 10,000 times with no operation attempted: I/O on \
                     it bypasses Async::try_read_with/try_write_with, so WouldBlock goes unseen"
                );
            }
            return Poll::Ready(());
        }
        d.waiters.add(cx.waker());
        Poll::Pending
    }

    /// An operation in `dir` was attempted; if it would block, wait for the next edge.
    fn attempted(&self, dir: usize, would_block: bool) {
        let mut dirs = self.dirs.borrow_mut();
        if would_block {
            dirs[dir].ready = false;
        }
        #[cfg(debug_assertions)]
        {
            dirs[dir].ready_in_a_row = 0;
        }
    }
}

/// The waker `block_on` hands out: it only raises a flag, since it is only ever called on the
/// loop's own thread, between waits.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `future` to completion on this thread, waiting for I/O and timers in between. Fails
/// only if the epoll instance cannot be created or waited on.
pub fn block_on<F: Future>(future: F) -> std::io::Result<F::Output> {
    let reactor = reactor()?;
    reactor.now.set(Instant::now());
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut events = Events::with_capacity(EVENTS_PER_WAIT);
    let mut wake = Vec::new();
    loop {
        if flag.0.swap(false, Ordering::Relaxed) {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return Ok(out);
            }
        }
        // Still woken (an executor that yields to let I/O in): look for events, do not sleep.
        let block = !flag.0.load(Ordering::Relaxed);
        reactor.turn(&mut events, &mut wake, block)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (Async<TcpStream>, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (Async::new(s).unwrap(), peer)
    }

    #[test]
    fn readiness_lasts_until_an_operation_would_block() {
        let (a, mut peer) = pair();
        block_on(async {
            // Fresh sources are assumed ready: the first attempt tells.
            a.readable().await.unwrap();
            let mut buf = [0u8; 4];
            let e = a.try_read_with(|s| (&*s).read(&mut buf)).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
            peer.write_all(b"abcdefgh").unwrap();
            a.readable().await.unwrap();
            // A read that took only part of the data leaves the source ready.
            assert_eq!(a.try_read_with(|s| (&*s).read(&mut buf)).unwrap(), 4);
            a.readable().await.unwrap();
            assert_eq!(a.try_read_with(|s| (&*s).read(&mut buf)).unwrap(), 4);
            assert_eq!(&buf, b"efgh");
        })
        .unwrap();
    }

    #[test]
    fn a_short_read_does_not_hide_a_fin_already_seen() {
        let (a, mut peer) = pair();
        block_on(async {
            peer.write_all(b"abc").unwrap();
            peer.shutdown(std::net::Shutdown::Write).unwrap();
            // Let the loop take the edge (data and FIN) first.
            Timer::after(Duration::from_millis(20)).await;
            let mut buf = [0u8; 16];
            assert_eq!(a.try_read_with(|mut s| s.read(&mut buf)).unwrap(), 3);
            a.drained();
            let readable =
                futures_lite::future::or(async { a.readable().await.map(|()| true) }, async {
                    Timer::after(Duration::from_secs(2)).await;
                    Ok(false)
                });
            assert!(readable.await.unwrap(), "the EOF was never reported");
            assert_eq!(a.try_read_with(|mut s| s.read(&mut buf)).unwrap(), 0);
        })
        .unwrap();
    }

    #[test]
    fn timers_fire_in_order_and_dropped_ones_never() {
        let order = Rc::new(RefCell::new(Vec::new()));
        block_on(async {
            let ex = crate::rt::LocalExecutor::new();
            for (i, ms) in [(1, 30u64), (0, 10), (2, 50)] {
                let order = Rc::clone(&order);
                ex.spawn_detached(async move {
                    Timer::after(Duration::from_millis(ms)).await;
                    order.borrow_mut().push(i);
                });
            }
            let dropped = Rc::clone(&order);
            let never = ex.spawn(async move {
                Timer::after(Duration::from_millis(20)).await;
                dropped.borrow_mut().push(99);
            });
            ex.run(async {
                Timer::after(Duration::from_millis(15)).await;
                drop(never);
                Timer::after(Duration::from_millis(60)).await;
            })
            .await;
        })
        .unwrap();
        assert_eq!(*order.borrow(), [0, 1, 2]);
        let r = reactor().unwrap();
        assert!(
            r.timers.borrow().is_empty(),
            "a dropped timer stayed registered"
        );
    }

    #[test]
    fn every_waiter_is_woken_once() {
        use std::task::Wake;
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let counts: Vec<Arc<Count>> = (0..3)
            .map(|_| Arc::new(Count(Default::default())))
            .collect();
        let wakers: Vec<Waker> = counts.iter().map(|c| Waker::from(Arc::clone(c))).collect();
        let mut w = Waiters::default();
        for waker in wakers.iter().chain(&wakers) {
            w.add(waker);
        }
        let mut out = Vec::new();
        w.drain_into(&mut out);
        assert_eq!(out.len(), 3, "a waker registered twice is kept once");
        out.drain(..).for_each(Waker::wake);
        assert!(counts.iter().all(|c| c.0.load(Ordering::Relaxed) == 1));
        w.drain_into(&mut out);
        assert!(out.is_empty());
        w.add(&wakers[1]);
        w.drain_into(&mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn dropped_sources_free_their_key() {
        let r = reactor().unwrap();
        let before = r.sources.borrow().entries.iter().flatten().count();
        let (a, _peer) = pair();
        assert_eq!(
            r.sources.borrow().entries.iter().flatten().count(),
            before + 1
        );
        drop(a);
        assert_eq!(r.sources.borrow().entries.iter().flatten().count(), before);
    }
}
