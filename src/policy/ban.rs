//! Brute-force protection for ss-server, in the spirit of the original Shadowsocks `autoban`:
//! a source that fails authentication `failures` times within `window` is refused for
//! `duration`.
//!
//! Sans-IO like `proto`: no clock (the caller passes `now`), no sockets, and all memory is
//! allocated in `new`. The table of sources is bounded: when it is full, the source with the
//! oldest activity is forgotten (exact LRU through an intrusive list), so a flood of new sources
//! costs O(1) per failure and never grows the table.
//!
//! What counts as a source: an IPv4 address, or an IPv6 /64 (one subscriber gets a whole /64,
//! so a scanner could otherwise rotate through 2^64 addresses). IPv4-mapped IPv6
//! (`::ffff:192.0.2.1`, what a dual-stack listener reports) is the IPv4 address.
//!
//! What the caller should count as a failure: only a definite authentication failure on TCP (a
//! bad tag on the salt and first chunk, or a replayed salt). Not an EOF or idle timeout before
//! enough bytes arrived: a legitimate client that gives up mid-handshake is not guessing
//! passwords. Not UDP: UDP source addresses can be forged, and counting them would let anyone
//! get a victim banned. A TCP handshake proves the source.
//!
//! The window is a series that starts at a source's first failure: failures within `window` of
//! it count; the first failure after that starts a new series. So `failures` failures within
//! `window` of each other always ban, and no source escapes a ban while failing more than
//! `2 * failures - 2` times in any `window`-long span.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Settings of `Ban`. `Default` gives the values below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanConfig {
    /// Failures within `window` that start a ban; 0 disables banning altogether.
    pub failures: u32,
    pub window: Duration,
    /// How long a ban lasts.
    pub duration: Duration,
    /// Sources tracked at once.
    pub capacity: usize,
}

// Why these defaults. A scanner or password guesser sends hundreds to thousands of attempts; an
// active prober (GFW style) a few per address; a real client with a wrong password a burst of
// tens (a browser opens ~6 connections per host and a page touches several hosts; the server
// stays silent on a bad key, so they hang until the client gives up and retries).
//
// - 20 failures in 60 s never bans a prober, which learns nothing either way, and bans any tool
//   that guesses at speed within seconds. The threshold and window also set the ceiling for a
//   patient guesser: under one failure every 3 s on average, about 28,800 guesses a day; that is
//   hopeless against any password worth the name, and 20 is still far above what a single typo
//   produces before the user notices.
// - A 120 s ban: a user whose wrong password got banned is usually back by the time they have
//   found the typo and restarted the client, and since the server answers a banned client with
//   the same silence as a wrong key, a long ban would make the fixed password look wrong too.
//   A longer ban would not slow a patient guesser (who stays under the threshold) and slows an
//   impatient one only from 20 guesses per 2 minutes to 20 per 5.
// - 4096 sources: far more than are failing at any one time outside a distributed attack, and
//   224 KiB of table (`Ban::memory_bytes`: 48-byte entries plus a 32 KiB index), whose pages
//   cost RAM only as the table fills.

/// Default failures per window before a ban.
pub const DEFAULT_FAILURES: u32 = 20;
/// Default window over which failures are counted.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Default length of a ban.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(120);
/// Default number of sources tracked.
pub const DEFAULT_CAPACITY: usize = 4096;
/// Upper bound for `capacity` (clamped): the index uses `u32` and a typo must not exhaust RAM.
pub const MAX_CAPACITY: usize = 1 << 20;
/// Windows and bans are clamped to a year, so `now + duration` cannot overflow an `Instant`.
const MAX_SPAN: Duration = Duration::from_secs(365 * 24 * 3600);

