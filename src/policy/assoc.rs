//! The UDP association table: one entry per client address, at most `capacity` of them, idle
//! expiry, and eviction when full that spares live flows.
//!
//! An entry that has had a reply can be marked *assured* (like conntrack's assured flows): a
//! flow the far side answered, as opposed to one datagram from a source that may be spoofed
//! or never heard from again. When the table is full, the least recently active entry that is
//! not assured is evicted; only when every entry is assured does the least recently active
//! assured one go. A flood of new sources therefore churns the unassured entries among
//! themselves and leaves the established flows alone.
//!
//! Every operation is O(1) (sweeping is O(expired)): entries sit in a slab threaded on two
//! doubly linked lists, unassured and assured, each from most to least recently active, and a
//! hash map finds them by address. Memory grows with use, up to `capacity` entries, and is
//! kept for reuse: a flood of spoofed sources costs one eviction per datagram, never a scan of
//! the table.
//!
//! Pure: the caller passes `now` (the event loop's clock). Removed values are handed back to
//! the caller, so a value that cancels tasks on drop is dropped outside any borrow of the table.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// "No neighbour" in a link. Slab indexes stay below it: they need 31 bits (see `capacity`).
const NIL: u32 = 0x7fff_ffff;
/// The top bit of `Entry::older_class`: the entry is assured. An entry has no padding to hold
/// a `bool` (on 64-bit targets it would cost 8 bytes an entry), and links need only 31 bits.
const ASSURED: u32 = 1 << 31;

/// An entry's place in the table; its value sits at the same index in `AssocTable::values`.
/// Kept apart from the values so that the list and index code below is compiled once per key
/// type, not once per value type (three tables in the binary share it).
struct Meta<K> {
    key: K,
    last: Instant,
    /// Neighbours in the entry's activity list (slab indexes; `NIL` at the ends); `older_class`
    /// also carries the `ASSURED` bit, which says which list that is.
    newer: u32,
    older_class: u32,
}

impl<K> Meta<K> {
    fn older(&self) -> u32 {
        self.older_class & !ASSURED
    }

    fn set_older(&mut self, i: u32) {
        self.older_class = (self.older_class & ASSURED) | (i & !ASSURED);
    }

    fn is_assured(&self) -> bool {
        self.older_class & ASSURED != 0
    }

    /// The list the entry belongs to: an index into `Links::lists`.
    fn class(&self) -> usize {
        usize::from(self.is_assured())
    }
}

/// The two ends of one activity list.
#[derive(Clone, Copy)]
struct Ends {
    newest: u32,
    oldest: u32,
}

const EMPTY: Ends = Ends {
    newest: NIL,
    oldest: NIL,
};
/// Indexes into `Links::lists`.
const UNASSURED: usize = 0;
const ASSURED_LIST: usize = 1;

/// The index and the two activity lists: which slot holds which key, and in what order.
struct Links<K> {
    /// Every slot ever used; free ones (in `free`) are on no list and in no index.
    slab: Vec<Meta<K>>,
    free: Vec<u32>,
    index: HashMap<K, u32>,
    /// The unassured entries' list, then the assured ones'.
    lists: [Ends; 2],
    capacity: usize,
    timeout: Duration,
}

/// Keyed by client address unless `K` says otherwise (`ingress::Peer`).
pub struct AssocTable<V, K = SocketAddr> {
    links: Links<K>,
    values: Vec<Option<V>>,
}

impl<V, K: Hash + Eq + Copy> AssocTable<V, K> {
    /// `capacity` is clamped to 1..2^31 (slab indexes are 31 bits, below `NIL`).
    pub fn new(capacity: usize, timeout: Duration) -> AssocTable<V, K> {
        AssocTable {
            links: Links {
                slab: Vec::new(),
                free: Vec::new(),
                index: HashMap::new(),
                lists: [EMPTY; 2],
                capacity: capacity.clamp(1, NIL as usize),
                timeout,
            },
            values: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.links.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.index.is_empty()
    }

    /// The value for `key`, marked active at `now`.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<&V> {
        let i = self.links.touch(key, now)?;
        self.values.get(i as usize)?.as_ref()
    }

    /// Like [`AssocTable::get`], for changing the value.
    pub fn get_mut(&mut self, key: &K, now: Instant) -> Option<&mut V> {
        let i = self.links.touch(key, now)?;
        self.values.get_mut(i as usize)?.as_mut()
    }

    /// Marks `key` active (replies count as activity too).
    pub fn touch(&mut self, key: &K, now: Instant) {
        self.links.touch(key, now);
    }

    /// Marks `key` active and assured: from now on it is evicted only when every entry is
    /// assured. The caller decides what earns it (a reply that reached the client).
    pub fn assure(&mut self, key: &K, now: Instant) {
        self.links.assure(key, now);
    }

