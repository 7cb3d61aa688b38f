//! The executor: tasks on this thread, polled when woken, inside [`super::block_on`].
//!
//! Why not async-executor, which the first versions used: it is built for many threads (a
//! lock-free queue, work stealing, a random source per runner), and async-task gives every kind
//! of spawned future eight functions of its own (schedule, wake, clone, drop, …). On the mipsel
//! router that machinery was about 18 KB of the binary. Here a task is a boxed future in a slot;
//! all tasks share one waker type, which queues the task's slot and wakes the loop; `run` polls
//! the queued tasks between polls of its own future.
//!
//! ```text
//! spawn → slot (future, generation) + queued → run: poll queued slots, put back if pending
//! wake  → queue (slot, generation) once until polled → wake the future block_on drives
//! Task dropped before its end → the slot's future dropped (cancelled); detach() keeps it;
//! spawn_detached keeps only the future
//! ```
//!
//! A stale waker (its task ended and the slot was reused) carries the old generation and is
//! ignored. Futures are dropped only outside the slots' borrow, so a future whose drop cancels
//! other tasks (or spawns) does not find them borrowed.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::mem;
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Tasks polled per turn of `run` before it lets the loop look for I/O.
const BUDGET: usize = 256;

type Boxed = Pin<Box<dyn Future<Output = ()>>>;

/// Spawns and runs tasks on this thread.
pub struct LocalExecutor {
    inner: Rc<Inner>,
}

struct Inner {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    ready: Arc<Ready>,
}

struct Slot {
    generation: u32,
    state: State,
    waker: Option<Arc<TaskWaker>>,
}

enum State {
    Free,
    Idle(Boxed),
    /// Taken out to be polled.
    Running,
    /// Its `Task` was dropped while it was being polled: dropped after the poll.
    Cancelled,
}

/// Slots woken since `run` last looked, and whom to wake for them.
struct Ready {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    woken: Vec<(usize, u32)>,
    runner: Option<Waker>,
}

impl Ready {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned lock still holds a usable queue.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct TaskWaker {
    slot: usize,
    generation: u32,
    /// Queued and not polled since: more wakes add nothing.
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::Relaxed) {
            return;
        }
        let runner = {
            let mut q = self.ready.lock();
            q.woken.push((self.slot, self.generation));
            q.runner.clone()
        };
        if let Some(w) = runner {
            w.wake();
        }
    }
}

/// A spawned task's result, and who waits for it.
struct Output<T> {
    value: RefCell<Option<T>>,
    joiner: RefCell<Option<Waker>>,
    finished: Cell<bool>,
}

/// A spawned task: awaiting it gives its result; dropping it cancels the task, unless it was
/// detached.
pub struct Task<T> {
    inner: Weak<Inner>,
    slot: usize,
    generation: u32,
    output: Rc<Output<T>>,
    detached: bool,
}

impl LocalExecutor {
    pub fn new() -> LocalExecutor {
        LocalExecutor {
            inner: Rc::new(Inner {
                slots: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                ready: Arc::new(Ready {
                    queue: Mutex::new(Queue::default()),
                }),
            }),
        }
    }

    pub fn spawn<T: 'static>(&self, future: impl Future<Output = T> + 'static) -> Task<T> {
        let output = Rc::new(Output {
            value: RefCell::new(None),
            joiner: RefCell::new(None),
            finished: Cell::new(false),
        });
        let out = Rc::clone(&output);
        let (slot, generation) = self.inner.insert(Box::pin(async move {
            let value = future.await;
            *out.value.borrow_mut() = Some(value);
            out.finished.set(true);
            let joiner = out.joiner.borrow_mut().take();
            if let Some(w) = joiner {
                w.wake();
            }
        }));
        Task {
            inner: Rc::downgrade(&self.inner),
            slot,
            generation,
            output,
            detached: false,
        }
    }

    /// Spawns a task no one waits for: the future alone is kept (no result slot, no handle),
    /// which is what a connection's task costs.
    pub fn spawn_detached(&self, future: impl Future<Output = ()> + 'static) {
        self.inner.insert(Box::pin(future));
    }

    /// Runs the tasks while `future` runs; returns its output.
    pub async fn run<T>(&self, future: impl Future<Output = T>) -> T {
        let mut future = pin!(future);
        let mut batch = Vec::new();
        poll_fn(|cx| {
            if let Poll::Ready(v) = future.as_mut().poll(cx) {
                return Poll::Ready(v);
            }
            let mut polled = 0;
            loop {
                {
                    let mut q = self.inner.ready.lock();
                    if !q.runner.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        q.runner = Some(cx.waker().clone());
                    }
                    mem::swap(&mut q.woken, &mut batch);
                }
                if batch.is_empty() {
                    return Poll::Pending;
                }
                for (slot, generation) in batch.drain(..) {
                    self.inner.poll_task(slot, generation);
                    polled += 1;
                }
                if polled >= BUDGET {
                    // Let the loop look for I/O; it comes straight back.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        })
        .await
    }
}

impl Default for LocalExecutor {
    fn default() -> Self {
        LocalExecutor::new()
    }
}

impl Inner {
    fn insert(&self, future: Boxed) -> (usize, u32) {
        let mut slots = self.slots.borrow_mut();
        let free = self.free.borrow_mut().pop();
        let slot = match free {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    generation: 0,
                    state: State::Free,
                    waker: None,
                });
                slots.len() - 1
            }
        };
        let Some(s) = slots.get_mut(slot) else {
            return (usize::MAX, 0);
        };
        let waker = Arc::new(TaskWaker {
            slot,
            generation: s.generation,
            queued: AtomicBool::new(false),
            ready: Arc::clone(&self.ready),
        });
        s.state = State::Idle(future);
        s.waker = Some(Arc::clone(&waker));
        drop(slots);
        waker.wake_by_ref();
        (slot, waker.generation)
    }

    fn poll_task(&self, slot: usize, generation: u32) {
        let (mut future, waker) = {
            let mut slots = self.slots.borrow_mut();
            let Some(s) = slots.get_mut(slot).filter(|s| s.generation == generation) else {
                return;
            };
            let Some(waker) = s.waker.clone() else { return };
            match mem::replace(&mut s.state, State::Running) {
                State::Idle(f) => (f, waker),
                other => {
                    s.state = other;
                    return;
                }
            }
        };
        // Wakes from here on queue the task again.
        waker.queued.store(false, Ordering::Relaxed);
        let std_waker = Waker::from(waker);
        let done = future
            .as_mut()
            .poll(&mut Context::from_waker(&std_waker))
            .is_ready();
        let mut slots = self.slots.borrow_mut();
        let Some(s) = slots.get_mut(slot) else { return };
        if !done && matches!(s.state, State::Running) {
            s.state = State::Idle(future);
            return;
        }
        self.release(s, slot);
        drop(slots);
        drop(future);
    }

    fn release(&self, s: &mut Slot, slot: usize) {
        s.state = State::Free;
        s.waker = None;
        s.generation = s.generation.wrapping_add(1);
        self.free.borrow_mut().push(slot);
    }

    fn cancel(&self, slot: usize, generation: u32) {
        let mut slots = self.slots.borrow_mut();
        let Some(s) = slots.get_mut(slot).filter(|s| s.generation == generation) else {
            return;
        };
        let dropped = match mem::replace(&mut s.state, State::Free) {
            State::Idle(f) => Some(f),
            State::Running => {
                s.state = State::Cancelled;
                return;
            }
            other => {
                s.state = other;
                return;
            }
        };
        self.release(s, slot);
        drop(slots);
        drop(dropped);
    }
}

