//! The timers' deadlines: an indexed binary min-heap, ordered by (deadline, registration).
//!
//! A `BTreeMap` did this before; its node code (insert, remove, merging and stealing between
//! nodes) was 7 KB of the mipsel router binary, the heap is a tenth of that. Timers are removed
//! as often as they fire (a connection's idle timer goes when the connection ends), so removal
//! by handle is O(log n) and leaves nothing behind: memory follows the live timers.
//!
//! ```text
//! slots: [when, seq, waker, pos] …   a timer's slot is its handle (with seq against reuse)
//! heap:  [slot index] …              heap[0] is the earliest; slots[heap[i]].pos == i
//! ```

use std::task::Waker;
use std::time::Instant;

/// A registered timer: its slot and the sequence number it was registered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    slot: usize,
    seq: u64,
}

struct Slot {
    when: Instant,
    seq: u64,
    waker: Option<Waker>,
    /// Index in `heap`; meaningless while the slot is free.
    pos: usize,
}

#[derive(Default)]
pub struct Timers {
    slots: Vec<Slot>,
    heap: Vec<usize>,
    free: Vec<usize>,
    seq: u64,
}

impl Timers {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn insert(&mut self, when: Instant, waker: Waker) -> Handle {
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        let pos = self.heap.len();
        let slot = Slot {
            when,
            seq,
            waker: Some(waker),
            pos,
        };
        let i = match self.free.pop() {
            Some(i) if i < self.slots.len() => {
                self.slots[i] = slot;
                i
            }
            _ => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.heap.push(i);
        self.sift_up(pos);
        Handle { slot: i, seq }
    }

    /// The timer's slot, if `h` is still registered.
    fn live(&mut self, h: Handle) -> Option<&mut Slot> {
        self.slots
            .get_mut(h.slot)
            .filter(|s| s.seq == h.seq && s.waker.is_some())
    }

    /// Replaces the waker of a registered timer; false if it is no longer registered.
    pub fn set_waker(&mut self, h: Handle, waker: &Waker) -> bool {
        match self.live(h) {
            Some(s) => {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    s.waker = Some(waker.clone());
                }
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, h: Handle) -> Option<Waker> {
        let pos = self.live(h)?.pos;
        self.take_at(pos)
    }

    pub fn earliest(&self) -> Option<Instant> {
        let top = *self.heap.first()?;
        self.slots.get(top).map(|s| s.when)
    }

    /// The waker of the earliest timer, removed, if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Waker> {
        if self.earliest()? > now {
            return None;
        }
        self.take_at(0)
    }

    /// Removes the timer at heap position `pos`, freeing its slot.
    fn take_at(&mut self, pos: usize) -> Option<Waker> {
        let last = self.heap.len().checked_sub(1)?;
        if pos > last {
            return None;
        }
        self.heap.swap(pos, last);
        let i = self.heap.pop()?;
        if pos < last {
            self.set_pos(pos);
            self.sift_down(pos);
            self.sift_up(pos);
        }
        self.free.push(i);
        self.slots.get_mut(i)?.waker.take()
    }

    fn key(&self, pos: usize) -> Option<(Instant, u64)> {
        let s = self.slots.get(*self.heap.get(pos)?)?;
        Some((s.when, s.seq))
    }

    fn set_pos(&mut self, pos: usize) {
        if let Some(&i) = self.heap.get(pos) {
            if let Some(s) = self.slots.get_mut(i) {
                s.pos = pos;
            }
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.set_pos(a);
        self.set_pos(b);
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.key(pos) >= self.key(parent) {
                break;
            }
            self.swap(pos, parent);
            pos = parent;
        }
        self.set_pos(pos);
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let (l, r) = (2 * pos + 1, 2 * pos + 2);
            let mut least = pos;
            for c in [l, r] {
                if c < self.heap.len() && self.key(c) < self.key(least) {
                    least = c;
                }
            }
            if least == pos {
                return;
            }
            self.swap(pos, least);
            pos = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Random inserts, removals and pops against a sorted list, deterministic.
    #[test]
    fn the_heap_behaves_as_a_sorted_list() {
        let base = Instant::now();
        let mut t = Timers::default();
        let mut model: Vec<(Instant, u64, Handle)> = Vec::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut seq = 0;
        for _ in 0..20_000 {
            match rand() % 4 {
                0 | 1 => {
                    let when = base + Duration::from_millis(rand() % 500);
                    let h = t.insert(when, Waker::noop().clone());
                    model.push((when, seq, h));
                    seq += 1;
                }
                2 if !model.is_empty() => {
                    let k = (rand() as usize) % model.len();
                    let (_, _, h) = model.remove(k);
                    assert!(t.remove(h).is_some());
                    assert!(t.remove(h).is_none(), "removed twice");
                    assert!(!t.set_waker(h, Waker::noop()));
                }
                _ => {
                    let now = base + Duration::from_millis(rand() % 500);
                    model.sort_by_key(|m| (m.0, m.1));
                    let due = model.iter().take_while(|(w, _, _)| *w <= now).count();
                    for _ in 0..due {
                        assert!(t.pop_due(now).is_some());
                    }
                    assert!(t.pop_due(now).is_none());
                    model.drain(..due);
                }
            }
            model.sort_by_key(|m| (m.0, m.1));
            assert_eq!(t.earliest(), model.first().map(|m| m.0));
            assert_eq!(t.heap.len(), model.len());
        }
        // Slots are reused: at most as many as were ever live at once.
        assert!(t.slots.len() <= 20_000);
    }

    #[test]
    fn ties_fire_in_registration_order() {
        let when = Instant::now();
        let mut t = Timers::default();
        let hs: Vec<Handle> = (0..5)
            .map(|_| t.insert(when, Waker::noop().clone()))
            .collect();
        let order: Vec<usize> = (0..5)
            .map(|_| {
                let top = t.heap[0];
                t.pop_due(when).unwrap();
                top
            })
            .collect();
        assert_eq!(order, hs.iter().map(|h| h.slot).collect::<Vec<_>>());
        assert!(t.is_empty());
    }
}
