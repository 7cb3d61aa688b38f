//! ChaCha20 (RFC 8439 §2.3–2.4) in 32-bit words, XORing the keystream into the message a whole
//! aligned word at a time: the stream cipher for targets without the `chacha20` crate's SIMD
//! backends (MIPS routers, see [`crate::chacha_poly`]).
//!
//! Why not that crate's portable backend: it writes each keystream word into a byte array, and
//! on MIPS a 4-byte store of unknown alignment becomes an `swl`/`swr` pair, which qemu-user
//! (where the router benchmark runs) emulates with a helper call per byte. Keystream and XOR
//! that way ran at 78–138 MB/s under qemu-mipsel; this module, which loads and stores only
//! aligned words, at about 400 MB/s, and on real MIPS cores an aligned `lw`/`sw` is one
//! instruction where the unaligned access is two.
//!
//! ```text
//! state:  "expa" "nd 3" "2-by" "te k" | key[0..8] (LE words) | counter | nonce[0..3] (LE words)
//! block:  10 double rounds over a copy, then added word by word to the state
//! ```
//!
//! A message whose start is not 4-byte aligned (a received chunk lies wherever the stream put
//! it) is handled without unaligned access too: its aligned words take keystream bytes
//! straddling two keystream words, joined with a shift ("funnel").

const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// Keystream words per block.
const WORDS: usize = 16;

/// The key and nonce; the block counter is chosen per call.
pub struct ChaCha20 {
    state: [u32; WORDS],
}

