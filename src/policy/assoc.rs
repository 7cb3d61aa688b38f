//! The UDP association table: one entry per client address, at most `capacity` of them, idle
//! expiry, and eviction of the least recently active entry when full.
//!
//! Every operation is O(1) (sweeping is O(expired)): entries sit in a slab threaded on a
//! doubly linked list from most to least recently active, and a hash map finds them by
//! address. Memory grows with use, up to `capacity` entries, and is kept for reuse: a flood
//! of spoofed sources costs one eviction per datagram, never a scan of the table.
//!
//! Pure: the caller passes `now` (the event loop's clock). Removed values are handed back to
//! the caller, so a value that cancels tasks on drop is dropped outside any borrow of the table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const NIL: u32 = u32::MAX;

struct Entry<V> {
    key: SocketAddr,
    value: V,
    last: Instant,
    /// Neighbours in the activity list (slab indexes; `NIL` at the ends).
    newer: u32,
    older: u32,
}

pub struct AssocTable<V> {
    slab: Vec<Option<Entry<V>>>,
    free: Vec<u32>,
    index: HashMap<SocketAddr, u32>,
    newest: u32,
    oldest: u32,
    capacity: usize,
    timeout: Duration,
}

impl<V> AssocTable<V> {
    /// `capacity` is clamped to 1..=2^31 (slab indexes are `u32`).
    pub fn new(capacity: usize, timeout: Duration) -> AssocTable<V> {
        AssocTable {
            slab: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            newest: NIL,
            oldest: NIL,
            capacity: capacity.clamp(1, 1 << 31),
            timeout,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The value for `key`, marked active at `now`.
    pub fn get(&mut self, key: &SocketAddr, now: Instant) -> Option<&V> {
        let i = *self.index.get(key)?;
        self.touch_at(i, now);
        self.entry(i).map(|e| &e.value)
    }

    /// Like [`AssocTable::get`], for changing the value.
    pub fn get_mut(&mut self, key: &SocketAddr, now: Instant) -> Option<&mut V> {
        let i = *self.index.get(key)?;
        self.touch_at(i, now);
        self.slab
            .get_mut(i as usize)
            .and_then(Option::as_mut)
            .map(|e| &mut e.value)
    }

    /// Marks `key` active (replies count as activity too).
    pub fn touch(&mut self, key: &SocketAddr, now: Instant) {
        if let Some(&i) = self.index.get(key) {
            self.touch_at(i, now);
        }
    }

    /// Adds or replaces the entry for `key`. Returns what left the table: the replaced value,
    /// or the least recently active entry when the table was full.
    pub fn insert(&mut self, key: SocketAddr, value: V, now: Instant) -> Option<(SocketAddr, V)> {
        let mut gone = self.remove(&key).map(|v| (key, v));
        if self.index.len() >= self.capacity {
            gone = self.pop_oldest();
        }
        let entry = Entry {
            key,
            value,
            last: now,
            newer: NIL,
            older: self.newest,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.slab.get_mut(i as usize) {
                    *slot = Some(entry);
                }
                i
            }
            None => {
                self.slab.push(Some(entry));
                // Cannot exceed u32: the slab never holds more than `capacity` <= 2^31.
                (self.slab.len() - 1) as u32
            }
        };
        if let Some(e) = self.entry_mut(self.newest) {
            e.newer = i;
        }
        self.newest = i;
        if self.oldest == NIL {
            self.oldest = i;
        }
        self.index.insert(key, i);
        gone
    }

    pub fn remove(&mut self, key: &SocketAddr) -> Option<V> {
        let i = self.index.remove(key)?;
        self.unlink(i);
        self.free.push(i);
        let entry = self.slab.get_mut(i as usize)?.take()?;
        Some(entry.value)
    }

    /// Removes the entries idle for the timeout or longer at `now`, oldest first.
    pub fn sweep(&mut self, now: Instant) -> Vec<V> {
        let mut gone = Vec::new();
        while let Some(e) = self.entry(self.oldest) {
            if now.saturating_duration_since(e.last) < self.timeout {
                break;
            }
            match self.pop_oldest() {
                Some((_, v)) => gone.push(v),
                None => break,
            }
        }
        gone
    }

    /// How often `sweep` should run: often enough that expiry is within a quarter timeout.
    pub fn sweep_period(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(15))
    }

