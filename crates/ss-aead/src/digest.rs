//! MD5 (RFC 1321) for EVP_BytesToKey and SHA-1 (FIPS 180-4) for HKDF-SHA1 (RFC 5869): the
//! key derivations of the AEAD-2017 methods. Both are Merkle–Damgård hashes over 64-byte
//! blocks, so they share the block buffer and the padding; only the compression function and
//! the byte order of words and length differ.
//!
//! ```text
//! message | 0x80 | 0x00 … | bit length (u64; little-endian for MD5, big-endian for SHA-1)
//!                           └ ends on a 64-byte boundary
//! ```
//!
//! MD5 runs once at start, so it is written with rolled loops (RustCrypto's unrolled rounds
//! cost 3.4 KB of the router binary). SHA-1's compression function is RustCrypto's: it runs a
//! dozen times per connection. The padding, HMAC and HKDF around it are these few lines instead
//! of the generic `digest`/`hmac`/`hkdf` stack. Neither hash is used for anything but deriving
//! keys as every Shadowsocks peer does.

/// A 64-byte block being filled, handed to `compress` whenever it is full.
struct Blocks<F> {
    block: [u8; 64],
    used: usize,
    compress: F,
}

impl<F: FnMut(&[u8; 64])> Blocks<F> {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some(room) = self.block.get_mut(self.used..) else {
                return;
            };
            let n = room.len().min(bytes.len());
            let (now, later) = bytes.split_at(n);
            for (slot, b) in room.iter_mut().zip(now) {
                *slot = *b;
            }
            bytes = later;
            // At most the room left: `used` stays within 64.
            self.used = self.used.saturating_add(n);
            if self.used >= 64 {
                (self.compress)(&self.block);
                self.used = 0;
            }
        }
    }
}

/// Feeds `parts`, in order, then the padding, to `compress` one block at a time.
fn digest(parts: &[&[u8]], big_endian_length: bool, compress: impl FnMut(&[u8; 64])) {
    let mut blocks = Blocks {
        block: [0; 64],
        used: 0,
        compress,
    };
    // The length is defined modulo 2^64 bits.
    let mut bits: u64 = 0;
    for part in parts {
        bits = bits.wrapping_add((part.len() as u64).wrapping_mul(8));
        blocks.feed(part);
    }
    blocks.feed(&[0x80]);
    while blocks.used != 56 {
        blocks.feed(&[0]);
    }
    blocks.feed(&if big_endian_length {
        bits.to_be_bytes()
    } else {
        bits.to_le_bytes()
    });
}

/// The 16 words of a block, in the given byte order.
fn words(block: &[u8; 64], big_endian: bool) -> [u32; 16] {
    let mut w = [0u32; 16];
    for (w, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        if let Ok(bytes) = <[u8; 4]>::try_from(bytes) {
            *w = if big_endian {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            };
        }
    }
    w
}

/// MD5's additive constants, floor(|sin(i + 1)| * 2^32).
const MD5_K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// MD5's rotations: four per round, repeated.
const MD5_S: [[u32; 4]; 4] = [
    [7, 12, 17, 22],
    [5, 9, 14, 20],
    [4, 11, 16, 23],
    [6, 10, 15, 21],
];

/// MD5 of the concatenation of `parts`. Step `i` of 64 is round `i >> 4`; word indices are
/// taken mod 16 with `& 15`.
pub fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
    digest(parts, false, |block| {
        let m = words(block, false);
        let [mut a, mut b, mut c, mut d] = h;
        for (i, k) in MD5_K.iter().enumerate() {
            let round = i >> 4;
            let (f, g) = match round {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), i.wrapping_mul(5).wrapping_add(1)),
                2 => (b ^ c ^ d, i.wrapping_mul(3).wrapping_add(5)),
                _ => (c ^ (b | !d), i.wrapping_mul(7)),
            };
            let word = m.get(g & 15).copied().unwrap_or(0);
            let shift = MD5_S
                .get(round)
                .and_then(|r| r.get(i & 3))
                .copied()
                .unwrap_or(0);
            let f = f.wrapping_add(a).wrapping_add(*k).wrapping_add(word);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(shift));
        }
        for (s, v) in h.iter_mut().zip([a, b, c, d]) {
            *s = s.wrapping_add(v);
        }
    });
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// SHA-1 of the concatenation of `parts`.
pub fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = SHA1_INIT;
    digest(parts, true, |block| sha1_compress(&mut h, block));
    let mut out = [0u8; 20];
    for (o, w) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

