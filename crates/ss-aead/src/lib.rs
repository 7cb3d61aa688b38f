//! The five Shadowsocks AEADs behind a small, non-generic API.
//!
//! Why a crate of its own: RustCrypto is generic, so its hot loops are compiled wherever they
//! are instantiated, at that crate's opt-level. shadowsocks-smol is built for size
//! (opt-level "z"), which made ChaCha20-Poly1305 2.3x and AES-GCM 1.8x slower on MIPS than
//! at opt-level 3. Instantiating everything here, behind `#[inline(never)]` functions, lets the
//! workspace build this crate (and the RustCrypto crates) at opt-level 3 while the rest of the
//! binary stays at "z" (measurements in the root Cargo.toml).
//!
//! The AEAD constructions themselves ([`chacha_poly`], [`gcm`]) are composed here from
//! RustCrypto's primitives (ChaCha20, Poly1305, AES, CTR, GHASH) rather than taken from the
//! `chacha20poly1305` and `aes-gcm` crates, only to do the keystream XOR ourselves; why is in
//! [`keystream`]. The tests check them against those crates on random inputs.
//!
//! For Shadowsocks 2022 also AES as a bare block cipher ([`AesBlock`]) and one-chunk BLAKE3
//! ([`blake3`]).
//!
//! Only what Shadowsocks needs: a 16-byte detached tag, no associated data, nonces of the
//! algorithm's length supplied by the caller.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod blake3;
mod block;
mod chacha_poly;
mod chacha_words;
pub mod digest;
mod gcm;
mod keystream;
mod poly_words;

pub use block::AesBlock;

// Encryption-only key schedules: GCM never decrypts a block, and with AES instructions the
// full `Aes256` also keeps the decryption round keys (480 bytes against 240, per direction).
use aes::{Aes128Enc as Aes128, Aes192Enc as Aes192, Aes256Enc as Aes256};
use alloc::boxed::Box;
use chacha_poly::ChaChaPoly;
use gcm::Gcm;

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
    /// Both ChaCha variants: only the nonce handling differs.
    ChaCha(Box<ChaChaPoly>),
    Aes128(Box<Gcm<Aes128>>),
    Aes192(Box<Gcm<Aes192>>),
    Aes256(Box<Gcm<Aes256>>),
}

/// What both constructions offer; lets the dispatch below be written once.
trait Construction {
    fn new(alg: Algorithm, key: &[u8; MAX_KEY_LEN]) -> Self;
    fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error>;
    fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error>;
}

impl Construction for ChaChaPoly {
    fn new(alg: Algorithm, key: &[u8; MAX_KEY_LEN]) -> Self {
        ChaChaPoly::new(key, alg == Algorithm::XChaCha20Poly1305)
    }
    fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        ChaChaPoly::seal(self, nonce, buf)
    }
    fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        ChaChaPoly::open(self, nonce, buf, tag)
    }
}

impl<A: gcm::Aes> Construction for Gcm<A> {
    fn new(_: Algorithm, key: &[u8; MAX_KEY_LEN]) -> Self {
        Gcm::new(key)
    }
    fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        Gcm::seal(self, nonce, buf)
    }
    fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        Gcm::open(self, nonce, buf, tag)
    }
}

/// The operation, for code that is generic over the construction.
pub enum Op<'a> {
    Seal(&'a mut [u8]),
    Open(&'a mut [u8], &'a [u8]),
}

/// Runs `op`: the tag for a seal, zeroes for an open that authenticated. Lengths are checked
/// here so that no input reaches a primitive's length assertion.
fn run<C: Construction>(
    c: &C,
    alg: Algorithm,
    nonce: &[u8],
    op: Op,
) -> Result<[u8; TAG_LEN], Error> {
    if nonce.len() != alg.nonce_len() {
        return Err(Error::BadLength);
    }
    match op {
        Op::Seal(buf) => c.seal(nonce, buf),
        Op::Open(buf, tag) => {
            let tag = tag.try_into().map_err(|_| Error::BadLength)?;
            c.open(nonce, buf, tag).map(|()| [0; TAG_LEN])
        }
    }
}

