//! BLAKE3 for inputs of one chunk (at most 1024 bytes): `hash` and `derive_key`, 32-byte
//! output. That is all Shadowsocks 2022 asks of it (SIP022 session subkeys: `PSK || salt`, at
//! most 64 bytes; SIP023: the hash of a PSK), and it is a few hundred bytes of code where the
//! `blake3` crate (portable, `pure`) costs tens of KiB in a size-optimised binary, for a tree
//! mode and SIMD dispatch that inputs this short never use.
//!
//! ```text
//! one chunk, blocks B0..Bn of 64 bytes (the last zero-padded; an empty input is one empty block)
//!   cv0 = key words (IV for hash and the context pass)
//!   cv(i+1) = compress(cv(i), Bi, counter 0, len(Bi), flags | START if i=0 | END+ROOT if i=n)
//!   output  = first 32 bytes of the last compression, little-endian words
//! derive_key(context, material):
//!   ck  = hash with flags DERIVE_KEY_CONTEXT of context
//!   key = hash keyed by ck with flags DERIVE_KEY_MATERIAL of material
//! ```
//! The tests check it against the `blake3` crate on every length up to the limit.

const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];
const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];

const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const ROOT: u32 = 8;
const DERIVE_KEY_CONTEXT: u32 = 32;
const DERIVE_KEY_MATERIAL: u32 = 64;

/// Longest input these functions take: one BLAKE3 chunk.
pub const MAX_INPUT: usize = 1024;
const BLOCK: usize = 64;

/// The input is longer than [`MAX_INPUT`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLong;

#[inline(always)]
fn g(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize, x: u32, y: u32) {
    s[a] = s[a].wrapping_add(s[b]).wrapping_add(x);
    s[d] = (s[d] ^ s[a]).rotate_right(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_right(12);
    s[a] = s[a].wrapping_add(s[b]).wrapping_add(y);
    s[d] = (s[d] ^ s[a]).rotate_right(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_right(7);
}

/// The compression function with block counter 0 (one chunk, one output block); returns the
/// first eight words of its output, which are the next chaining value or the hash.
fn compress(cv: &[u32; 8], block: &[u8; BLOCK], len: u32, flags: u32) -> [u32; 8] {
    let mut m = [0u32; 16];
    for (w, b) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let mut s = [
        cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7], IV[0], IV[1], IV[2], IV[3], 0, 0,
        len, flags,
    ];
    for round in 0..7 {
        g(&mut s, 0, 4, 8, 12, m[0], m[1]);
        g(&mut s, 1, 5, 9, 13, m[2], m[3]);
        g(&mut s, 2, 6, 10, 14, m[4], m[5]);
        g(&mut s, 3, 7, 11, 15, m[6], m[7]);
        g(&mut s, 0, 5, 10, 15, m[8], m[9]);
        g(&mut s, 1, 6, 11, 12, m[10], m[11]);
        g(&mut s, 2, 7, 8, 13, m[12], m[13]);
        g(&mut s, 3, 4, 9, 14, m[14], m[15]);
        if round < 6 {
            m = core::array::from_fn(|i| m[PERMUTATION[i]]);
        }
    }
    core::array::from_fn(|i| s[i] ^ s[i + 8])
}

/// One chunk under `key` with mode `flags`.
fn chunk(key: &[u32; 8], input: &[u8], flags: u32) -> Result<[u8; 32], TooLong> {
    if input.len() > MAX_INPUT {
        return Err(TooLong);
    }
    let blocks = input.len().div_ceil(BLOCK).max(1);
    let mut cv = *key;
    for i in 0..blocks {
        let start = i * BLOCK;
        let part = input
            .get(start..input.len().min(start + BLOCK))
            .unwrap_or(&[]);
        let mut block = [0u8; BLOCK];
        block[..part.len()].copy_from_slice(part);
        let mut f = flags;
        if i == 0 {
            f |= CHUNK_START;
        }
        if i + 1 == blocks {
            f |= CHUNK_END | ROOT;
        }
        // part.len() <= 64.
        cv = compress(&cv, &block, part.len() as u32, f);
    }
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(cv) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    Ok(out)
}

fn words(key: &[u8; 32]) -> [u32; 8] {
    core::array::from_fn(|i| {
        u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
    })
}

/// BLAKE3 hash (32 bytes) of at most [`MAX_INPUT`] bytes.
#[inline(never)]
pub fn hash(input: &[u8]) -> Result<[u8; 32], TooLong> {
    chunk(&IV, input, 0)
}

/// BLAKE3 `derive_key(context, material)` (32 bytes), both at most [`MAX_INPUT`] bytes.
#[inline(never)]
pub fn derive_key(context: &str, material: &[u8]) -> Result<[u8; 32], TooLong> {
    let context_key = chunk(&IV, context.as_bytes(), DERIVE_KEY_CONTEXT)?;
    chunk(&words(&context_key), material, DERIVE_KEY_MATERIAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(len: usize) -> alloc::vec::Vec<u8> {
        // The official test vectors' input pattern.
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn matches_the_blake3_crate_on_every_length() {
        for len in 0..=MAX_INPUT {
            let msg = input(len);
            assert_eq!(hash(&msg).unwrap(), *blake3::hash(&msg).as_bytes(), "{len}");
            let ctx = "shadowsocks 2022 session subkey";
            assert_eq!(
                derive_key(ctx, &msg).unwrap(),
                blake3::derive_key(ctx, &msg),
                "{len}"
            );
        }
        // A context of more than one block, too.
        let long = "a context string that is longer than one sixty-four byte block, to be sure";
        assert_eq!(
            derive_key(long, b"x").unwrap(),
            blake3::derive_key(long, b"x")
        );
        assert_eq!(hash(&input(MAX_INPUT + 1)), Err(TooLong));
        assert_eq!(derive_key("c", &input(MAX_INPUT + 1)), Err(TooLong));
    }

    #[test]
    fn official_vector_empty_input() {
        // BLAKE3 test_vectors.json, input_len 0, hash (first 32 bytes).
        let want = [
            0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc,
            0xc9, 0x49, 0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca,
            0xe4, 0x1f, 0x32, 0x62,
        ];
        assert_eq!(hash(b"").unwrap(), want);
    }
}