impl Default for BanConfig {
    fn default() -> Self {
        BanConfig {
            failures: DEFAULT_FAILURES,
            window: DEFAULT_WINDOW,
            duration: DEFAULT_DURATION,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

/// Who is banned: an IPv4 address or an IPv6 /64 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6Net(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(a) => Source::V4(u32::from(a)),
            IpAddr::V6(a) => Source::V6Net((u128::from(a) >> 64) as u64),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// A series of `failures` failures that began at `since`.
    Counting {
        since: Instant,
        failures: u32,
    },
    Banned {
        until: Instant,
    },
}

/// One tracked source, linked into the activity list.
#[derive(Clone, Copy, Debug)]
struct Entry {
    source: Source,
    state: State,
    /// Neighbours in the activity list (entry indexes; `NIL` at the ends).
    newer: u32,
    older: u32,
}

const NIL: u32 = u32::MAX;

/// The ban table. See the module documentation.
pub struct Ban {
    cfg: BanConfig,
    /// Entries, appended until `capacity`, then reused in place; never shrinks or grows.
    entries: Vec<Entry>,
    /// Open-addressing index (linear probing, at most half full): entry index + 1, 0 = empty.
    /// Zero as "empty" keeps the array calloc'ed, so untouched pages cost no RAM.
    slots: Vec<u32>,
    /// Most and least recently active entries.
    newest: u32,
    oldest: u32,
    /// Keyed hashing, so a scanner cannot pick sources that collide in `slots`.
    keys: RandomState,
}

impl Ban {
    pub fn new(cfg: BanConfig) -> Ban {
        let cfg = BanConfig {
            window: cfg.window.min(MAX_SPAN),
            duration: cfg.duration.min(MAX_SPAN),
            capacity: cfg.capacity.clamp(1, MAX_CAPACITY),
            ..cfg
        };
        let (entries, slots) = if cfg.failures == 0 {
            (Vec::new(), Vec::new())
        } else {
            (
                Vec::with_capacity(cfg.capacity),
                vec![0u32; (cfg.capacity * 2).next_power_of_two()],
            )
        };
        Ban {
            cfg,
            entries,
            slots,
            newest: NIL,
            oldest: NIL,
            keys: RandomState::new(),
        }
    }

    /// The settings in force (after clamping).
    pub fn config(&self) -> &BanConfig {
        &self.cfg
    }

    /// Whether connections from `ip` are refused now. A banned source knocking again counts as
    /// activity, so a source that keeps hammering is not the one evicted to make room.
    pub fn is_banned(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.cfg.failures == 0 {
            return false;
        }
        let Some(i) = self.find(Source::of(ip)).map(|(_, i)| i) else {
            return false;
        };
        let Some(e) = self.entries.get_mut(i) else {
            return false;
        };
        match e.state {
            State::Banned { until } if now < until => {
                self.touch(i);
                true
            }
            State::Banned { .. } => {
                // Expired: start with a clean slate.
                e.state = State::Counting {
                    since: now,
                    failures: 0,
                };
                false
            }
            State::Counting { .. } => false,
        }
    }

    /// Notes an authentication failure from `ip`; true when this failure starts a ban (log it
    /// then, once). Failures of a source that is already banned change nothing.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.cfg.failures == 0 {
            return false;
        }
        let source = Source::of(ip);
        let i = match self.find(source) {
            Some((_, i)) => i,
            None => self.add(source, now),
        };
        self.touch(i);
        let cfg = self.cfg;
        let Some(e) = self.entries.get_mut(i) else {
            return false;
        };
        let (since, failures) = match e.state {
            State::Banned { until } if now < until => return false,
            State::Banned { .. } => (now, 0),
            State::Counting { since, failures } => {
                if failures == 0 || now.saturating_duration_since(since) >= cfg.window {
                    (now, 0)
                } else {
                    (since, failures)
                }
            }
        };
        let failures = failures.saturating_add(1);
        if failures >= cfg.failures {
            // Cannot fail: durations are clamped to a year and Instants are since boot.
            let until = now.checked_add(cfg.duration).unwrap_or(now);
            e.state = State::Banned { until };
            true
        } else {
            e.state = State::Counting { since, failures };
            false
        }
    }