#[inline(always)]
fn quarter_round(x: &mut [u32; WORDS], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

/// The 20 rounds, without the final addition (HChaCha20 uses them bare).
#[inline(always)]
fn rounds(state: &[u32; WORDS]) -> [u32; WORDS] {
    let mut x = *state;
    for _ in 0..10 {
        quarter_round(&mut x, 0, 4, 8, 12);
        quarter_round(&mut x, 1, 5, 9, 13);
        quarter_round(&mut x, 2, 6, 10, 14);
        quarter_round(&mut x, 3, 7, 11, 15);
        quarter_round(&mut x, 0, 5, 10, 15);
        quarter_round(&mut x, 1, 6, 11, 12);
        quarter_round(&mut x, 2, 7, 8, 13);
        quarter_round(&mut x, 3, 4, 9, 14);
    }
    x
}

/// Little-endian words of `bytes` (a multiple of four long) into `out`.
fn le_words(out: &mut [u32], bytes: &[u8]) {
    for (w, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// HChaCha20 (draft-irtf-cfrg-xchacha §2.2): the subkey XChaCha20 runs ChaCha20 with.
pub fn hchacha20(key: &[u8; 32], input: &[u8; 16]) -> [u8; 32] {
    let mut state = [0u32; WORDS];
    state[..4].copy_from_slice(&CONSTANTS);
    le_words(&mut state[4..12], key);
    le_words(&mut state[12..], input);
    let x = rounds(&state);
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(x[..4].iter().chain(&x[12..])) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

impl ChaCha20 {
    pub fn new(key: &[u8; 32], nonce: &[u8; 12]) -> ChaCha20 {
        let mut state = [0u32; WORDS];
        state[..4].copy_from_slice(&CONSTANTS);
        le_words(&mut state[4..12], key);
        le_words(&mut state[13..], nonce);
        ChaCha20 { state }
    }

    /// Keystream block `counter`.
    #[inline(always)]
    fn block(&self, counter: u32) -> [u32; WORDS] {
        let mut state = self.state;
        state[12] = counter;
        let mut x = rounds(&state);
        for (x, s) in x.iter_mut().zip(state) {
            *x = x.wrapping_add(s);
        }
        x
    }

    /// The first `out.len()` (at most 64) bytes of block `counter`.
    pub fn block_bytes(&self, counter: u32, out: &mut [u8]) {
        let ks = self.block(counter);
        for (i, b) in out.iter_mut().take(4 * WORDS).enumerate() {
            *b = ks_byte(&ks, i);
        }
    }

    /// `buf ^=` the keystream from block `counter` on (the block counter wraps at 2^32, which a
    /// Shadowsocks chunk never comes near).
    #[inline(never)]
    pub fn xor(&self, counter: u32, buf: &mut [u8]) {
        let (head, body, tail) = bytemuck::pod_align_to_mut::<u8, u32>(buf);
        if head.len() >= 4 {
            // `align_to` may in principle split anywhere; it never does for plain memory.
            return self.xor_bytes(counter, buf);
        }
        let skew = head.len();
        let mut counter = counter;
        let mut ks = self.block(counter);
        for (i, b) in head.iter_mut().enumerate() {
            *b ^= ks_byte(&ks, i);
        }
        // Position, in `ks`, of the keystream byte for the next message byte.
        let mut pos = skew;
        if skew == 0 {
            for words in body.chunks_mut(WORDS) {
                if pos == 4 * WORDS {
                    counter = counter.wrapping_add(1);
                    ks = self.block(counter);
                    pos = 0;
                }
                for (w, k) in words.iter_mut().zip(ks) {
                    *w = (u32::from_le(*w) ^ k).to_le();
                }
                pos += 4 * words.len();
            }
        } else {
            // Word j of the body takes keystream bytes skew + 4j .. skew + 4j + 4: the top of
            // keystream word j and the bottom of word j + 1 (the next block's word 0 for j = 15).
            let (lo, hi) = (8 * skew as u32, 32 - 8 * skew as u32);
            for words in body.chunks_mut(WORDS) {
                let next = self.block(counter.wrapping_add(1));
                for (j, w) in words.iter_mut().enumerate() {
                    let upper = if j + 1 < WORDS { ks[j + 1] } else { next[0] };
                    let k = (ks[j] >> lo) | (upper << hi);
                    *w = (u32::from_le(*w) ^ k).to_le();
                }
                pos += 4 * words.len();
                if pos >= 4 * WORDS {
                    counter = counter.wrapping_add(1);
                    ks = next;
                    pos -= 4 * WORDS;
                }
            }
        }
        for b in tail.iter_mut() {
            if pos == 4 * WORDS {
                counter = counter.wrapping_add(1);
                ks = self.block(counter);
                pos = 0;
            }
            *b ^= ks_byte(&ks, pos);
            pos += 1;
        }
    }

    /// `xor` a byte at a time; only for a split `align_to` never makes.
    #[cold]
    fn xor_bytes(&self, counter: u32, buf: &mut [u8]) {
        for (i, piece) in buf.chunks_mut(4 * WORDS).enumerate() {
            let ks = self.block(counter.wrapping_add(i as u32));
            for (j, b) in piece.iter_mut().enumerate() {
                *b ^= ks_byte(&ks, j);
            }
        }
    }
}

/// Byte `i` of a keystream block (words are little-endian).
#[inline(always)]
fn ks_byte(ks: &[u32; WORDS], i: usize) -> u8 {
    (ks[i / 4] >> (8 * (i % 4))) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

    #[test]
    fn rfc8439_block_function_vector() {
        // RFC 8439 §2.3.2.
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let nonce = [0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0];
        let mut out = [0u8; 64];
        ChaCha20::new(&key, &nonce).block_bytes(1, &mut out);
        assert_eq!(
            out[..16],
            [
                0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15, 0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20,
                0x71, 0xc4
            ]
        );
        assert_eq!(
            out[48..],
            [
                0xb5, 0x12, 0x9c, 0xd1, 0xde, 0x16, 0x4e, 0xb9, 0xcb, 0xd0, 0x83, 0xe8, 0xa2, 0x50,
                0x3c, 0x4e
            ]
        );
    }

    #[test]
    fn hchacha20_as_the_chacha20_crate() {
        for seed in 0..20u8 {
            let key: [u8; 32] = core::array::from_fn(|i| seed.wrapping_mul(31) ^ i as u8);
            let input: [u8; 16] = core::array::from_fn(|i| seed.wrapping_add(i as u8 * 3));
            let want = chacha20::hchacha::<chacha20::R20>(&key.into(), &input.into());
            assert_eq!(hchacha20(&key, &input), want.as_slice());
        }
    }

    /// Same bytes as the `chacha20` crate for every length and start alignment, from several
    /// counters (the buffer is a slice of a `u32` array so that its alignment is known).
    #[test]
    fn same_keystream_as_the_chacha20_crate_at_every_offset() {
        let key: [u8; 32] = core::array::from_fn(|i| (i * 7 + 1) as u8);
        let nonce: [u8; 12] = core::array::from_fn(|i| (i * 13 + 5) as u8);
        let ours = ChaCha20::new(&key, &nonce);
        let mut backing = [0u32; 200];
        for counter in [0u32, 1, 7] {
            for offset in 0..8 {
                for len in (0..300).chain([511, 512, 513, 700]) {
                    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut backing);
                    let buf = &mut bytes[offset..offset + len];
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = (i * 31 + offset) as u8;
                    }
                    let mut want = buf.to_vec();
                    let mut theirs = chacha20::ChaCha20::new(&key.into(), &nonce.into());
                    theirs.seek(64 * u64::from(counter));
                    theirs.apply_keystream(&mut want);
                    ours.xor(counter, buf);
                    assert_eq!(
                        buf,
                        &want[..],
                        "counter {counter} offset {offset} len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_byte_path_agrees() {
        let key = [9u8; 32];
        let nonce = [3u8; 12];
        let c = ChaCha20::new(&key, &nonce);
        let mut a = [0x5au8; 333];
        let mut b = a;
        c.xor(1, &mut a);
        c.xor_bytes(1, &mut b);
        assert_eq!(a, b);
    }
}