    /// Adds or replaces the entry for `key`; a new entry is not assured, even one that replaces
    /// an assured entry (it is a new flow). Returns what left the table: the replaced value, or
    /// when the table was full the least recently active unassured entry, or the least
    /// recently active assured one if there was none.
    pub fn insert(&mut self, key: K, value: V, now: Instant) -> Option<(K, V)> {
        let mut gone = self.remove(&key).map(|v| (key, v));
        if let Some((k, i)) = self.links.evict_if_full() {
            gone = self.take(i).map(|v| (k, v));
        }
        let i = self.links.insert(key, now) as usize;
        match self.values.get_mut(i) {
            Some(slot) => *slot = Some(value),
            None => self.values.push(Some(value)),
        }
        gone
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.links.remove(key)?;
        self.take(i)
    }

    /// Removes the entries idle for the timeout or longer at `now`, assured or not, oldest
    /// first.
    pub fn sweep(&mut self, now: Instant) -> Vec<V> {
        let mut gone = Vec::new();
        while let Some(i) = self.links.pop_expired(now) {
            gone.extend(self.take(i));
        }
        gone
    }

    /// How often `sweep` should run: often enough that expiry is within a quarter timeout.
    pub fn sweep_period(&self) -> Duration {
        (self.links.timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(15))
    }

    fn take(&mut self, i: u32) -> Option<V> {
        self.values.get_mut(i as usize)?.take()
    }
}

impl<K: Hash + Eq + Copy> Links<K> {
    fn entry(&self, i: u32) -> Option<&Meta<K>> {
        self.slab.get(i as usize)
    }

    fn entry_mut(&mut self, i: u32) -> Option<&mut Meta<K>> {
        self.slab.get_mut(i as usize)
    }

    /// Marks `key` active at `now`; its slot.
    fn touch(&mut self, key: &K, now: Instant) -> Option<u32> {
        let i = *self.index.get(key)?;
        self.touch_at(i, now);
        Some(i)
    }

    fn assure(&mut self, key: &K, now: Instant) {
        let Some(&i) = self.index.get(key) else {
            return;
        };
        if self.entry(i).is_some_and(Meta::is_assured) {
            return self.touch_at(i, now);
        }
        self.unlink(i);
        if let Some(e) = self.entry_mut(i) {
            e.last = now;
            e.older_class |= ASSURED;
        }
        self.link_newest(i);
    }

    /// When the table is full: takes out the entry to make room for one more (see
    /// `AssocTable::insert`); its key and slot.
    fn evict_if_full(&mut self) -> Option<(K, u32)> {
        if self.index.len() < self.capacity {
            return None;
        }
        let victims = match self.lists[UNASSURED].oldest {
            NIL => ASSURED_LIST,
            _ => UNASSURED,
        };
        self.pop_oldest(victims)
    }