    /// Sources tracked now (banned or counting).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Heap bytes this table holds once full.
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.slots.len() * std::mem::size_of::<u32>()
    }

    fn home(&self, source: Source) -> usize {
        // `slots.len()` is a power of two; the low bits of SipHash are as good as any.
        (self.keys.hash_one(source) as usize) & (self.slots.len().wrapping_sub(1))
    }

    /// The slot and entry index of `source`, if tracked.
    fn find(&self, source: Source) -> Option<(usize, usize)> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut pos = self.home(source);
        // The index is at most half full, so an empty slot ends every probe sequence; the
        // bound is only a guard.
        for _ in 0..self.slots.len() {
            let s = *self.slots.get(pos)?;
            if s == 0 {
                return None;
            }
            let i = (s - 1) as usize;
            if self.entries.get(i).is_some_and(|e| e.source == source) {
                return Some((pos, i));
            }
            pos = (pos + 1) & mask;
        }
        None
    }

    /// Starts tracking `source`, evicting the least recently active source if full. Returns the
    /// entry index, already linked as the newest.
    fn add(&mut self, source: Source, now: Instant) -> usize {
        let fresh = Entry {
            source,
            state: State::Counting {
                since: now,
                failures: 0,
            },
            newer: NIL,
            older: NIL,
        };
        let i = if self.entries.len() < self.cfg.capacity {
            self.entries.push(fresh);
            self.entries.len() - 1
        } else {
            let victim = self.oldest as usize;
            let old = self.entries.get(victim).map(|e| e.source);
            if let Some((pos, _)) = old.and_then(|s| self.find(s)) {
                self.remove_slot(pos);
            }
            self.unlink(victim);
            if let Some(e) = self.entries.get_mut(victim) {
                *e = fresh;
            }
            victim
        };
        self.push_newest(i);
        self.insert_slot(source, i);
        i
    }

    fn insert_slot(&mut self, source: Source, i: usize) {
        let mask = self.slots.len() - 1;
        let mut pos = self.home(source);
        for _ in 0..self.slots.len() {
            match self.slots.get_mut(pos) {
                Some(s) if *s == 0 => {
                    // i < capacity <= MAX_CAPACITY < u32::MAX.
                    *s = i as u32 + 1;
                    return;
                }
                _ => pos = (pos + 1) & mask,
            }
        }
    }

    /// Empties `pos` and shifts later members of its probe run back, so lookups never need
    /// tombstones and the index never degrades.
    fn remove_slot(&mut self, pos: usize) {
        let mask = self.slots.len() - 1;
        let mut hole = pos;
        let mut j = pos;
        loop {
            j = (j + 1) & mask;
            let s = self.slots.get(j).copied().unwrap_or(0);
            if s == 0 || j == pos {
                break;
            }
            let Some(home) = self
                .entries
                .get((s - 1) as usize)
                .map(|e| self.home(e.source))
            else {
                break;
            };
            // The member at j may fill the hole if its home is not cyclically in (hole, j].
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                if let Some(h) = self.slots.get_mut(hole) {
                    *h = s;
                }
                hole = j;
            }
        }
        if let Some(h) = self.slots.get_mut(hole) {
            *h = 0;
        }
    }

    fn touch(&mut self, i: usize) {
        if self.newest as usize != i {
            self.unlink(i);
            self.push_newest(i);
        }
    }

    fn unlink(&mut self, i: usize) {
        let Some(&Entry { newer, older, .. }) = self.entries.get(i) else {
            return;
        };
        // No neighbour on a side means `i` is that end of the list.
        match self.entries.get_mut(newer as usize) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.entries.get_mut(older as usize) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
        if let Some(e) = self.entries.get_mut(i) {
            e.newer = NIL;
            e.older = NIL;
        }
    }

    fn push_newest(&mut self, i: usize) {
        let prev = self.newest;
        if let Some(p) = self.entries.get_mut(prev as usize) {
            p.newer = i as u32;
        }
        if let Some(e) = self.entries.get_mut(i) {
            e.older = prev;
            e.newer = NIL;
        }
        self.newest = i as u32;
        if self.oldest == NIL {
            self.oldest = i as u32;
        }
    }
}