const SHA1_INIT: [u32; 5] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];

/// One SHA-1 block: RustCrypto's compression function (unrolled, or the CPU's SHA
/// instructions), the one part of SHA-1 where speed matters: subkeys are derived per connection.
fn sha1_compress(h: &mut [u32; 5], block: &[u8; 64]) {
    sha1::compress(h, &[(*block).into()]);
}

/// HMAC-SHA1 (RFC 2104) of the concatenation of `parts` (at most three: all HKDF needs).
fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let hashed;
    let key = if key.len() > 64 {
        hashed = sha1(&[key]);
        &hashed[..]
    } else {
        key
    };
    let mut k = [0u8; 64];
    for (k, b) in k.iter_mut().zip(key) {
        *k = *b;
    }
    let (ipad, opad) = (k.map(|b| b ^ 0x36), k.map(|b| b ^ 0x5c));
    let mut inner: [&[u8]; 4] = [&ipad, &[], &[], &[]];
    for (slot, part) in inner.iter_mut().skip(1).zip(parts) {
        *slot = part;
    }
    let inner = sha1(&inner);
    sha1(&[&opad, &inner])
}

/// HKDF-SHA1 (RFC 5869) of `ikm` with `salt` and `info`, filling `out` (at most 255 * 20
/// bytes; the rest of a longer `out` is left as it is).
pub fn hkdf_sha1(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let prk = hmac_sha1(salt, &[ikm]);
    let mut t: [u8; 20] = [0; 20];
    for (counter, chunk) in (1..=255u8).zip(out.chunks_mut(20)) {
        let prev: &[u8] = if counter == 1 { &[] } else { &t };
        t = hmac_sha1(&prk, &[prev, info, &[counter]]);
        for (o, b) in chunk.iter_mut().zip(t) {
            *o = b;
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use alloc::{format, string::String, vec::Vec};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc_1321_and_fips_180_vectors() {
        assert_eq!(hex(&md5(&[])), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(&md5(&[b"abc"])), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(&md5(&[
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            ])),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
        assert_eq!(hex(&sha1(&[])), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(&[b"abc"])),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&sha1(&[
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            ])),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn rfc_5869_sha1_case_4() {
        let ikm = [0x0b; 11];
        let salt: Vec<u8> = (0..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        hkdf_sha1(&salt, &ikm, &info, &mut okm);
        assert_eq!(
            hex(&okm),
            "085a01ea1b10f36933068b56efa5ad81a4f14b822f5b091568a9cdd4f155fda2c22e422478d305f3f896"
        );
    }

    /// Every length across block boundaries, split in parts, against the RustCrypto crates.
    #[test]
    fn agree_with_the_crates() {
        use hkdf::Hkdf;
        use md5::Digest;
        let data: Vec<u8> = (0..300u32).map(|i| (i * 131 % 251) as u8).collect();
        for len in 0..data.len() {
            let (a, b) = data[..len].split_at(len / 3);
            assert_eq!(
                md5(&[a, b]),
                <[u8; 16]>::from(md5::Md5::digest(&data[..len]))
            );
            assert_eq!(
                sha1(&[a, b]),
                <[u8; 20]>::from(sha1::Sha1::digest(&data[..len]))
            );
        }
        for key_len in [0, 16, 24, 32, 64, 65, 100] {
            for salt_len in [0, 16, 32, 80] {
                let (key, salt) = (&data[..key_len], &data[100..100 + salt_len]);
                let mut ours = [0u8; 64];
                let mut theirs = [0u8; 64];
                hkdf_sha1(salt, key, b"ss-subkey", &mut ours);
                Hkdf::<sha1::Sha1>::new(Some(salt), key)
                    .expand(b"ss-subkey", &mut theirs)
                    .unwrap();
                assert_eq!(ours, theirs, "key {key_len}, salt {salt_len}");
            }
        }
    }
}
