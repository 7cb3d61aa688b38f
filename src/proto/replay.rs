//! Replay filter for AEAD salts: ss-server remembers the salts of recent authenticated sessions
//! and treats a repeated salt exactly like a wrong key (reference/protocol.md, "Server behaviour
//! that resists probing"). An active prober that replays a captured connection then learns
//! nothing it could not learn from random bytes.
//!
//! Memory is bounded by construction, the way shadowsocks-libev and shadowsocks-rust do it: two
//! Bloom filters used ping-pong. Salts go into the *current* half; when it holds `capacity`
//! salts, the *older* half is cleared and becomes the current one. Lookups consult both, so at
//! any moment at least the `capacity` most recent salts are remembered (and at most
//! `2 * capacity`). A Bloom filter never forgets an inserted salt while its half lives, so
//! there are no false negatives in that range; false positives (an honest, fresh salt taken for
//! a replay) cost one failed connection that the client retries.
//!
//! Each half has `m ≈ capacity * K / ln 2` bits and every salt sets `K = 20` of them, the optimal
//! shape for a false-positive rate of `2^-20 ≈ 1e-6` at capacity (about 2e-6 when both halves
//! are full, since a lookup asks both).
//!
//! Sans-IO: no clock, no sockets, no allocation after `new`. The bit positions come from a
//! *keyed* hash: honest salts are uniformly random, but whoever holds the password can choose
//! salts, and with a public hash could pick salts that all land on the same few bits (to make
//! the filter useless) or on many different bits (to fill it with false positives for everyone).
//! std's `RandomState` is SipHash-1-3 under a random 128-bit key that std draws from the OS once
//! per thread; it needs no dependency, and the key never leaves this process.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

/// Salts remembered per half by default (`replay_capacity`). Two halves of ~231 KiB each: about
/// 462 KiB in all, and a lazily-zeroed allocation costs RSS only for pages touched. 65,536
/// connections is hours of a household's traffic and far more than an active prober waits
/// before replaying (seconds to minutes).
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Largest capacity accepted: about 15 MiB per half. Bigger values are clamped; the config
/// refuses them, so a typo cannot make the router allocate gigabytes.
pub const MAX_CAPACITY: usize = 1 << 22;

/// Bits set per salt. The optimal count for a false-positive rate `p` is `log2(1/p)`; 20 gives
/// `p = 2^-20 ≈ 9.5e-7` at capacity.
const K: usize = 20;
/// ln 2 ≈ LN_2_NUMER / LN_2_DENOM (0.693147180…).
const LN_2_NUMER: u64 = 693_147_180;
const LN_2_DENOM: u64 = 1_000_000_000;
/// `K * LN_2_DENOM`: divided by LN_2_NUMER, the `K / ln 2` bits each salt needs.
const K_SCALED: u64 = K as u64 * LN_2_DENOM;
/// Fewest bits per half: more than `K`, so that a salt's `K` positions can all differ.
const MIN_BITS: u64 = K as u64 + 1;

/// Two ping-pong Bloom filters over salts. See the module documentation. `S` is the keyed
/// hash; only tests choose another one than `RandomState`, to be deterministic.
pub struct ReplayFilter<S = RandomState> {
    /// The two bit arrays, each `words` long; `halves[current]` takes new salts.
    halves: [Vec<u64>; 2],
    current: usize,
    /// Salts inserted into the current half since it was last cleared.
    count: usize,
    capacity: usize,
    /// Bits per half actually addressed: a prime, so the double-hashing stride is always
    /// coprime with it and the `K` positions of a salt are always distinct.
    bits: u64,
    keys: S,
}

impl ReplayFilter {
    /// A filter that remembers at least the last `capacity` salts (clamped to
    /// `1..=MAX_CAPACITY`). Allocates both halves, zeroed, once.
    pub fn new(capacity: usize) -> Self {
        Self::with_keys(capacity, RandomState::new())
    }
}