impl<T> Task<T> {
    pub fn is_finished(&self) -> bool {
        self.output.finished.get()
    }

    /// Lets the task run on with no one waiting for it.
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(v) = self.output.value.borrow_mut().take() {
            return Poll::Ready(v);
        }
        *self.output.joiner.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if self.detached || self.output.finished.get() {
            return;
        }
        if let Some(inner) = self.inner.upgrade() {
            inner.cancel(self.slot, self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_give_their_output_and_stop_when_dropped() {
        let ex = Rc::new(LocalExecutor::new());
        let log = Rc::new(RefCell::new(Vec::new()));
        let out = crate::rt::block_on(ex.run(async {
            let l = Rc::clone(&log);
            let a = ex.spawn(async move {
                l.borrow_mut().push("a");
                7
            });
            let l = Rc::clone(&log);
            let never = ex.spawn(async move {
                crate::rt::Timer::after(std::time::Duration::from_secs(3600)).await;
                l.borrow_mut().push("never");
            });
            let l = Rc::clone(&log);
            ex.spawn(async move {
                l.borrow_mut().push("detached");
            })
            .detach();
            let v = a.await;
            drop(never);
            crate::rt::Timer::after(std::time::Duration::from_millis(5)).await;
            v
        }))
        .unwrap();
        assert_eq!(out, 7);
        let mut seen = log.borrow().clone();
        seen.sort();
        assert_eq!(seen, ["a", "detached"]);
        // Both slots came back: the cancelled one and the finished ones.
        assert!(ex.inner.free.borrow().len() >= 2);
    }

    #[test]
    fn a_task_cancelled_while_it_runs_is_dropped_after_its_poll() {
        let ex = Rc::new(LocalExecutor::new());
        let holder: Rc<RefCell<Option<Task<()>>>> = Rc::default();
        let dropped = Rc::new(Cell::new(false));
        struct Flag(Rc<Cell<bool>>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let h = Rc::clone(&holder);
        let flag = Flag(Rc::clone(&dropped));
        let task = ex.spawn(async move {
            let _flag = flag;
            // Drops its own handle: the slot is marked and freed once this poll returns.
            drop(h.borrow_mut().take());
            std::future::pending::<()>().await;
        });
        *holder.borrow_mut() = Some(task);
        crate::rt::block_on(ex.run(async {
            crate::rt::Timer::after(std::time::Duration::from_millis(5)).await;
        }))
        .unwrap();
        assert!(dropped.get());
        assert!(matches!(ex.inner.slots.borrow()[0].state, State::Free));
    }

    #[test]
    fn a_stale_waker_is_ignored() {
        let ex = LocalExecutor::new();
        let kept: Rc<RefCell<Option<Waker>>> = Rc::default();
        let k = Rc::clone(&kept);
        ex.spawn(poll_fn(move |cx| {
            *k.borrow_mut() = Some(cx.waker().clone());
            Poll::Ready(())
        }))
        .detach();
        let polls = Rc::new(Cell::new(0));
        crate::rt::block_on(ex.run(async {
            crate::rt::Timer::after(std::time::Duration::from_millis(1)).await;
        }))
        .unwrap();
        let p = Rc::clone(&polls);
        ex.spawn(poll_fn(move |_| {
            p.set(p.get() + 1);
            Poll::<()>::Pending
        }))
        .detach();
        // The first task's waker names slot 0 at the old generation: it must not poll the
        // new task in that slot.
        crate::rt::block_on(ex.run(async {
            crate::rt::Timer::after(std::time::Duration::from_millis(1)).await;
            if let Some(w) = kept.borrow_mut().take() {
                w.wake();
            }
            crate::rt::Timer::after(std::time::Duration::from_millis(1)).await;
        }))
        .unwrap();
        assert_eq!(polls.get(), 1);
    }
}
