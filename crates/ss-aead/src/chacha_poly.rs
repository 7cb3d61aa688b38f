//! ChaCha20-Poly1305 (RFC 8439 §2.8) and XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha §2),
//! composed here from a ChaCha20 keystream and the `poly1305` crate. No associated data:
//! Shadowsocks uses none.
//!
//! ```text
//! XChaCha20 only: key' = HChaCha20(key, nonce[0..16]), nonce' = 0^4 || nonce[16..24]
//! block 0 of the keystream      → first 32 bytes: the one-time Poly1305 key
//! blocks 1.. of the keystream   → XORed with the message
//! Poly1305 over: ciphertext, zero-padded to 16 bytes | le64(0) | le64(ciphertext length)
//! ```
//!
//! The keystream comes from the `chacha20` crate where it has SIMD backends (x86, x86_64,
//! aarch64), with the XOR done by [`crate::keystream`], and from [`crate::chacha_words`]
//! elsewhere (MIPS and other 32-bit router CPUs), which is about three times as fast there
//! under qemu-mipsel (that module says why). Likewise Poly1305: the `poly1305` crate where it
//! has SIMD backends, [`crate::poly_words`] elsewhere (a quarter fewer instructions on MIPS).
//! Short messages (every chunk's 2-byte length) take the word-wise pair on every target: see
//! [`SHORT_MESSAGE`].

use crate::chacha_words::{self, hchacha20};
use crate::keystream;
use crate::poly_words::{tags_equal, PolyWords};
use crate::{Error, TAG_LEN};
use chacha20::cipher::{KeyIvInit, StreamCipher};
use poly1305::universal_hash::{KeyInit, UniversalHash};
use poly1305::Poly1305;

/// Whether this target takes the keystream from [`chacha_words`] rather than the `chacha20`
/// crate, whose SIMD backends are faster where they exist.
const WORDWISE: bool = !cfg!(any(
    target_arch = "x86",
    target_arch = "x86_64",
    target_arch = "aarch64"
));

/// Messages up to this length take the word-wise path on every target: the SIMD backends cost
/// about a microsecond per message before the first byte (mostly the `poly1305` crate's AVX2
/// set-up, whose intrinsics are called as functions: it is compiled without AVX2), and every
/// Shadowsocks chunk starts with a 2-byte length message. In process on a Xeon: a 2-byte seal
/// 1,184 -> 353 ns, 100 bytes 1,574 -> 462 ns, 512 bytes 2,046 -> 1,639 ns (1 KiB: SIMD
/// 2,187 ns, word-wise slower); a 16 KiB chunk with its length message 1,340 -> 1,670 MB/s,
/// with the one-block fix of keystream::BATCH.
const SHORT_MESSAGE: usize = 512;

/// The key, and which of the two algorithms; the cipher is set up per message (RFC 8439).
pub struct ChaChaPoly {
    key: [u8; 32],
    extended: bool,
}

impl ChaChaPoly {
    /// ChaCha20-Poly1305, or XChaCha20-Poly1305 when `extended`.
    pub fn new(key: &[u8; 32], extended: bool) -> Self {
        ChaChaPoly {
            key: *key,
            extended,
        }
    }

    pub fn is_extended(&self) -> bool {
        self.extended
    }

    /// The ChaCha20 key and 12-byte nonce for `nonce` (XChaCha20: derived by HChaCha20).
    fn chacha_key(&self, nonce: &[u8]) -> Result<([u8; 32], [u8; 12]), Error> {
        let mut n = [0u8; 12];
        match (self.extended, nonce.len()) {
            (false, 12) => {
                n.copy_from_slice(nonce);
                Ok((self.key, n))
            }
            (true, 24) => {
                let mut input = [0u8; 16];
                input.copy_from_slice(&nonce[..16]);
                n[4..].copy_from_slice(&nonce[16..]);
                Ok((hchacha20(&self.key, &input), n))
            }
            _ => Err(Error::BadLength),
        }
    }

    pub fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        self.run(nonce, buf, None, WORDWISE)
    }

    /// Authenticates first and decrypts only a message that passed.
    pub fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        self.run(nonce, buf, Some(tag), WORDWISE).map(drop)
    }

    /// Seals `buf` (no `expected` tag) or opens it, with the keystream from [`chacha_words`]
    /// or from the `chacha20` crate. The two paths share nothing on the stack, so that the
    /// crate path's 1 KiB keystream buffer costs the word-wise targets nothing.
    #[inline(never)]
    fn run(
        &self,
        nonce: &[u8],
        buf: &mut [u8],
        expected: Option<&[u8; TAG_LEN]>,
        wordwise: bool,
    ) -> Result<[u8; TAG_LEN], Error> {
        let (key, nonce) = self.chacha_key(nonce)?;
        if wordwise || buf.len() <= SHORT_MESSAGE {
            let c = chacha_words::ChaCha20::new(&key, &nonce);
            let mut mac_key = [0u8; 32];
            c.block_bytes(0, &mut mac_key);
            let mac = PolyWords::new(&mac_key);
            return seal_or_open(mac, buf, expected, |buf| {
                c.xor(1, buf);
                Ok(())
            });
        }
        // Block 0 (the MAC key) is generated together with the message's first blocks, and in
        // whole `BATCH`es: alone, or ending inside a block, it would take the SIMD backends'
        // slow one-block path (see keystream::BATCH).
        let mut cipher = chacha20::ChaCha20::new(&key.into(), &nonce.into());
        let mut head = [0u8; keystream::STEP];
        let end = buf.len().saturating_add(64).min(keystream::STEP);
        cipher
            .try_write_keystream(&mut head[..end.next_multiple_of(keystream::BATCH)])
            .map_err(|_| Error::BadLength)?;
        let mut mac_key = [0u8; 32];
        mac_key.copy_from_slice(&head[..32]);
        let xor = |buf: &mut [u8]| {
            let (first, rest) = buf.split_at_mut(end - 64);
            keystream::xor(first, &head[64..end]);
            keystream::apply(&mut cipher, rest).map_err(|_| Error::BadLength)
        };
        seal_or_open(Poly1305::new(&mac_key.into()), buf, expected, xor)
    }
}

