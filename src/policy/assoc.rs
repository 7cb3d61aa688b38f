//! The UDP association table shared by the client and server relays: one entry per client
//! address, a fixed capacity, idle expiry, and eviction of the least recently active entry
//! when full. Dropping an entry drops its value, which cancels the tasks it owns.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Entry<V> {
    value: V,
    last: Cell<Instant>,
}

pub struct AssocTable<V> {
    map: RefCell<HashMap<SocketAddr, Entry<V>>>,
    capacity: usize,
    timeout: Duration,
}

impl<V> AssocTable<V> {
    pub fn new(capacity: usize, timeout: Duration) -> AssocTable<V> {
        let capacity = capacity.max(1);
        AssocTable {
            map: RefCell::new(HashMap::with_capacity(capacity)),
            capacity,
            timeout,
        }
    }

    /// Runs `f` on the entry for `key` and marks it active; `None` if there is none.
    pub fn with<R>(&self, key: &SocketAddr, f: impl FnOnce(&V) -> R) -> Option<R> {
        let map = self.map.borrow();
        let entry = map.get(key)?;
        entry.last.set(Instant::now());
        Some(f(&entry.value))
    }

    /// Marks the entry for `key` active (replies count as activity too).
    pub fn touch(&self, key: &SocketAddr) {
        if let Some(e) = self.map.borrow().get(key) {
            e.last.set(Instant::now());
        }
    }

    /// Adds an entry, first evicting the least recently active one if the table is full.
    pub fn insert(&self, key: SocketAddr, value: V) {
        let evicted = {
            let mut map = self.map.borrow_mut();
            let evicted = if map.len() >= self.capacity && !map.contains_key(&key) {
                let stalest = map
                    .iter()
                    .min_by_key(|(_, e)| e.last.get())
                    .map(|(k, _)| *k);
                stalest.and_then(|k| map.remove(&k).map(|e| (k, e)))
            } else {
                None
            };
            let last = Cell::new(Instant::now());
            map.insert(key, Entry { value, last });
            evicted
        };
        // Dropped outside the borrow: dropping a value cancels tasks that may touch the table.
        if let Some((k, _)) = evicted {
            log::debug!("udp: association table full, evicted {k}");
        }
    }

    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes entries idle for longer than the timeout.
    pub fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<Entry<V>> = {
            let mut map = self.map.borrow_mut();
            let keys: Vec<SocketAddr> = map
                .iter()
                .filter(|(_, e)| now.duration_since(e.last.get()) >= self.timeout)
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        drop(expired);
    }

    /// How often `sweep` should run: often enough that expiry is within a quarter timeout.
    pub fn sweep_period(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(15))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn evicts_least_recently_active_when_full() {
        let t = AssocTable::new(2, Duration::from_secs(60));
        t.insert(addr(1), 1);
        std::thread::sleep(Duration::from_millis(2));
        t.insert(addr(2), 2);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(t.with(&addr(1), |v| *v), Some(1)); // 1 is now the most recent
        t.insert(addr(3), 3);
        assert_eq!(t.len(), 2);
        assert_eq!(t.with(&addr(2), |v| *v), None);
        assert_eq!(t.with(&addr(1), |v| *v), Some(1));
    }

    #[test]
    fn sweep_drops_idle_entries() {
        let t = AssocTable::new(8, Duration::from_millis(5));
        t.insert(addr(1), ());
        std::thread::sleep(Duration::from_millis(10));
        t.insert(addr(2), ());
        t.sweep();
        assert_eq!(t.len(), 1);
        assert!(t.with(&addr(2), |_| ()).is_some());
    }
}