impl Aead {
    /// Keys `alg` with the first `alg.key_len()` bytes of `key`.
    #[inline(never)]
    pub fn new(alg: Algorithm, key: &[u8; MAX_KEY_LEN]) -> Aead {
        Aead(match alg {
            Algorithm::ChaCha20Poly1305 | Algorithm::XChaCha20Poly1305 => {
                Keyed::ChaCha(Box::new(Construction::new(alg, key)))
            }
            Algorithm::Aes128Gcm => Keyed::Aes128(Box::new(Construction::new(alg, key))),
            Algorithm::Aes192Gcm => Keyed::Aes192(Box::new(Construction::new(alg, key))),
            Algorithm::Aes256Gcm => Keyed::Aes256(Box::new(Construction::new(alg, key))),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match &self.0 {
            Keyed::ChaCha(c) if c.is_extended() => Algorithm::XChaCha20Poly1305,
            Keyed::ChaCha(_) => Algorithm::ChaCha20Poly1305,
            Keyed::Aes128(_) => Algorithm::Aes128Gcm,
            Keyed::Aes192(_) => Algorithm::Aes192Gcm,
            Keyed::Aes256(_) => Algorithm::Aes256Gcm,
        }
    }

    /// Seals or opens in place; see [`Op`].
    #[inline(never)]
    pub fn apply(&self, nonce: &[u8], op: Op) -> Result<[u8; TAG_LEN], Error> {
        let alg = self.algorithm();
        match &self.0 {
            Keyed::ChaCha(c) => run(&**c, alg, nonce, op),
            Keyed::Aes128(c) => run(&**c, alg, nonce, op),
            Keyed::Aes192(c) => run(&**c, alg, nonce, op),
            Keyed::Aes256(c) => run(&**c, alg, nonce, op),
        }
    }

    /// Encrypts `buf` in place and returns its tag.
    pub fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        self.apply(nonce, Op::Seal(buf))
    }

    /// Decrypts `buf` in place if `tag` authenticates it.
    pub fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), Error> {
        self.apply(nonce, Op::Open(buf, tag)).map(drop)
    }
}