impl fmt::Debug for Ban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ban")
            .field("cfg", &self.cfg)
            .field("tracked", &self.entries.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn cfg(failures: u32, window: u64, duration: u64, capacity: usize) -> BanConfig {
        BanConfig {
            failures,
            window: Duration::from_secs(window),
            duration: Duration::from_secs(duration),
            capacity,
        }
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    /// Walks the activity list both ways and checks it against the index.
    fn check_invariants(b: &Ban) {
        let mut forward = Vec::new();
        let mut i = b.newest;
        while i != NIL {
            forward.push(i);
            assert!(forward.len() <= b.entries.len(), "cycle");
            i = b.entries[i as usize].older;
        }
        let mut backward = Vec::new();
        let mut i = b.oldest;
        while i != NIL {
            backward.push(i);
            assert!(backward.len() <= b.entries.len(), "cycle");
            i = b.entries[i as usize].newer;
        }
        backward.reverse();
        assert_eq!(forward, backward);
        assert_eq!(forward.len(), b.entries.len());
        for (i, e) in b.entries.iter().enumerate() {
            assert_eq!(b.find(e.source).map(|(_, j)| j), Some(i));
        }
        assert_eq!(b.slots.iter().filter(|&&s| s != 0).count(), b.entries.len());
    }

    #[test]
    fn bans_at_the_threshold() {
        let t0 = Instant::now();
        let mut b = Ban::new(cfg(3, 60, 300, 16));
        assert!(!b.is_banned(v4(1), t0));
        assert!(!b.record_failure(v4(1), t0));
        assert!(!b.record_failure(v4(1), secs(t0, 1)));
        assert!(!b.is_banned(v4(1), secs(t0, 2)));
        assert!(b.record_failure(v4(1), secs(t0, 2)));
        assert!(b.is_banned(v4(1), secs(t0, 3)));
        // Other sources are unaffected.
        assert!(!b.is_banned(v4(2), secs(t0, 3)));
        // Further failures neither restart nor extend the ban.
        assert!(!b.record_failure(v4(1), secs(t0, 4)));
        assert!(b.is_banned(v4(1), secs(t0, 301)));
        assert!(!b.is_banned(v4(1), secs(t0, 302)));
        check_invariants(&b);
    }

    #[test]
    fn window_starts_a_new_series() {
        let t0 = Instant::now();
        let mut b = Ban::new(cfg(3, 60, 300, 16));
        let ip = v4(7);
        assert!(!b.record_failure(ip, t0));
        assert!(!b.record_failure(ip, secs(t0, 59)));
        // 60 s after the first failure the series is over: this one starts a new one.
        assert!(!b.record_failure(ip, secs(t0, 60)));
        assert!(!b.record_failure(ip, secs(t0, 100)));
        assert!(!b.is_banned(ip, secs(t0, 110)));
        // Third failure within 60 s of the series start (t = 60).
        assert!(b.record_failure(ip, secs(t0, 119)));
        assert!(b.is_banned(ip, secs(t0, 119)));
    }

    #[test]
    fn slow_failures_never_ban() {
        let t0 = Instant::now();
        let mut b = Ban::new(cfg(3, 60, 300, 16));
        for k in 0..100 {
            assert!(!b.record_failure(v4(9), secs(t0, k * 31)));
            assert!(!b.is_banned(v4(9), secs(t0, k * 31)));
        }
    }

    #[test]
    fn ban_expires_and_counting_starts_afresh() {
        let t0 = Instant::now();
        let mut b = Ban::new(cfg(2, 60, 300, 16));
        let ip = v4(3);
        b.record_failure(ip, t0);
        assert!(b.record_failure(ip, t0));
        assert!(b.is_banned(ip, secs(t0, 299)));
        assert!(!b.is_banned(ip, secs(t0, 300)));
        // One failure after the ban is one failure, not the third.
        assert!(!b.record_failure(ip, secs(t0, 301)));
        assert!(b.record_failure(ip, secs(t0, 302)));
        assert!(b.is_banned(ip, secs(t0, 303)));
        // Expiry noticed by record_failure rather than is_banned.
        assert!(!b.record_failure(ip, secs(t0, 700)));
        assert!(!b.is_banned(ip, secs(t0, 700)));
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_v4_is_v4() {
        let t0 = Instant::now();
        let mut b = Ban::new(cfg(3, 60, 300, 16));
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: Ipv6Addr = "2001:db8:1:2:ffff:1234:5678:9abc".parse().unwrap();
        let other_64: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        b.record_failure(a.into(), t0);
        b.record_failure(same_64.into(), t0);
        assert!(b.record_failure("2001:db8:1:2::99".parse().unwrap(), t0));
        assert!(b.is_banned(a.into(), t0));
        assert!(b.is_banned(same_64.into(), t0));
        assert!(!b.is_banned(other_64.into(), t0));

        let mapped: IpAddr = "::ffff:192.0.2.5".parse().unwrap();
        b.record_failure(mapped, t0);
        b.record_failure(v4(5), t0);
        assert!(b.record_failure(mapped, t0));
        assert!(b.is_banned(v4(5), t0));
        assert!(!b.is_banned(v4(6), t0));
        // An IPv4 address and the /64 whose bits happen to match are different sources.
        assert!(!b.is_banned("::c000:205".parse().unwrap(), t0));
        assert_eq!(b.len(), 2);
        check_invariants(&b);
    }

    #[test]
    fn full_table_forgets_the_least_recently_active() {
        let t0 = Instant::now();
        let mut b = Ban::new(cfg(2, 60, 300, 4));
        // Ban .1, then failures from .2 .. .4: the table is full.
        b.record_failure(v4(1), t0);
        assert!(b.record_failure(v4(1), t0));
        for k in 2..=4 {
            b.record_failure(v4(k), secs(t0, u64::from(k)));
        }
        assert_eq!(b.len(), 4);
        // .1 keeps knocking while banned: that is activity, so .2 is now the oldest.
        assert!(b.is_banned(v4(1), secs(t0, 10)));
        assert!(!b.record_failure(v4(5), secs(t0, 11)));
        assert_eq!(b.len(), 4);
        check_invariants(&b);
        // .2 was forgotten: its next failure is its first again.
        assert!(!b.record_failure(v4(2), secs(t0, 12)));
        // That evicted .3; .4 and .5 are still counting, .1 still banned.
        assert!(b.record_failure(v4(4), secs(t0, 13)));
        assert!(b.record_failure(v4(5), secs(t0, 13)));
        assert!(b.is_banned(v4(1), secs(t0, 14)));
        assert!(!b.record_failure(v4(3), secs(t0, 15)));
        assert_eq!(b.len(), 4);
        check_invariants(&b);
    }

    #[test]
    fn heavy_churn_keeps_the_table_consistent() {
        let t0 = Instant::now();
        let cap = 64;
        let mut b = Ban::new(cfg(3, 60, 300, cap));
        let slots = b.slots.len();
        let mut x: u32 = 1;
        for step in 0..20_000u64 {
            // xorshift over a space a few times the capacity: hits, misses and evictions.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let ip = IpAddr::V4(Ipv4Addr::from(0xc633_6400 | (x % 200)));
            let now = t0 + Duration::from_millis(step * 50);
            if x.is_multiple_of(3) {
                b.is_banned(ip, now);
            } else {
                b.record_failure(ip, now);
            }
            assert!(b.len() <= cap);
            if step % 1000 == 0 {
                check_invariants(&b);
            }
        }
        check_invariants(&b);
        assert_eq!(b.slots.len(), slots);
        assert_eq!(b.entries.capacity(), cap);
    }

    #[test]
    fn disabled_does_nothing() {
        let t0 = Instant::now();
        let mut b = Ban::new(cfg(0, 60, 300, 16));
        for _ in 0..1000 {
            assert!(!b.record_failure(v4(1), t0));
        }
        assert!(!b.is_banned(v4(1), t0));
        assert!(b.is_empty());
        assert_eq!(b.memory_bytes(), 0);
    }

    #[test]
    fn one_failure_bans_when_configured() {
        let t0 = Instant::now();
        let mut b = Ban::new(cfg(1, 60, 1, 1));
        assert!(b.record_failure(v4(1), t0));
        assert!(b.is_banned(v4(1), t0));
        // Capacity 1: a new source replaces the old one.
        assert!(b.record_failure(v4(2), t0));
        assert!(!b.is_banned(v4(1), t0));
        assert!(b.is_banned(v4(2), t0));
        check_invariants(&b);
    }

    #[test]
    fn defaults_and_memory() {
        let d = BanConfig::default();
        assert_eq!(
            (d.failures, d.window, d.duration, d.capacity),
            (20, Duration::from_secs(60), Duration::from_secs(120), 4096)
        );
        let b = Ban::new(d);
        assert_eq!(b.slots.len(), 8192);
        assert_eq!(
            b.memory_bytes(),
            4096 * std::mem::size_of::<Entry>() + 8192 * 4
        );
        #[cfg(target_pointer_width = "64")]
        assert_eq!(b.memory_bytes(), 224 * 1024);
        // Absurd settings are clamped rather than trusted.
        let huge = Ban::new(BanConfig {
            failures: 5,
            window: Duration::MAX,
            duration: Duration::MAX,
            capacity: usize::MAX,
        });
        assert_eq!(huge.config().capacity, MAX_CAPACITY);
        assert_eq!(huge.config().duration, MAX_SPAN);
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(1000);
        let mut b = Ban::new(cfg(2, 60, 300, 4));
        b.record_failure(v4(1), t0);
        assert!(b.record_failure(v4(1), secs(t0, 0) - Duration::from_secs(500)));
        assert!(b.is_banned(v4(1), t0 - Duration::from_secs(900)));
    }
}
