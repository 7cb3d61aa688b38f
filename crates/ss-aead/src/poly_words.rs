//! Poly1305 (RFC 8439 §2.5) in four 32-bit limbs, for the targets that take ChaCha20 from
//! [`crate::chacha_words`] (MIPS and other 32-bit router CPUs).
//!
//! ```text
//! accumulator h = h4·2^128 + h3·2^96 + h2·2^64 + h1·2^32 + h0      (h4: a few bits)
//! key r         =            r3·2^96 + r2·2^64 + r1·2^32 + r0      (clamped)
//! per block m:  h = (h + m + 2^128) · r   mod 2^130 - 5           (kept partly reduced)
//! tag           = (h mod 2^130 - 5) + s   mod 2^128
//! ```
//!
//! Why not the `poly1305` crate's portable backend: it works in five 26-bit limbs, 25
//! products of 32 × 32 → 64 bits per block, and LLVM's MIPS backend moves the multiplier's
//! HI/LO accumulator to and from general registers around every multiply-add: 208
//! instructions per 16-byte block. Radix 2^32 needs 16 such products and 4 small 32-bit ones:
//! 154 instructions (cross/qemu_profile.py counts them). Clamping leaves the top four bits of
//! every `r` limb and the low two bits of r1, r2, r3 clear, so a product whose weight reaches
//! 2^128 folds back exactly as `h_i · (r_j + r_j / 4)` (2^128 = 2^130 / 4 ≡ 5 / 4 mod p), and a
//! column of four products stays below 2^63.
//!
//! The additions outside the products are 32-bit with explicit carries ([`adc`]): written as
//! 64-bit sums cut back to 32 bits, they stopped LLVM from forming multiply-adds at all (200
//! instructions per block).
//!
//! Constant time: no branch or index depends on the key or the message; the final choice
//! between `h` and `h - p` is made with a mask.

/// One message's Poly1305 state. Fed only whole 16-byte blocks: the AEAD construction pads
/// the ciphertext with zeros and appends a lengths block, so every block carries the 2^128
/// bit.
pub struct PolyWords {
    r: [u32; 4],
    /// `r_j + r_j / 4` for j = 1, 2, 3.
    s: [u32; 3],
    h: [u32; 5],
    /// The second half of the one-time key, added at the end.
    pad: [u32; 4],
}

fn le32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w)
}

fn mul(a: u32, b: u32) -> u64 {
    u64::from(a) * u64::from(b)
}

/// `a + b + carry` and the carry out (`carry` is 0 or 1).
fn adc(a: u32, b: u32, carry: u32) -> (u32, u32) {
    let (s, c1) = a.overflowing_add(b);
    let (s, c2) = s.overflowing_add(carry);
    (s, u32::from(c1 | c2))
}

impl PolyWords {
    pub fn new(key: &[u8; 32]) -> Self {
        let r = [
            le32(&key[0..]) & 0x0fff_ffff,
            le32(&key[4..]) & 0x0fff_fffc,
            le32(&key[8..]) & 0x0fff_fffc,
            le32(&key[12..]) & 0x0fff_fffc,
        ];
        PolyWords {
            r,
            s: [r[1] + (r[1] >> 2), r[2] + (r[2] >> 2), r[3] + (r[3] >> 2)],
            h: [0; 5],
            pad: [
                le32(&key[16..]),
                le32(&key[20..]),
                le32(&key[24..]),
                le32(&key[28..]),
            ],
        }
    }

    /// `data`, zero-padded to a multiple of 16 bytes.
    pub fn update_padded(&mut self, data: &[u8]) {
        let mut blocks = data.chunks_exact(16);
        for b in &mut blocks {
            self.block(b);
        }
        let rest = blocks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 16];
            last[..rest.len()].copy_from_slice(rest);
            self.block(&last);
        }
    }

    /// One 16-byte block (`b.len() >= 16`; only the first 16 bytes count).
    pub fn block(&mut self, b: &[u8]) {
        let [r0, r1, r2, r3] = self.r;
        let [s1, s2, s3] = self.s;
        let [h0, h1, h2, h3, h4] = self.h;

        // h += m + 2^128. h4 was at most 4, so it is at most 6 now.
        let (h0, c) = adc(h0, le32(&b[0..]), 0);
        let (h1, c) = adc(h1, le32(&b[4..]), c);
        let (h2, c) = adc(h2, le32(&b[8..]), c);
        let (h3, c) = adc(h3, le32(&b[12..]), c);
        let h4 = h4 + c + 1;

        // h *= r, one 64-bit column per limb; h4 · s_j < 6 · 1.25 · 2^28 fits 32 bits.
        let d0 = mul(h0, r0) + mul(h1, s3) + mul(h2, s2) + mul(h3, s1);
        let d1 = mul(h0, r1) + mul(h1, r0) + mul(h2, s3) + mul(h3, s2);
        let d2 = mul(h0, r2) + mul(h1, r1) + mul(h2, r0) + mul(h3, s3);
        let d3 = mul(h0, r3) + mul(h1, r2) + mul(h2, r1) + mul(h3, r0);
        // Carry each column into the next.
        let d1 = d1 + (d0 >> 32) + u64::from(h4 * s1);
        let d2 = d2 + (d1 >> 32) + u64::from(h4 * s2);
        let d3 = d3 + (d2 >> 32) + u64::from(h4 * s3);
        // Below 6 · 2^28 + 2^31: no overflow.
        let h4 = h4 * r0 + (d3 >> 32) as u32;
        let (h0, h1, h2, h3) = (d0 as u32, d1 as u32, d2 as u32, d3 as u32);

        // Fold the bits from 2^130 up back in, times 5: h4 = 4q + rest, c = 5q.
        let c = (h4 >> 2) + (h4 & !3);
        let (h0, c) = adc(h0, c, 0);
        let (h1, c) = adc(h1, 0, c);
        let (h2, c) = adc(h2, 0, c);
        let (h3, c) = adc(h3, 0, c);
        let h4 = (h4 & 3) + c;

        self.h = [h0, h1, h2, h3, h4];
    }

    /// The tag: h fully reduced mod 2^130 - 5, plus the pad, mod 2^128.
    pub fn finalize(self) -> [u8; 16] {
        let [h0, h1, h2, h3, h4] = self.h;
        // g = h + 5: h >= p exactly when g reaches 2^130 (bit 2 of g4); then h - p is g's
        // low 130 bits, and h < 2p, so one subtraction is enough.
        let (g0, c) = adc(h0, 5, 0);
        let (g1, c) = adc(h1, 0, c);
        let (g2, c) = adc(h2, 0, c);
        let (g3, c) = adc(h3, 0, c);
        let g4 = h4 + c;
        let take_g = 0u32.wrapping_sub(g4 >> 2);
        let pick = |h: u32, g: u32| (h & !take_g) | (g & take_g);
        let h = [pick(h0, g0), pick(h1, g1), pick(h2, g2), pick(h3, g3)];

        let mut tag = [0u8; 16];
        let mut carry = 0;
        for ((out, h), pad) in tag.chunks_exact_mut(4).zip(h).zip(self.pad) {
            let (t, c) = adc(h, pad, carry);
            out.copy_from_slice(&t.to_le_bytes());
            carry = c;
        }
        tag
    }
}

