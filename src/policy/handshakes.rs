//! Connections still in their handshake (SOCKS5 greeting and request, ss-server's first chunk),
//! oldest first, with a budget per source and in all.
//!
//! ```text
//!   admit(source) ─▶ source at its cap, its oldest older than GRACE?  evict that one
//!                    table at its cap, the oldest older than GRACE?   evict the oldest of all
//!   settle(id)    ─▶ the connection authenticated or named its target: it leaves the table
//! ```
//!
//! A host that opens connections and never finishes them only ever evicts its own (per-source
//! cap), and many such hosts together only each other's oldest (total cap): a legitimate
//! handshake takes a round trip, so it is never the oldest for long. Handshakes give way only
//! once they are older than [`GRACE`], so a burst of connections (from one busy host, a
//! browser or a NAT, or from many) is let in whole; the caps are exceeded meanwhile, and the
//! connection cap (`--max-conns`) stays the hard bound. A source is an IPv4 address or an IPv6 /64, the
//! block one subscriber usually has.
//!
//! Pure: values are the caller's (a cancel handle); operations are O(entries), entries are at
//! most the total cap, and a scan happens only on admit and settle.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a handshake is safe from its own source's newer connections.
pub const GRACE: Duration = Duration::from_secs(2);

/// Where connections come from, as far as budgets go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    V4([u8; 4]),
    /// The first 64 bits.
    V6([u8; 8]),
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&o[..8]);
                    Source::V6(prefix)
                }
            },
        }
    }
}

struct Entry<T> {
    id: u64,
    source: Source,
    since: Instant,
    value: T,
}

/// What [`Handshakes::admit`] made room with.
#[derive(Debug, PartialEq, Eq)]
pub enum Evicted<T> {
    /// The source's own oldest handshake.
    SameSource(T),
    /// The oldest handshake of all.
    Oldest(T),
}

/// What [`Handshakes::evict_ripe`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Ripe<T> {
    Evicted(T),
    /// The oldest handshake may be evicted from this moment.
    At(Instant),
    /// No connection is in its handshake.
    Nothing,
}

pub struct Handshakes<T> {
    /// Oldest first. A `Vec`: removal shifts at most the total cap's entries, and the code
    /// for it is already in the binary.
    entries: Vec<Entry<T>>,
    next: u64,
    total: usize,
    per_source: usize,
}