    fn pop_oldest(&mut self) -> Option<(SocketAddr, V)> {
        let key = self.entry(self.oldest)?.key;
        self.remove(&key).map(|v| (key, v))
    }

    fn entry(&self, i: u32) -> Option<&Entry<V>> {
        self.slab.get(i as usize)?.as_ref()
    }

    fn entry_mut(&mut self, i: u32) -> Option<&mut Entry<V>> {
        self.slab.get_mut(i as usize)?.as_mut()
    }

    fn touch_at(&mut self, i: u32, now: Instant) {
        if let Some(e) = self.entry_mut(i) {
            e.last = now;
        }
        if self.newest == i {
            return;
        }
        self.unlink(i);
        let old_newest = self.newest;
        if let Some(e) = self.entry_mut(i) {
            e.newer = NIL;
            e.older = old_newest;
        }
        if let Some(e) = self.entry_mut(old_newest) {
            e.newer = i;
        }
        self.newest = i;
        if self.oldest == NIL {
            self.oldest = i;
        }
    }

    fn unlink(&mut self, i: u32) {
        let Some((newer, older)) = self.entry(i).map(|e| (e.newer, e.older)) else {
            return;
        };
        match self.entry_mut(newer) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.entry_mut(older) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
        if let Some(e) = self.entry_mut(i) {
            e.newer = NIL;
            e.older = NIL;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn evicts_least_recently_active_when_full() {
        let t0 = Instant::now();
        let mut t = AssocTable::new(2, Duration::from_secs(60));
        assert!(t.insert(addr(1), 1, secs(t0, 0)).is_none());
        assert!(t.insert(addr(2), 2, secs(t0, 1)).is_none());
        assert_eq!(t.get(&addr(1), secs(t0, 2)), Some(&1)); // 1 is now the most recent
        assert_eq!(t.insert(addr(3), 3, secs(t0, 3)), Some((addr(2), 2)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&addr(2), secs(t0, 4)), None);
        t.touch(&addr(3), secs(t0, 5));
        assert_eq!(t.insert(addr(4), 4, secs(t0, 6)), Some((addr(1), 1)));
        // Replacing an entry hands back the old value and evicts nothing.
        assert_eq!(t.insert(addr(4), 40, secs(t0, 7)), Some((addr(4), 4)));
        assert_eq!(t.get(&addr(3), t0), Some(&3));
        assert_eq!(t.get(&addr(4), t0), Some(&40));
    }

    #[test]
    fn sweep_drops_idle_entries_oldest_first() {
        let t0 = Instant::now();
        let mut t = AssocTable::new(8, Duration::from_secs(10));
        for p in 1..=4 {
            t.insert(addr(p), p, secs(t0, u64::from(p)));
        }
        t.touch(&addr(1), secs(t0, 8));
        assert_eq!(t.sweep(secs(t0, 13)), vec![2, 3]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.sweep(secs(t0, 13)), Vec::<u16>::new());
        assert_eq!(t.sweep(secs(t0, 30)), vec![4, 1]);
        assert!(t.is_empty());
        // Slots are reused after a sweep.
        t.insert(addr(9), 9, secs(t0, 31));
        assert_eq!(t.slab.len(), 4);
    }

    /// Many more sources than capacity: the table never grows past it, and what it keeps is
    /// exactly the most recent `capacity` sources.
    #[test]
    fn a_flood_of_sources_keeps_the_newest() {
        let t0 = Instant::now();
        let mut t = AssocTable::new(100, Duration::from_secs(60));
        for p in 0..10_000u16 {
            t.insert(addr(p), p, t0);
        }
        assert_eq!((t.len(), t.slab.len()), (100, 100));
        assert!((9_900..10_000).all(|p| t.get(&addr(p), t0) == Some(&p)));
        let mut remove = t.remove(&addr(9_950));
        assert_eq!(remove.take(), Some(9_950));
        assert_eq!(t.len(), 99);
    }
}