/// Constant-time tag comparison: every byte is looked at, whatever differs.
pub fn tags_equal(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{vec, vec::Vec};
    use poly1305::universal_hash::{KeyInit, UniversalHash};

    fn crate_tag(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
        let mut mac = poly1305::Poly1305::new(key.into());
        mac.update_padded(data);
        mac.finalize().into()
    }

    fn ours(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
        let mut mac = PolyWords::new(key);
        mac.update_padded(data);
        mac.finalize()
    }

    /// RFC 8439 §2.5.2's key; its 34-byte message and every prefix of it (padded here).
    #[test]
    fn matches_the_crate_on_the_rfc_key() {
        let key: [u8; 32] = [
            0x85, 0xd6, 0xbe, 0x78, 0x57, 0x55, 0x6d, 0x33, 0x7f, 0x44, 0x52, 0xfe, 0x42, 0xd5,
            0x06, 0xa8, 0x01, 0x03, 0x80, 0x8a, 0xfb, 0x0d, 0xb2, 0xfd, 0x4a, 0xbf, 0xf6, 0xaf,
            0x41, 0x49, 0xf5, 0x1b,
        ];
        let msg = b"Cryptographic Forum Research Group";
        for n in 0..=msg.len() {
            assert_eq!(
                ours(&key, &msg[..n]),
                crate_tag(&key, &msg[..n]),
                "{n} bytes"
            );
        }
    }

    /// Keys and messages from a fixed generator, every length up to 300 bytes, plus the
    /// extremes: all-ones keys and messages drive the accumulator close to 2^130 - 5, where
    /// the carries and the final subtraction matter.
    #[test]
    fn matches_the_crate() {
        let mut x = 0x243f_6a88_85a3_08d3u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for len in 0..300 {
            let key: [u8; 32] = core::array::from_fn(|_| next());
            let data: Vec<u8> = (0..len).map(|_| next()).collect();
            assert_eq!(ours(&key, &data), crate_tag(&key, &data), "len {len}");
        }
        for fill in [0x00u8, 0xff, 0xfe, 0x80] {
            for key_fill in [0x00u8, 0xff, 0x7f] {
                let key = [key_fill; 32];
                for len in [0, 1, 15, 16, 17, 64, 1000, 16 * 1024] {
                    let data = vec![fill; len];
                    assert_eq!(ours(&key, &data), crate_tag(&key, &data), "{fill:#x} {len}");
                }
            }
        }
    }

    /// The final reduction on both sides of the modulus, with values worked out by hand. With
    /// r = 1 and a zero pad, the tag is `h mod p` for h = (2^128 + m1) + (2^128 + m2): m1 all
    /// ones and m2 = 2^128 - 256 + `last` make h = 2^130 - 257 + last, which reaches
    /// p = 2^130 - 5 at last = 252.
    #[test]
    fn reduction_around_the_modulus() {
        let mut key = [0u8; 32];
        key[0] = 1;
        for last in 0u8..=255 {
            let mut data = [0xffu8; 32];
            data[16] = last;
            let want = if last >= 252 {
                u128::from(last - 252)
            } else {
                u128::MAX - 256 + u128::from(last)
            };
            assert_eq!(ours(&key, &data), want.to_le_bytes(), "{last}");
            assert_eq!(ours(&key, &data), crate_tag(&key, &data), "{last}");
        }
    }

    #[test]
    fn comparison_looks_at_every_byte() {
        let a = [7u8; 16];
        assert!(tags_equal(&a, &a));
        for i in 0..16 {
            let mut b = a;
            b[i] ^= 1;
            assert!(!tags_equal(&a, &b));
        }
    }
}
