//! The five Shadowsocks AEADs (RustCrypto) behind a small, non-generic API.
//!
//! Why a crate of its own: RustCrypto is generic, so its hot loops are compiled wherever they
//! are instantiated, at that crate's opt-level. shadowsocks-smol is built for size
//! (opt-level "z"), which made ChaCha20-Poly1305 2.3x and AES-GCM 1.8x slower on MIPS than
//! at opt-level 3. Instantiating every AEAD here, behind `#[inline(never)]` functions, lets the
//! workspace build this crate (and the RustCrypto crates) at opt-level 3 while the rest of the
//! binary stays at "z": about 22 KiB for nearly opt-level 3's speed (measurements in the root
//! Cargo.toml).
//!
//! Only what Shadowsocks needs: a 16-byte detached tag, no associated data, nonces of the
//! algorithm's length supplied by the caller.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use alloc::boxed::Box;
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};

type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, U12>;

/// Length of every algorithm's tag.
pub const TAG_LEN: usize = 16;
/// Keys are passed in arrays of this size; an algorithm uses the first `key_len()` bytes, so a
/// key of the wrong length cannot be expressed.
pub const MAX_KEY_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    ChaCha20Poly1305,
    XChaCha20Poly1305,
    Aes128Gcm,
    Aes192Gcm,
    Aes256Gcm,
}

impl Algorithm {
    pub const fn key_len(self) -> usize {
        match self {
            Algorithm::Aes128Gcm => 16,
            Algorithm::Aes192Gcm => 24,
            Algorithm::ChaCha20Poly1305 | Algorithm::XChaCha20Poly1305 | Algorithm::Aes256Gcm => 32,
        }
    }

    pub const fn nonce_len(self) -> usize {
        match self {
            Algorithm::XChaCha20Poly1305 => 24,
            _ => 12,
        }
    }
}

/// What went wrong; deliberately no detail (which byte, which check) for an attacker to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A nonce of the wrong length for the algorithm, or a tag not `TAG_LEN` long.
    BadLength,
    /// The tag does not authenticate the data; the buffer's content is unspecified.
    BadTag,
}

/// A keyed AEAD. Boxed per variant: an AES-256-GCM key schedule is about 1 KiB and ChaCha's
/// 32 bytes, and async state machines copy whatever they hold by value, so a connection holds
/// a pointer and pays only for its own algorithm.
pub struct Aead(Keyed);

enum Keyed {
    ChaCha(Box<ChaCha20Poly1305>),
    XChaCha(Box<XChaCha20Poly1305>),
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

fn keyed<C: KeyInit>(alg: Algorithm, key: &[u8; MAX_KEY_LEN]) -> C {
    C::new(GenericArray::from_slice(&key[..alg.key_len()]))
}

fn seal_with<C: AeadInPlace>(c: &C, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
    // Only fails for inputs beyond 2^36 bytes.
    let t = c
        .encrypt_in_place_detached(GenericArray::from_slice(nonce), &[], buf)
        .map_err(|_| Error::BadLength)?;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&t);
    Ok(tag)
}

fn open_with<C: AeadInPlace>(c: &C, nonce: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), Error> {
    c.decrypt_in_place_detached(
        GenericArray::from_slice(nonce),
        &[],
        buf,
        GenericArray::from_slice(tag),
    )
    .map_err(|_| Error::BadTag)
}

/// `GenericArray::from_slice` panics on a length mismatch; check first so that no input can.
fn check(alg: Algorithm, nonce: &[u8], tag: Option<&[u8]>) -> Result<(), Error> {
    let tag_ok = tag.is_none_or(|t| t.len() == TAG_LEN);
    if tag_ok && nonce.len() == alg.nonce_len() {
        Ok(())
    } else {
        Err(Error::BadLength)
    }
}

impl Aead {
    /// Keys `alg` with the first `alg.key_len()` bytes of `key`.
    #[inline(never)]
    pub fn new(alg: Algorithm, key: &[u8; MAX_KEY_LEN]) -> Aead {
        Aead(match alg {
            Algorithm::ChaCha20Poly1305 => Keyed::ChaCha(Box::new(keyed(alg, key))),
            Algorithm::XChaCha20Poly1305 => Keyed::XChaCha(Box::new(keyed(alg, key))),
            Algorithm::Aes128Gcm => Keyed::Aes128(Box::new(keyed(alg, key))),
            Algorithm::Aes192Gcm => Keyed::Aes192(Box::new(keyed(alg, key))),
            Algorithm::Aes256Gcm => Keyed::Aes256(Box::new(keyed(alg, key))),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Keyed::ChaCha(_) => Algorithm::ChaCha20Poly1305,
            Keyed::XChaCha(_) => Algorithm::XChaCha20Poly1305,
            Keyed::Aes128(_) => Algorithm::Aes128Gcm,
            Keyed::Aes192(_) => Algorithm::Aes192Gcm,
            Keyed::Aes256(_) => Algorithm::Aes256Gcm,
        }
    }

    /// Encrypts `buf` in place and returns its tag.
    #[inline(never)]
    pub fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        check(self.algorithm(), nonce, None)?;
        match &self.0 {
            Keyed::ChaCha(c) => seal_with(&**c, nonce, buf),
            Keyed::XChaCha(c) => seal_with(&**c, nonce, buf),
            Keyed::Aes128(c) => seal_with(&**c, nonce, buf),
            Keyed::Aes192(c) => seal_with(&**c, nonce, buf),
            Keyed::Aes256(c) => seal_with(&**c, nonce, buf),
        }
    }