impl<S: BuildHasher> ReplayFilter<S> {
    fn with_keys(capacity: usize, keys: S) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        // m = n * k / ln 2 is the size at which k hash functions are optimal for n entries.
        // Integer arithmetic (ln 2 to nine digits, rounded up): soft-float routines would add
        // about 7 KiB to the MIPS build for this one line.
        // At most 2^22 * 20 * 10^9 < 2^57: saturating never saturates.
        let ideal = (capacity as u64)
            .saturating_mul(K_SCALED)
            .div_ceil(LN_2_NUMER);
        let bits = next_prime(ideal.max(MIN_BITS));
        let words = usize::try_from(bits.div_ceil(64)).unwrap_or(usize::MAX);
        ReplayFilter {
            // vec![0; n] is calloc: large arrays come from fresh mmap'd pages, which use no
            // RAM until a bit in them is set.
            halves: [vec![0u64; words], vec![0u64; words]],
            current: 0,
            count: 0,
            capacity,
            bits,
            keys,
        }
    }

    /// Whether `salt` was inserted recently (or is a false positive). Does not insert.
    pub fn check(&self, salt: &[u8]) -> bool {
        let pos = self.positions(salt);
        self.half_contains(0, &pos) || self.half_contains(1, &pos)
    }

    /// Remembers `salt`. Call it only once the session authenticated: inserting salts of
    /// garbage would let anyone flush the filter with random bytes.
    pub fn insert(&mut self, salt: &[u8]) {
        let pos = self.positions(salt);
        self.insert_positions(&pos);
    }

    /// `check` then `insert` with one hash computation; true means "seen before": treat the
    /// session like one with a wrong key. A salt found only in the older half is inserted again,
    /// so a replay that keeps coming back stays remembered.
    pub fn check_and_insert(&mut self, salt: &[u8]) -> bool {
        let pos = self.positions(salt);
        if self.half_contains(self.current, &pos) {
            return true;
        }
        let seen = self.half_contains(self.current ^ 1, &pos);
        self.insert_positions(&pos);
        seen
    }

    /// Heap bytes held by the two bit arrays.
    pub fn memory_bytes(&self) -> usize {
        self.halves
            .iter()
            .map(|h| std::mem::size_of_val(h.as_slice()))
            .sum()
    }

    /// Salts remembered for certain: the configured capacity after clamping.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The `K` bit positions of `salt`, by double hashing (Kirsch and Mitzenmacher: `K`
    /// positions from two hashes lose nothing measurable against `K` independent hashes).
    fn positions(&self, salt: &[u8]) -> [u64; K] {
        let mut h = self.keys.build_hasher();
        h.write(salt);
        let h1 = h.finish();
        // SipHash over `salt || 0xff`: a second, independent-looking value under the same key.
        h.write_u8(0xff);
        let h2 = h.finish();
        // m is a prime above K (`with_keys`), so neither divisor below is zero.
        let m = self.bits;
        let mut at = h1.checked_rem(m).unwrap_or(0);
        // A stride in 1..m; m is prime, so the K positions are distinct.
        let stride = h2
            .checked_rem(m.saturating_sub(1))
            .unwrap_or(0)
            .saturating_add(1);
        let mut pos = [0u64; K];
        for p in pos.iter_mut() {
            *p = at;
            // at + stride < 2m, and m < 2^63: exact, and one subtraction reduces it.
            at = at.saturating_add(stride);
            if at >= m {
                at = at.saturating_sub(m);
            }
        }
        pos
    }

    fn half_contains(&self, half: usize, pos: &[u64; K]) -> bool {
        let Some(words) = self.halves.get(half) else {
            return false;
        };
        pos.iter().all(|&p| {
            words
                .get((p / 64) as usize)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        })
    }

    fn insert_positions(&mut self, pos: &[u64; K]) {
        // Already all set in the current half: nothing would change, so do not count it.
        if self.half_contains(self.current, pos) {
            return;
        }
        if self.count >= self.capacity {
            // The older half holds salts older than the full current one: forget them, and
            // start filling that half. The full one keeps answering for `capacity` salts.
            self.current ^= 1;
            if let Some(older) = self.halves.get_mut(self.current) {
                older.fill(0);
            }
            self.count = 0;
        }
        if let Some(words) = self.halves.get_mut(self.current) {
            for &p in pos {
                if let Some(w) = words.get_mut((p / 64) as usize) {
                    *w |= 1 << (p % 64);
                }
            }
        }
        // count < capacity here (it was reset above when it reached it).
        self.count = self.count.saturating_add(1);
    }
}

