//! The server's salt store (SIP022 replay protection): every salt of a request whose fixed
//! header authenticated and whose timestamp was fresh is remembered for [`SALT_TTL`] seconds,
//! exactly (no Bloom filter: the spec forbids false positives).
//!
//! ```text
//! order: VecDeque (inserted at, salt)   oldest first; `now` only grows, so expiry pops the front
//! set:   HashSet salt                   lookups; keyed SipHash (RandomState), so a client that
//!                                       knows the PSK cannot choose colliding salts
//! ```
//!
//! A salt older than 60 s cannot be replayed anyway: the header's timestamp is checked first
//! and allows only 30 s either way, so 60 s covers the whole window of a replayed timestamp.
//!
//! Bounded: at most `capacity` unexpired salts. When the store is full, a new salt is refused
//! ([`Error::SaltPoolFull`]): the connection is then dropped like any failed handshake. That
//! keeps the guarantee exact (evicting an unexpired salt would reopen it to replay) at the price
//! of refusing new sessions during a flood of authenticated ones, which only holders of the
//! PSK can send. Memory grows with use, up to about 90 bytes per remembered salt.
//!
//! Sans-IO: `now` (unix seconds) is passed in; a `now` that moves backwards only keeps salts
//! longer.

use super::{Error, MAX_KEY_LEN};
use std::collections::{HashSet, VecDeque};

/// How long a salt is remembered, in seconds.
pub const SALT_TTL: u64 = 60;
/// A bound for tests and tools; ss-server uses `--replay-capacity` (65,536 by default: 1,092 new
/// sessions a second, sustained, about 5.6 MiB at worst, only as key holders fill it).
pub const DEFAULT_CAPACITY: usize = 16_384;

type Salt = [u8; MAX_KEY_LEN];

/// See the module documentation.
pub struct SaltPool {
    order: VecDeque<(u64, Salt)>,
    set: HashSet<Salt>,
    capacity: usize,
}

fn key(salt: &[u8]) -> Salt {
    let mut k = [0u8; MAX_KEY_LEN];
    for (d, s) in k.iter_mut().zip(salt) {
        *d = *s;
    }
    k
}

impl SaltPool {
    /// A store for at most `capacity` (at least 1) unexpired salts; allocates as it fills.
    pub fn new(capacity: usize) -> SaltPool {
        SaltPool {
            order: VecDeque::new(),
            set: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Forgets salts inserted [`SALT_TTL`] or more seconds before `now`.
    pub fn expire(&mut self, now: u64) {
        while let Some(&(at, salt)) = self.order.front() {
            if now.saturating_sub(at) < SALT_TTL {
                break;
            }
            self.order.pop_front();
            self.set.remove(&salt);
        }
    }

    /// Records `salt` (16 or 32 bytes; longer ones are cut at 32) seen at `now`: `Replay` if it
    /// is already remembered, `SaltPoolFull` if `capacity` unexpired salts are.
    pub fn insert(&mut self, salt: &[u8], now: u64) -> Result<(), Error> {
        self.expire(now);
        let k = key(salt);
        if self.set.contains(&k) {
            return Err(Error::Replay);
        }
        if self.set.len() >= self.capacity {
            return Err(Error::SaltPoolFull);
        }
        self.set.insert(k);
        // Stored with the latest time seen, so the deque stays ordered even if `now` steps back.
        let at = self.order.back().map_or(now, |&(last, _)| last.max(now));
        self.order.push_back((at, k));
        Ok(())
    }

    /// Whether `salt` is remembered (not counting expiry since the last insert or expire).
    pub fn contains(&self, salt: &[u8]) -> bool {
        self.set.contains(&key(salt))
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
    use super::*;

    #[test]
    fn remembers_for_sixty_seconds() {
        let mut p = SaltPool::new(10);
        p.insert(&[1; 32], 1000).unwrap();
        assert_eq!(p.insert(&[1; 32], 1000), Err(Error::Replay));
        assert_eq!(p.insert(&[1; 32], 1059), Err(Error::Replay));
        p.insert(&[1; 32], 1060).unwrap();
        assert_eq!(p.len(), 1);
        // 16- and 32-byte salts are different entries even with a common prefix.
        p.insert(&[1; 16], 1060).unwrap();
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn full_refuses_until_something_expires() {
        let mut p = SaltPool::new(3);
        for i in 0..3u8 {
            p.insert(&[i; 32], 100 + u64::from(i)).unwrap();
        }
        assert_eq!(p.insert(&[9; 32], 120), Err(Error::SaltPoolFull));
        // A replay is still reported as a replay when full.
        assert_eq!(p.insert(&[1; 32], 120), Err(Error::Replay));
        p.insert(&[9; 32], 160).unwrap(); // salt 0 expired at 160
        assert!(!p.contains(&[0; 32]));
        assert!(p.contains(&[1; 32]));
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn clock_stepping_back_keeps_salts_longer() {
        let mut p = SaltPool::new(10);
        p.insert(&[1; 32], 1000).unwrap();
        p.insert(&[2; 32], 900).unwrap();
        assert_eq!(p.insert(&[2; 32], 1059), Err(Error::Replay));
        p.expire(1060);
        assert!(p.is_empty());
    }
}