    /// Decrypts `buf` in place if `tag` authenticates it.
    #[inline(never)]
    pub fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), Error> {
        check(self.algorithm(), nonce, Some(tag))?;
        match &self.0 {
            Keyed::ChaCha(c) => open_with(&**c, nonce, buf, tag),
            Keyed::XChaCha(c) => open_with(&**c, nonce, buf, tag),
            Keyed::Aes128(c) => open_with(&**c, nonce, buf, tag),
            Keyed::Aes192(c) => open_with(&**c, nonce, buf, tag),
            Keyed::Aes256(c) => open_with(&**c, nonce, buf, tag),
        }
    }
}

/// A single seal or open with a key used once (Shadowsocks UDP: a fresh subkey per packet),
/// keyed on the stack: no allocation per packet.
pub enum Once<'a> {
    Seal(&'a mut [u8]),
    Open(&'a mut [u8], &'a [u8]),
}

/// Runs `op` with `alg` keyed by (the first `alg.key_len()` bytes of) `key` and `nonce`.
/// Returns the tag for a seal, zeroes for an open that authenticated.
#[inline(never)]
pub fn once(
    alg: Algorithm,
    key: &[u8; MAX_KEY_LEN],
    nonce: &[u8],
    op: Once,
) -> Result<[u8; TAG_LEN], Error> {
    fn run<C: AeadInPlace + KeyInit>(
        alg: Algorithm,
        key: &[u8; MAX_KEY_LEN],
        nonce: &[u8],
        op: Once,
    ) -> Result<[u8; TAG_LEN], Error> {
        let c: C = keyed(alg, key);
        match op {
            Once::Seal(buf) => seal_with(&c, nonce, buf),
            Once::Open(buf, tag) => open_with(&c, nonce, buf, tag).map(|()| [0; TAG_LEN]),
        }
    }
    let tag = match &op {
        Once::Seal(_) => None,
        Once::Open(_, tag) => Some(*tag),
    };
    check(alg, nonce, tag)?;
    match alg {
        Algorithm::ChaCha20Poly1305 => run::<ChaCha20Poly1305>(alg, key, nonce, op),
        Algorithm::XChaCha20Poly1305 => run::<XChaCha20Poly1305>(alg, key, nonce, op),
        Algorithm::Aes128Gcm => run::<Aes128Gcm>(alg, key, nonce, op),
        Algorithm::Aes192Gcm => run::<Aes192Gcm>(alg, key, nonce, op),
        Algorithm::Aes256Gcm => run::<Aes256Gcm>(alg, key, nonce, op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Algorithm; 5] = [
        Algorithm::ChaCha20Poly1305,
        Algorithm::XChaCha20Poly1305,
        Algorithm::Aes128Gcm,
        Algorithm::Aes192Gcm,
        Algorithm::Aes256Gcm,
    ];

    #[test]
    fn keyed_and_once_agree_and_round_trip() {
        for alg in ALL {
            let key = &[7u8; MAX_KEY_LEN];
            let nonce = [1u8; 24];
            let nonce = &nonce[..alg.nonce_len()];
            let aead = Aead::new(alg, key);
            assert_eq!(aead.algorithm(), alg);
            let mut a = *b"attack at dawn";
            let mut b = a;
            let tag = aead.seal(nonce, &mut a).unwrap();
            assert_eq!(once(alg, key, nonce, Once::Seal(&mut b)).unwrap(), tag);
            assert_eq!(a, b);
            assert_ne!(&a, b"attack at dawn");
            aead.open(nonce, &mut a, &tag).unwrap();
            assert_eq!(&a, b"attack at dawn");
            once(alg, key, nonce, Once::Open(&mut b, &tag)).unwrap();
            assert_eq!(&b, b"attack at dawn");
        }
    }

    #[test]
    fn forgeries_and_bad_lengths_are_errors_not_panics() {
        for alg in ALL {
            let key = [7u8; MAX_KEY_LEN];
            let nonce = [0u8; 24];
            let n = &nonce[..alg.nonce_len()];
            let aead = Aead::new(alg, &key);
            let mut buf = [0u8; 40];
            let mut tag = aead.seal(n, &mut buf).unwrap();
            tag[3] ^= 1;
            assert_eq!(aead.open(n, &mut buf, &tag), Err(Error::BadTag));
            assert_eq!(aead.open(n, &mut buf, &tag[..15]), Err(Error::BadLength));
            assert_eq!(aead.seal(&nonce[..5], &mut buf), Err(Error::BadLength));
            assert_eq!(
                once(alg, &key, &nonce[..7], Once::Seal(&mut buf)),
                Err(Error::BadLength)
            );
            assert_eq!(
                once(alg, &key, n, Once::Open(&mut buf, &tag[..1])),
                Err(Error::BadLength)
            );
        }
    }
}
