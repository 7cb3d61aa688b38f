//! ChaCha20-Poly1305 (RFC 8439 §2.8) and XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha §2),
//! composed from the `chacha20` and `poly1305` crates so that the keystream XOR is ours (see
//! [`crate::keystream`]). No associated data: Shadowsocks uses none.
//!
//! ```text
//! block 0 of the keystream      → first 32 bytes: the one-time Poly1305 key
//! blocks 1.. of the keystream   → XORed with the message
//! Poly1305 over: ciphertext, zero-padded to 16 bytes | le64(0) | le64(ciphertext length)
//! ```

use crate::keystream;
use crate::{Error, TAG_LEN};
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::{ChaCha20, XChaCha20};
use core::marker::PhantomData;
use poly1305::universal_hash::{KeyInit, UniversalHash};
use poly1305::Poly1305;

/// ChaCha20 with a 12-byte nonce, or XChaCha20 with a 24-byte one.
pub trait Variant: KeyIvInit + StreamCipher + StreamCipherSeek {}
impl Variant for ChaCha20 {}
impl Variant for XChaCha20 {}

/// The key; the cipher is set up per message, as in RFC 8439.
pub struct ChaChaPoly<C> {
    key: chacha20::Key,
    cipher: PhantomData<C>,
}

impl<C: Variant> ChaChaPoly<C> {
    pub fn new(key: &[u8; 32]) -> Self {
        ChaChaPoly {
            key: chacha20::Key::from(*key),
            cipher: PhantomData,
        }
    }

    /// The cipher positioned at block 1, and the Poly1305 instance keyed from block 0.
    fn start(&self, nonce: &[u8]) -> Result<(C, Poly1305), Error> {
        let mut cipher = C::new_from_slices(&self.key, nonce).map_err(|_| Error::BadLength)?;
        let mut mac_key = poly1305::Key::default();
        cipher
            .try_write_keystream(&mut mac_key)
            .map_err(|_| Error::BadLength)?;
        cipher.seek(64u64);
        Ok((cipher, Poly1305::new(&mac_key)))
    }

    pub fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        let (mut cipher, mac) = self.start(nonce)?;
        seal(&mut cipher, mac, buf)
    }

    /// Authenticates first and decrypts only a message that passed.
    pub fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        let (mut cipher, mac) = self.start(nonce)?;
        open(&mut cipher, mac, buf, tag)
    }
}

// The construction proper, shared by ChaCha20 and XChaCha20 (only the keystream differs), so
// it is compiled once.

#[inline(never)]
fn seal(
    cipher: &mut dyn StreamCipher,
    mut mac: Poly1305,
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], Error> {
    keystream::apply(cipher, buf).map_err(|_| Error::BadLength)?;
    mac.update_padded(buf);
    mac.update(&[lengths(buf.len())]);
    Ok(mac.finalize().into())
}

#[inline(never)]
fn open(
    cipher: &mut dyn StreamCipher,
    mut mac: Poly1305,
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Error> {
    mac.update_padded(buf);
    mac.update(&[lengths(buf.len())]);
    // Constant-time comparison (universal-hash's `verify`).
    mac.verify(&poly1305::Tag::from(*tag))
        .map_err(|_| Error::BadTag)?;
    keystream::apply(cipher, buf).map_err(|_| Error::BadLength)
}

/// The last Poly1305 block: little-endian lengths of the (empty) associated data and of the
/// ciphertext.
fn lengths(ciphertext_len: usize) -> poly1305::Block {
    let mut block = poly1305::Block::default();
    block[8..].copy_from_slice(&(ciphertext_len as u64).to_le_bytes());
    block
}