impl<T> Handshakes<T> {
    /// Caps are at least 1.
    pub fn new(total: usize, per_source: usize) -> Handshakes<T> {
        Handshakes {
            entries: Vec::new(),
            next: 0,
            total: total.max(1),
            per_source: per_source.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a connection from `ip` at `now`; returns its id and, when a cap was reached, the
    /// value of the handshake evicted to make room.
    pub fn admit(&mut self, ip: IpAddr, value: T, now: Instant) -> (u64, Option<Evicted<T>>) {
        let source = Source::of(ip);
        let same = self.entries.iter().filter(|e| e.source == source).count();
        let own_oldest = self.entries.iter().position(|e| e.source == source);
        let ripe = own_oldest
            .and_then(|at| self.entries.get(at))
            .is_some_and(|e| now.saturating_duration_since(e.since) >= GRACE);
        let all_ripe = self
            .entries
            .first()
            .is_some_and(|e| now.saturating_duration_since(e.since) >= GRACE);
        let evicted = if same >= self.per_source && ripe {
            own_oldest
                .map(|at| self.entries.remove(at))
                .map(|e| Evicted::SameSource(e.value))
        } else if self.entries.len() >= self.total && all_ripe {
            self.pop_oldest().map(Evicted::Oldest)
        } else {
            None
        };
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        self.entries.push(Entry {
            id,
            source,
            since: now,
            value,
        });
        (id, evicted)
    }

    /// The handshake `id` finished (or its connection ended); `None` if it was evicted.
    pub fn settle(&mut self, id: u64) -> Option<T> {
        // Handshakes mostly settle in the order they began: look from the front.
        let at = self.entries.iter().position(|e| e.id == id)?;
        Some(self.entries.remove(at).value)
    }

    /// At the connection cap: removes the oldest handshake if it is older than [`GRACE`] (so
    /// a burst of new connections is not cut), or says when it will be.
    pub fn evict_ripe(&mut self, now: Instant) -> Ripe<T> {
        match self.entries.first() {
            None => Ripe::Nothing,
            Some(e) if now.saturating_duration_since(e.since) < GRACE => Ripe::At(e.since + GRACE),
            Some(_) => self.pop_oldest().map_or(Ripe::Nothing, Ripe::Evicted),
        }
    }

    fn pop_oldest(&mut self) -> Option<T> {
        (!self.entries.is_empty()).then(|| self.entries.remove(0).value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn at(secs: u64) -> Instant {
        // A fixed origin: only differences matter.
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_secs(secs)
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn one_source_only_evicts_its_own_handshakes() {
        let mut hs = Handshakes::new(100, 3);
        let (legit, _) = hs.admit(v4(9), -1, at(0));
        for i in 0..3 {
            assert_eq!(hs.admit(v4(1), i, at(0)).1, None);
        }
        for i in 3..1000 {
            let evicted = hs.admit(v4(1), i, at(10 + i as u64 * 3)).1;
            assert_eq!(evicted, Some(Evicted::SameSource(i - 3)));
        }
        assert_eq!(hs.len(), 4);
        assert_eq!(hs.settle(legit), Some(-1));
        assert_eq!(hs.settle(legit), None);
    }

    #[test]
    fn a_burst_from_one_source_is_let_in_whole_within_the_grace() {
        let mut hs = Handshakes::new(1000, 3);
        for i in 0..64 {
            assert_eq!(hs.admit(v4(1), i, at(0)).1, None, "{i}");
        }
        // Once they are older than the grace, the source's oldest give way again.
        let later = at(0) + GRACE;
        assert_eq!(hs.admit(v4(1), 64, later).1, Some(Evicted::SameSource(0)));
    }

    #[test]
    fn many_sources_evict_the_oldest_of_all_at_the_total_cap() {
        let mut hs = Handshakes::new(4, 4);
        let ids: Vec<u64> = (1..=4).map(|i| hs.admit(v4(i), i, at(0)).0).collect();
        // A burst exceeds the cap; once the oldest is past the grace, it gives way.
        assert_eq!(hs.admit(v4(6), 6, at(1)).1, None);
        assert_eq!(hs.settle(ids.len() as u64), Some(6));
        assert_eq!(
            hs.admit(v4(5), 5, at(0) + GRACE).1,
            Some(Evicted::Oldest(1))
        );
        assert_eq!(hs.settle(ids[0]), None, "evicted");
        assert_eq!(hs.settle(ids[2]), Some(3));
        assert_eq!(hs.len(), 3);
        // At the connection cap the oldest gives way only once past the grace.
        assert_eq!(hs.evict_ripe(at(1)), Ripe::At(at(0) + GRACE));
        let late = at(0) + GRACE;
        assert_eq!(hs.evict_ripe(late), Ripe::Evicted(2));
        assert_eq!(hs.evict_ripe(late), Ripe::Evicted(4));
        // Entry 5 came at `late`: its own grace first.
        assert_eq!(hs.evict_ripe(late), Ripe::At(late + GRACE));
        assert_eq!(hs.evict_ripe(late + GRACE), Ripe::Evicted(5));
        assert_eq!(hs.evict_ripe(late + GRACE), Ripe::Nothing);
        assert!(hs.is_empty());
    }

    #[test]
    fn ipv6_sources_are_64_bit_prefixes_and_mapped_ipv4_is_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a.into()), Source::of(b.into()));
        assert_ne!(Source::of(a.into()), Source::of(c.into()));
        let mapped: Ipv6Addr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Source::of(mapped.into()), Source::of(v4(7)));
        let mut hs = Handshakes::new(10, 1);
        hs.admit(a.into(), 'a', at(0));
        assert_eq!(
            hs.admit(b.into(), 'b', at(5)).1,
            Some(Evicted::SameSource('a'))
        );
        assert_eq!(hs.admit(c.into(), 'c', at(5)).1, None);
    }
}