impl<S: BuildHasher> fmt::Debug for ReplayFilter<S> {
    // The bit arrays are large and say nothing useful; the key must not be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayFilter")
            .field("capacity", &self.capacity)
            .field("count", &self.count)
            .field("bits_per_half", &self.bits)
            .field("memory_bytes", &self.memory_bytes())
            .finish_non_exhaustive()
    }
}

/// The smallest prime `>= n` (n >= 2). Trial division is fine: it runs once, at start-up, on
/// numbers below 2^27, where prime gaps are a few dozen.
fn next_prime(n: u64) -> u64 {
    (n.max(2)..=u64::MAX)
        .find(|&c| is_prime(c))
        .unwrap_or(u64::MAX)
}

fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d: u64 = 3;
    // d stays below 2^32 + 2: d * d <= n < 2^64 ends the loop first.
    while d.checked_mul(d).is_some_and(|square| square <= n) {
        if n.is_multiple_of(d) {
            return false;
        }
        d = d.saturating_add(2);
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )]
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::BuildHasherDefault;

    /// A filter under a fixed key (SipHash with zero keys), so that each test sees the same
    /// bit positions every run: a Bloom filter's false positives are a matter of chance, and a
    /// tiny filter under a random key has them often enough (about 1% for `fixed(3)`'s 89
    /// bits) to make a test flaky.
    fn fixed(capacity: usize) -> ReplayFilter<BuildHasherDefault<DefaultHasher>> {
        ReplayFilter::with_keys(capacity, BuildHasherDefault::default())
    }

    #[test]
    fn each_filter_has_its_own_key() {
        let (a, b) = (ReplayFilter::new(16), ReplayFilter::new(16));
        let salt = [7u8; 32];
        assert_ne!(a.positions(&salt), b.positions(&salt));
        assert_eq!(fixed(16).positions(&salt), fixed(16).positions(&salt));
    }

    /// Deterministic pseudo-random salts (splitmix64).
    struct Salts(u64);

    impl Salts {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn salt(&mut self) -> [u8; 32] {
            let mut s = [0u8; 32];
            for chunk in s.chunks_mut(8) {
                chunk.copy_from_slice(&self.next_u64().to_le_bytes());
            }
            s
        }
    }

    #[test]
    fn primes() {
        let small: Vec<u64> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert_eq!(next_prime(24), 29);
        assert_eq!(next_prime(29), 29);
        assert!(!is_prime(1_000_001)); // 101 * 9901
    }

    #[test]
    fn remembers_inserted_and_detects_replay() {
        let mut f = fixed(16);
        let a = [1u8; 32];
        let b = [2u8; 16];
        assert!(!f.check(&a));
        assert!(!f.check_and_insert(&a));
        assert!(f.check(&a));
        assert!(f.check_and_insert(&a));
        assert!(!f.check(&b));
        f.insert(&b);
        assert!(f.check(&b));
        // A salt and its prefix are different salts.
        assert!(!f.check(&a[..16]));
    }

    #[test]
    fn no_false_negatives_for_the_last_capacity_salts() {
        let cap = 1000;
        let mut f = fixed(cap);
        let mut gen = Salts(1);
        let mut history: Vec<[u8; 32]> = Vec::new();
        // Five generations: the halves swap four times.
        for i in 0..5 * cap {
            let s = gen.salt();
            f.insert(&s);
            history.push(s);
            if i % 97 == 0 || i % cap == cap - 1 || i % cap == 0 {
                let from = history.len().saturating_sub(cap);
                for (j, old) in history[from..].iter().enumerate() {
                    assert!(
                        f.check(old),
                        "salt {} forgotten after {} inserts",
                        from + j,
                        i + 1
                    );
                }
            }
        }
        // And the memory really is bounded: salts from long ago are gone (up to false
        // positives, which are ~1e-6 here).
        let forgotten = history[..cap].iter().filter(|s| !f.check(&s[..])).count();
        assert_eq!(forgotten, cap);
    }

    #[test]
    fn swap_happens_at_capacity() {
        let mut f = fixed(3);
        let mut gen = Salts(7);
        let s: Vec<[u8; 32]> = (0..7).map(|_| gen.salt()).collect();
        for x in &s[..6] {
            assert!(!f.check_and_insert(x));
        }
        // Halves: older = s0..s2, current = s3..s5 (full). Everything is still remembered.
        assert!(s[..6].iter().all(|x| f.check(x)));
        // The seventh salt clears s0..s2.
        f.insert(&s[6]);
        assert!(s[..3].iter().all(|x| !f.check(x)));
        assert!(s[3..].iter().all(|x| f.check(x)));
    }

    #[test]
    fn repeated_inserts_do_not_use_up_capacity() {
        let mut f = fixed(2);
        let a = [9u8; 32];
        for _ in 0..10 {
            f.insert(&a);
        }
        assert_eq!(f.count, 1);
        // A replay found only in the older half is inserted again and so survives one more swap.
        let mut gen = Salts(3);
        let (b, c) = (gen.salt(), gen.salt());
        f.insert(&b); // current = {a, b}
        f.insert(&c); // swap: older = {a, b}, current = {c}
        assert!(f.check_and_insert(&a)); // current = {c, a}
        let d = gen.salt();
        f.insert(&d); // swap: older = {c, a}, current = {d}
        assert!(f.check(&a));
        assert!(!f.check(&b));
    }

    #[test]
    fn false_positive_rate_at_capacity() {
        let mut f = fixed(DEFAULT_CAPACITY);
        let mut gen = Salts(42);
        // Worst case: both halves full.
        for _ in 0..2 * DEFAULT_CAPACITY {
            f.insert(&gen.salt());
        }
        assert_eq!(f.count, DEFAULT_CAPACITY);
        let mut probe = Salts(0xdead_beef);
        let trials = 2_000_000;
        let hits = (0..trials).filter(|_| f.check(&probe.salt())).count();
        // Expected about 2 * 2^-20 * trials ≈ 4; 1e-5 * trials = 20 would be a broken filter.
        assert!(
            hits < trials / 100_000,
            "{hits} false positives in {trials}"
        );
    }

    #[test]
    fn memory_is_as_computed() {
        let f = ReplayFilter::new(DEFAULT_CAPACITY);
        // ceil(65536 * 20 / ln 2) = 1,890,980 bits, next prime 1,890,997, in 29,547 words.
        assert_eq!(f.bits, 1_890_997);
        assert_eq!(f.memory_bytes(), 2 * 29_547 * 8);
        assert_eq!(f.memory_bytes(), 472_752);
        // Linear in capacity; clamped at both ends.
        let small = ReplayFilter::new(1024);
        assert!(small.memory_bytes() <= 2 * 8 * (1024 * 29 / 64 + 2));
        assert_eq!(ReplayFilter::new(0).capacity(), 1);
        assert_eq!(ReplayFilter::new(usize::MAX).capacity(), MAX_CAPACITY);
        assert!(!format!("{f:?}").contains("halves"));
    }

    #[test]
    fn tiny_filters_work() {
        let mut f = fixed(1);
        let mut gen = Salts(5);
        let mut prev = gen.salt();
        f.insert(&prev);
        for _ in 0..100 {
            // 29 bits and 20 per salt: false positives are common, forgetting is not allowed.
            let s = gen.salt();
            f.check_and_insert(&s);
            assert!(f.check(&s) && f.check(&prev));
            prev = s;
        }
        // Empty salts are salts too (nothing panics).
        f.insert(&[]);
        assert!(f.check(&[]));
    }
}