    /// Links a new, unassured entry for `key` (not in the table); its slot.
    fn insert(&mut self, key: K, now: Instant) -> u32 {
        let meta = Meta {
            key,
            last: now,
            newer: NIL,
            older_class: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.slab.get_mut(i as usize) {
                    *slot = meta;
                }
                i
            }
            None => {
                self.slab.push(meta);
                // Below NIL: the slab never holds more than `capacity` < 2^31 entries.
                (self.slab.len() - 1) as u32
            }
        };
        self.link_newest(i);
        self.index.insert(key, i);
        i
    }

    /// Takes `key` out; its slot, now free.
    fn remove(&mut self, key: &K) -> Option<u32> {
        let i = self.index.remove(key)?;
        self.unlink(i);
        self.free.push(i);
        Some(i)
    }

    /// Takes out the oldest entry idle for the timeout or longer at `now`, of either list.
    fn pop_expired(&mut self, now: Instant) -> Option<u32> {
        // The older of the two lists' oldest entries.
        let (last, class) = [UNASSURED, ASSURED_LIST]
            .into_iter()
            .filter_map(|c| self.entry(self.lists[c].oldest).map(|e| (e.last, c)))
            .min()?;
        if now.saturating_duration_since(last) < self.timeout {
            return None;
        }
        self.pop_oldest(class).map(|(_, i)| i)
    }

    fn pop_oldest(&mut self, class: usize) -> Option<(K, u32)> {
        let key = self.entry(self.lists[class].oldest)?.key;
        self.remove(&key).map(|i| (key, i))
    }

    /// Moves entry `i` to the newest end of its own list.
    fn touch_at(&mut self, i: u32, now: Instant) {
        let Some(e) = self.entry_mut(i) else { return };
        e.last = now;
        let class = e.class();
        if self.lists[class].newest == i {
            return;
        }
        self.unlink(i);
        self.link_newest(i);
    }

    /// Puts unlinked entry `i` at the newest end of the list its class names.
    fn link_newest(&mut self, i: u32) {
        let Some(class) = self.entry(i).map(Meta::class) else {
            return;
        };
        let ends = self.lists[class];
        if let Some(e) = self.entry_mut(i) {
            e.newer = NIL;
            e.set_older(ends.newest);
        }
        if let Some(n) = self.entry_mut(ends.newest) {
            n.newer = i;
        }
        let list = &mut self.lists[class];
        list.newest = i;
        if list.oldest == NIL {
            list.oldest = i;
        }
    }

    /// Takes entry `i` out of its list (it keeps its class).
    fn unlink(&mut self, i: u32) {
        let Some((newer, older, class)) = self.entry(i).map(|e| (e.newer, e.older(), e.class()))
        else {
            return;
        };
        match self.entry_mut(newer) {
            Some(n) => n.set_older(older),
            None => self.lists[class].newest = older,
        }
        match self.entry_mut(older) {
            Some(o) => o.newer = newer,
            None => self.lists[class].oldest = newer,
        }
        if let Some(e) = self.entry_mut(i) {
            e.newer = NIL;
            e.set_older(NIL);
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
        assert_eq!(t.links.slab.len(), 4);
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
        assert_eq!((t.len(), t.links.slab.len()), (100, 100));
        assert!((9_900..10_000).all(|p| t.get(&addr(p), t0) == Some(&p)));
        let mut remove = t.remove(&addr(9_950));
        assert_eq!(remove.take(), Some(9_950));
        assert_eq!(t.len(), 99);
    }

    /// Walks both lists and checks them against the index: links agree both ways, each list
    /// holds only its class, activity never rises towards the old end, every entry is on one.
    /// Returns (unassured, assured) keys, newest first.
    fn lists(t: &AssocTable<u16>) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        let mut out = [Vec::new(), Vec::new()];
        for (class, keys) in out.iter_mut().enumerate() {
            let mut i = t.links.lists[class].newest;
            let mut newer = NIL;
            let mut last = None;
            while i != NIL {
                let e = t.links.entry(i).expect("a linked slot holds an entry");
                assert_eq!(e.newer, newer, "links disagree at {}", e.key);
                assert_eq!(e.class(), class, "{} is on the wrong list", e.key);
                assert!(last.is_none_or(|l| e.last <= l), "{} out of order", e.key);
                assert_eq!(t.links.index.get(&e.key), Some(&i));
                keys.push(e.key);
                last = Some(e.last);
                newer = i;
                i = e.older();
            }
            assert_eq!(t.links.lists[class].oldest, newer);
        }
        assert_eq!(out[0].len() + out[1].len(), t.len());
        let [unassured, assured] = out;
        (unassured, assured)
    }

    /// The flood the table is built for: a few assured flows, then tens of thousands of new
    /// sources, each sending once. Not one assured entry goes while unassured ones are there to
    /// evict, and the table never grows past its capacity.
    #[test]
    fn a_flood_of_new_keys_never_evicts_an_assured_entry() {
        let t0 = Instant::now();
        let mut t = AssocTable::new(64, Duration::from_secs(60));
        let live = [40_001, 40_002, 40_003];
        for (n, p) in live.into_iter().enumerate() {
            t.insert(addr(p), p, t0);
            t.assure(&addr(p), secs(t0, n as u64));
        }
        for p in 0..30_000u16 {
            let at = t0 + Duration::from_millis(u64::from(p));
            if let Some((gone, _)) = t.insert(addr(p), p, at) {
                assert!(
                    !live.contains(&gone.port()),
                    "evicted live flow {gone} at {p}"
                );
            }
            assert!(t.len() <= 64 && t.links.slab.len() <= 64);
        }
        let (unassured, assured) = lists(&t);
        assert_eq!(assured, [addr(40_003), addr(40_002), addr(40_001)]);
        // The rest are the newest of the flood.
        assert_eq!(unassured.len(), 61);
        assert!(unassured.iter().all(|a| a.port() >= 30_000 - 61));
    }

    /// Only when every entry is assured does an assured one go: the least recently active.
    #[test]
    fn a_full_table_of_assured_entries_evicts_the_least_recently_active() {
        let t0 = Instant::now();
        let mut t = AssocTable::new(3, Duration::from_secs(60));
        for p in 1..=3 {
            t.insert(addr(p), p, secs(t0, u64::from(p)));
        }
        t.assure(&addr(2), secs(t0, 4));
        t.assure(&addr(1), secs(t0, 5));
        t.touch(&addr(3), secs(t0, 6));
        // 3 is the most recently active entry, but the only unassured one: it goes.
        assert_eq!(t.insert(addr(4), 4, secs(t0, 6)), Some((addr(3), 3)));
        // 4 is the only unassured entry: it goes next, although it is the newest.
        assert_eq!(t.insert(addr(5), 5, secs(t0, 7)), Some((addr(4), 4)));
        t.assure(&addr(5), secs(t0, 8));
        // All assured: the least recently active of them, 2 (assured at 4 s).
        assert_eq!(t.insert(addr(6), 6, secs(t0, 9)), Some((addr(2), 2)));
        // Activity moves an assured entry up its own list: 1 is now newer than 5.
        t.touch(&addr(1), secs(t0, 10));
        t.assure(&addr(6), secs(t0, 11));
        assert_eq!(t.insert(addr(7), 7, secs(t0, 12)), Some((addr(5), 5)));
        let (unassured, assured) = lists(&t);
        assert_eq!(
            (unassured, assured),
            (vec![addr(7)], vec![addr(6), addr(1)])
        );
    }

    /// Touching keeps an entry's class; assuring twice is a touch; replacing an assured entry
    /// starts a new, unassured one; assuring an unknown key does nothing.
    #[test]
    fn classes_change_only_by_assure_and_replace() {
        let t0 = Instant::now();
        let mut t = AssocTable::new(8, Duration::from_secs(60));
        for p in 1..=4 {
            t.insert(addr(p), p, secs(t0, u64::from(p)));
        }
        t.assure(&addr(2), secs(t0, 5));
        t.assure(&addr(3), secs(t0, 6));
        t.touch(&addr(1), secs(t0, 7));
        assert_eq!(t.get(&addr(2), secs(t0, 8)), Some(&2));
        t.assure(&addr(3), secs(t0, 9));
        t.assure(&addr(99), secs(t0, 9));
        assert_eq!(lists(&t), (vec![addr(1), addr(4)], vec![addr(3), addr(2)]));
        assert_eq!(t.insert(addr(3), 30, secs(t0, 10)), Some((addr(3), 3)));
        assert_eq!(lists(&t), (vec![addr(3), addr(1), addr(4)], vec![addr(2)]));
        assert_eq!(t.remove(&addr(2)), Some(2));
        assert_eq!(lists(&t), (vec![addr(3), addr(1), addr(4)], vec![]));
    }

    /// Idle entries expire whether assured or not, oldest first across both lists; assuring
    /// does not make an entry immortal.
    #[test]
    fn sweep_expires_both_kinds_oldest_first() {
        let t0 = Instant::now();
        let mut t = AssocTable::new(8, Duration::from_secs(10));
        for p in 1..=6 {
            t.insert(addr(p), p, secs(t0, 2 * u64::from(p)));
        }
        // Assured at 5 s (1) and 13 s (5); 2, 3, 4, 6 stay unassured, last active at 2p s.
        t.assure(&addr(1), secs(t0, 5));
        t.assure(&addr(5), secs(t0, 13));
        assert_eq!(t.sweep(secs(t0, 13)), Vec::<u16>::new());
        assert_eq!(t.sweep(secs(t0, 14)), vec![2]);
        assert_eq!(t.sweep(secs(t0, 16)), vec![1, 3]);
        assert_eq!(t.sweep(secs(t0, 22)), vec![4, 6]);
        assert_eq!(lists(&t), (vec![], vec![addr(5)]));
        assert_eq!(t.sweep(secs(t0, 23)), vec![5]);
        assert!(t.is_empty());
        assert_eq!(lists(&t), (vec![], vec![]));
    }

    /// A pseudo-random mix of every operation keeps both lists and the index consistent and
    /// the table within capacity.
    #[test]
    fn mixed_operations_keep_the_lists_consistent() {
        let t0 = Instant::now();
        let mut t = AssocTable::new(16, Duration::from_secs(30));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = addr((x >> 8) as u16 % 40);
            let now = t0 + Duration::from_millis(step * 10);
            match x % 6 {
                0 | 1 => drop(t.insert(key, key.port(), now)),
                2 => t.assure(&key, now),
                3 => t.touch(&key, now),
                4 => drop(t.remove(&key)),
                _ => drop(t.sweep(now)),
            }
            assert!(t.len() <= 16 && t.links.slab.len() <= 16);
            if step % 97 == 0 {
                lists(&t);
            }
        }
        lists(&t);
    }

    /// The assured flag lives in a link's spare bit: an entry is exactly its fields, with no
    /// room spent on the flag (a `bool` would add a word on 64-bit targets).
    #[test]
    fn the_flag_costs_no_memory() {
        use std::mem::size_of;
        let fields = size_of::<SocketAddr>() + size_of::<Instant>() + 8;
        assert_eq!(size_of::<Meta<SocketAddr>>(), fields);
        assert_eq!(NIL & ASSURED, 0);
        // Slab indexes (below the capacity) never reach NIL or the flag.
        let t = AssocTable::<u8>::new(usize::MAX, Duration::ZERO);
        assert_eq!(t.links.capacity, NIL as usize);
    }
}