/// Runs `op` once with `alg` keyed by (the first `alg.key_len()` bytes of) `key`, the key
/// schedule on the stack: Shadowsocks UDP uses a fresh subkey per packet, and this keeps that
/// free of allocation.
#[inline(never)]
pub fn once(
    alg: Algorithm,
    key: &[u8; MAX_KEY_LEN],
    nonce: &[u8],
    op: Op,
) -> Result<[u8; TAG_LEN], Error> {
    fn keyed<C: Construction>(
        key: &[u8; MAX_KEY_LEN],
        alg: Algorithm,
        nonce: &[u8],
        op: Op,
    ) -> Result<[u8; TAG_LEN], Error> {
        run(&C::new(alg, key), alg, nonce, op)
    }
    match alg {
        Algorithm::ChaCha20Poly1305 | Algorithm::XChaCha20Poly1305 => {
            keyed::<ChaChaPoly>(key, alg, nonce, op)
        }
        Algorithm::Aes128Gcm => keyed::<Gcm<Aes128>>(key, alg, nonce, op),
        Algorithm::Aes192Gcm => keyed::<Gcm<Aes192>>(key, alg, nonce, op),
        Algorithm::Aes256Gcm => keyed::<Gcm<Aes256>>(key, alg, nonce, op),
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
            assert_eq!(once(alg, key, nonce, Op::Seal(&mut b)).unwrap(), tag);
            assert_eq!(a, b);
            assert_ne!(&a, b"attack at dawn");
            aead.open(nonce, &mut a, &tag).unwrap();
            assert_eq!(&a, b"attack at dawn");
            once(alg, key, nonce, Op::Open(&mut b, &tag)).unwrap();
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
                once(alg, &key, &nonce[..7], Op::Seal(&mut buf)),
                Err(Error::BadLength)
            );
            assert_eq!(
                once(alg, &key, n, Op::Open(&mut buf, &tag[..1])),
                Err(Error::BadLength)
            );
        }
    }

    /// What the RustCrypto AEAD crates make of the same input: (ciphertext, tag).
    fn reference(
        alg: Algorithm,
        key: &[u8; MAX_KEY_LEN],
        nonce: &[u8],
        msg: &[u8],
    ) -> ([u8; 20000], [u8; 16]) {
        use aes_gcm::aead::{AeadInOut, KeyInit};
        fn with<C: AeadInOut + KeyInit>(key: &[u8], nonce: &[u8], buf: &mut [u8]) -> [u8; 16] {
            let c = C::new_from_slice(key).unwrap();
            let tag = c
                .encrypt_inout_detached(nonce.try_into().unwrap(), &[], buf.into())
                .unwrap();
            tag.as_slice().try_into().unwrap()
        }
        let mut out = [0u8; 20000];
        let buf = &mut out[..msg.len()];
        buf.copy_from_slice(msg);
        let k = &key[..alg.key_len()];
        let tag = match alg {
            Algorithm::ChaCha20Poly1305 => {
                with::<chacha20poly1305::ChaCha20Poly1305>(k, nonce, buf)
            }
            Algorithm::XChaCha20Poly1305 => {
                with::<chacha20poly1305::XChaCha20Poly1305>(k, nonce, buf)
            }
            Algorithm::Aes128Gcm => with::<aes_gcm::Aes128Gcm>(k, nonce, buf),
            Algorithm::Aes192Gcm => {
                with::<aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>>(k, nonce, buf)
            }
            Algorithm::Aes256Gcm => with::<aes_gcm::Aes256Gcm>(k, nonce, buf),
        };
        (out, tag)
    }

    #[test]
    fn same_bytes_as_the_rustcrypto_aead_crates() {
        // xorshift64: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut lens: alloc::vec::Vec<usize> = (0..=300).collect();
        lens.extend([
            511, 512, 513, 959, 960, 961, 1000, 1023, 1024, 1025, 4096, 16383, 16384,
        ]);
        lens.extend([16385, 16417, 19999]);
        for alg in ALL {
            for &len in &lens {
                let key: [u8; MAX_KEY_LEN] = core::array::from_fn(|_| next() as u8);
                let nonce: [u8; 24] = core::array::from_fn(|_| next() as u8);
                let nonce = &nonce[..alg.nonce_len()];
                let mut msg = [0u8; 20000];
                msg[..len].iter_mut().for_each(|b| *b = next() as u8);
                let (want, want_tag) = reference(alg, &key, nonce, &msg[..len]);

                let aead = Aead::new(alg, &key);
                let mut buf = msg;
                let tag = aead.seal(nonce, &mut buf[..len]).unwrap();
                assert_eq!(
                    (&buf[..len], tag),
                    (&want[..len], want_tag),
                    "{alg:?} len {len}"
                );
                let mut once_buf = msg;
                let tag = once(alg, &key, nonce, Op::Seal(&mut once_buf[..len])).unwrap();
                assert_eq!((&once_buf[..len], tag), (&want[..len], want_tag));

                aead.open(nonce, &mut buf[..len], &want_tag).unwrap();
                assert_eq!(&buf[..len], &msg[..len]);
                if len > 0 {
                    let mut forged = want;
                    forged[(next() as usize) % len] ^= 0x80;
                    let got = aead.open(nonce, &mut forged[..len], &want_tag);
                    assert_eq!(got, Err(Error::BadTag), "{alg:?} len {len}");
                }
            }
        }
    }
}