/// The two Poly1305 implementations as the AEAD uses them: over the ciphertext, zero-padded
/// to 16 bytes, then the lengths block.
trait Mac {
    fn absorb(&mut self, ciphertext: &[u8]);
    fn tag(self) -> [u8; TAG_LEN];
    /// Constant-time comparison with `expected`.
    fn verify(self, expected: &[u8; TAG_LEN]) -> bool;
}

/// The lengths block: le64(associated data length, 0) | le64(ciphertext length).
fn lengths(ciphertext: &[u8]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&(ciphertext.len() as u64).to_le_bytes());
    b
}

impl Mac for Poly1305 {
    fn absorb(&mut self, ciphertext: &[u8]) {
        self.update_padded(ciphertext);
        self.update(&[lengths(ciphertext).into()]);
    }
    fn tag(self) -> [u8; TAG_LEN] {
        self.finalize().into()
    }
    fn verify(self, expected: &[u8; TAG_LEN]) -> bool {
        // universal-hash's `verify` compares in constant time.
        UniversalHash::verify(self, &poly1305::Tag::from(*expected)).is_ok()
    }
}

impl Mac for PolyWords {
    fn absorb(&mut self, ciphertext: &[u8]) {
        self.update_padded(ciphertext);
        self.block(&lengths(ciphertext));
    }
    fn tag(self) -> [u8; TAG_LEN] {
        self.finalize()
    }
    fn verify(self, expected: &[u8; TAG_LEN]) -> bool {
        tags_equal(&self.finalize(), expected)
    }
}

/// Encrypts then MACs (`expected` = None, returns the tag), or checks the MAC and only then
/// decrypts.
fn seal_or_open(
    mut mac: impl Mac,
    buf: &mut [u8],
    expected: Option<&[u8; TAG_LEN]>,
    xor: impl FnOnce(&mut [u8]) -> Result<(), Error>,
) -> Result<[u8; TAG_LEN], Error> {
    match expected {
        None => {
            xor(buf)?;
            mac.absorb(buf);
            Ok(mac.tag())
        }
        Some(expected) => {
            mac.absorb(buf);
            if !mac.verify(expected) {
                return Err(Error::BadTag);
            }
            xor(buf)?;
            Ok([0; TAG_LEN])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both keystream sources give the same sealed bytes and open each other's output, for
    /// both algorithms and misaligned starts (the crate-level tests compare the target's own
    /// choice with the `chacha20poly1305` crate).
    #[test]
    fn wordwise_and_crate_keystreams_agree() {
        let mut backing = [0u32; 600];
        for extended in [false, true] {
            let c = ChaChaPoly::new(&[0x42; 32], extended);
            let nonce: [u8; 24] = core::array::from_fn(|i| i as u8 * 5);
            let nonce = &nonce[..if extended { 24 } else { 12 }];
            for (offset, len) in [
                (0, 0),
                (0, 1),
                (1, 63),
                (2, 64),
                (3, 65),
                (1, 960),
                (0, 961),
                (0, 2047),
                (2, 2049),
            ] {
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut backing);
                let buf = &mut bytes[offset..offset + len];
                buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
                let mut other = buf.to_vec();
                let tag = c.run(nonce, buf, None, true).unwrap();
                assert_eq!(c.run(nonce, &mut other, None, false).unwrap(), tag);
                assert_eq!(
                    buf,
                    &other[..],
                    "extended {extended} offset {offset} len {len}"
                );
                c.run(nonce, buf, Some(&tag), false).unwrap();
                c.run(nonce, &mut other, Some(&tag), true).unwrap();
                let mut forged = tag;
                forged[0] ^= 1;
                for wordwise in [false, true] {
                    let mut copy = buf.to_vec();
                    assert_eq!(
                        c.run(nonce, &mut copy, Some(&forged), wordwise),
                        Err(Error::BadTag)
                    );
                }
                assert_eq!(buf, &other[..]);
                assert!(buf.iter().enumerate().all(|(i, &b)| b == i as u8));
            }
        }
    }
}
