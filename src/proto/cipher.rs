//! The AEAD cipher table, master-key derivation and per-session cipher state.
//!
//! Master key: the user's base64 `key`, or EVP_BytesToKey(MD5, no salt, one round) of the
//! password. Session subkey: HKDF-SHA1(ikm = master key, salt = session salt,
//! info = "ss-subkey"). The nonce is a little-endian counter from zero, bumped after every seal
//! or open.

use super::{Invalid, SealError};
use core::fmt;
use ss_aead::digest;
use ss_aead::{Aead, Algorithm, Op};

pub const TAG_LEN: usize = ss_aead::TAG_LEN;
pub const MAX_KEY_LEN: usize = ss_aead::MAX_KEY_LEN;
pub const MAX_SALT_LEN: usize = 32;
pub const MAX_NONCE_LEN: usize = 24;

/// A supported AEAD method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Method {
    #[default]
    ChaCha20Poly1305,
    XChaCha20Poly1305,
    Aes128Gcm,
    Aes192Gcm,
    Aes256Gcm,
    /// Shadowsocks 2022 (`proto::ss2022`): the key is the PSK itself, and the stream, packets
    /// and subkeys are that edition's.
    Ss2022Aes128Gcm,
    Ss2022Aes256Gcm,
    Ss2022ChaCha20Poly1305,
}

/// The Shadowsocks 2022 methods.
pub const SS2022_METHODS: [Method; 3] = [
    Method::Ss2022Aes128Gcm,
    Method::Ss2022Aes256Gcm,
    Method::Ss2022ChaCha20Poly1305,
];

/// Every supported AEAD-2017 method, default first.
pub const METHODS: [Method; 5] = [
    Method::ChaCha20Poly1305,
    Method::Aes128Gcm,
    Method::Aes192Gcm,
    Method::Aes256Gcm,
    Method::XChaCha20Poly1305,
];

/// Unauthenticated stream ciphers that libev still accepts; we refuse them by name.
const STREAM_CIPHERS: [&str; 21] = [
    "table",
    "rc4",
    "rc4-md5",
    "rc4-md5-6",
    "aes-128-cfb",
    "aes-192-cfb",
    "aes-256-cfb",
    "aes-128-ctr",
    "aes-192-ctr",
    "aes-256-ctr",
    "bf-cfb",
    "camellia-128-cfb",
    "camellia-192-cfb",
    "camellia-256-cfb",
    "cast5-cfb",
    "des-cfb",
    "idea-cfb",
    "rc2-cfb",
    "seed-cfb",
    "salsa20",
    "chacha20",
];

/// Why a method name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MethodError {
    /// A known but insecure stream cipher.
    Stream(String),
    /// A Shadowsocks 2022 method we do not have (the reduced-round ChaCha ones).
    Ss2022(String),
    Unknown(String),
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MethodError::Stream(n) => write!(
                f,
                "method '{n}' is a stream cipher: unauthenticated and broken (recorded traffic can \
                 be decrypted), so it is not supported; use one of: "
            ),
            MethodError::Ss2022(n) => write!(
                f,
                "method '{n}' (Shadowsocks 2022) is not supported; use one of: "
            ),
            MethodError::Unknown(n) => write!(f, "unknown method '{n}'; supported: "),
        }?;
        for (i, m) in METHODS.iter().chain(&SS2022_METHODS).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(m.name())?;
        }
        Ok(())
    }
}

impl Method {
    pub fn from_name(name: &str) -> Result<Method, MethodError> {
        let lower = name.to_ascii_lowercase();
        if let Some(m) = METHODS
            .iter()
            .chain(&SS2022_METHODS)
            .find(|m| m.name() == lower)
        {
            return Ok(*m);
        }
        if STREAM_CIPHERS.contains(&lower.as_str()) || lower == "chacha20-ietf" {
            Err(MethodError::Stream(name.into()))
        } else if lower.starts_with("2022-") {
            Err(MethodError::Ss2022(name.into()))
        } else {
            Err(MethodError::Unknown(name.into()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::ChaCha20Poly1305 => "chacha20-ietf-poly1305",
            Method::XChaCha20Poly1305 => "xchacha20-ietf-poly1305",
            Method::Aes128Gcm => "aes-128-gcm",
            Method::Aes192Gcm => "aes-192-gcm",
            Method::Aes256Gcm => "aes-256-gcm",
            Method::Ss2022Aes128Gcm => "2022-blake3-aes-128-gcm",
            Method::Ss2022Aes256Gcm => "2022-blake3-aes-256-gcm",
            Method::Ss2022ChaCha20Poly1305 => "2022-blake3-chacha20-poly1305",
        }
    }

    /// The Shadowsocks 2022 method this is, if it is one.
    pub fn ss2022(self) -> Option<crate::proto::ss2022::Method> {
        use crate::proto::ss2022::Method as M;
        match self {
            Method::Ss2022Aes128Gcm => Some(M::Aes128Gcm),
            Method::Ss2022Aes256Gcm => Some(M::Aes256Gcm),
            Method::Ss2022ChaCha20Poly1305 => Some(M::ChaCha20Poly1305),
            _ => None,
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Method::ChaCha20Poly1305 => Algorithm::ChaCha20Poly1305,
            Method::XChaCha20Poly1305 => Algorithm::XChaCha20Poly1305,
            Method::Aes128Gcm => Algorithm::Aes128Gcm,
            Method::Aes192Gcm => Algorithm::Aes192Gcm,
            Method::Aes256Gcm | Method::Ss2022Aes256Gcm => Algorithm::Aes256Gcm,
            Method::Ss2022Aes128Gcm => Algorithm::Aes128Gcm,
            Method::Ss2022ChaCha20Poly1305 => Algorithm::ChaCha20Poly1305,
        }
    }

    pub fn key_len(self) -> usize {
        self.algorithm().key_len()
    }

    /// The salt is as long as the key for every AEAD method.
    pub fn salt_len(self) -> usize {
        self.key_len()
    }

    pub fn nonce_len(self) -> usize {
        self.algorithm().nonce_len()
    }
}

/// The master key: `key_len` bytes. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(heapless::Vec<u8, MAX_KEY_LEN>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// OpenSSL EVP_BytesToKey with MD5, no salt, one round, as every Shadowsocks peer does.
    pub fn from_password(method: Method, password: &[u8]) -> MasterKey {
        let len = method.key_len();
        let mut key = heapless::Vec::new();
        let mut prev: Option<[u8; 16]> = None;
        while key.len() < len {
            let d = match &prev {
                Some(p) => digest::md5(&[p, password]),
                None => digest::md5(&[password]),
            };
            for &b in d.iter().take(len.saturating_sub(key.len())) {
                // Cannot fail: key_len <= MAX_KEY_LEN; stopping keeps the loop finite anyway.
                if key.push(b).is_err() {
                    return MasterKey(key);
                }
            }
            prev = Some(d);
        }
        MasterKey(key)
    }

    /// A raw key of exactly `method.key_len()` bytes (already base64-decoded).
    pub fn from_bytes(method: Method, bytes: &[u8]) -> Option<MasterKey> {
        if bytes.len() != method.key_len() {
            return None;
        }
        heapless::Vec::from_slice(bytes).ok().map(MasterKey)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One direction of one session: the subkey's cipher and its nonce counter.
pub struct Session {
    aead: Aead,
    nonce: [u8; MAX_NONCE_LEN],
    nonce_len: usize,
}

/// HKDF-SHA1(master key, salt, "ss-subkey").
fn subkey(method: Method, key: &MasterKey, salt: &[u8]) -> [u8; MAX_KEY_LEN] {
    let mut subkey = [0u8; MAX_KEY_LEN];
    // Key lengths are at most MAX_KEY_LEN; HKDF's output is a prefix of any longer one.
    let out = subkey.get_mut(..method.key_len()).unwrap_or_default();
    digest::hkdf_sha1(salt, key.as_bytes(), b"ss-subkey", out);
    subkey
}

/// Seals or opens one UDP packet body: subkey from `salt`, nonce zero, cipher on the stack.
fn one_shot(
    method: Method,
    key: &MasterKey,
    salt: &[u8],
    op: Op,
) -> Result<[u8; TAG_LEN], ss_aead::Error> {
    let sub = subkey(method, key, salt);
    let zero = [0u8; MAX_NONCE_LEN];
    let nonce = zero
        .get(..method.nonce_len())
        .ok_or(ss_aead::Error::BadLength)?;
    ss_aead::once(method.algorithm(), &sub, nonce, op)
}

/// Seals a UDP packet body in place (subkey from `salt`, nonce zero); returns the tag.
pub fn seal_packet(
    method: Method,
    key: &MasterKey,
    salt: &[u8],
    body: &mut [u8],
) -> Result<[u8; TAG_LEN], SealError> {
    one_shot(method, key, salt, Op::Seal(body)).map_err(|_| SealError::Cipher)
}

/// Opens a UDP packet body in place if `tag` authenticates it.
pub fn open_packet(
    method: Method,
    key: &MasterKey,
    salt: &[u8],
    body: &mut [u8],
    tag: &[u8],
) -> Result<(), Invalid> {
    one_shot(method, key, salt, Op::Open(body, tag))
        .map(|_| ())
        .map_err(|_| Invalid::BadTag)
}

impl Session {
    /// Derives the subkey for `salt` (which must be `method.salt_len()` bytes).
    pub fn new(method: Method, key: &MasterKey, salt: &[u8]) -> Session {
        let sub = subkey(method, key, salt);
        Session {
            aead: Aead::new(method.algorithm(), &sub),
            nonce: [0; MAX_NONCE_LEN],
            nonce_len: method.nonce_len(),
        }
    }

    /// The nonce for the next seal or open. The length comes from the method, so the
    /// fallback (the whole array, which the AEAD would refuse) is never taken.
    fn nonce(&self) -> &[u8] {
        self.nonce.get(..self.nonce_len).unwrap_or(&self.nonce)
    }

    /// Encrypts `buf` in place and returns its tag; advances the nonce. Fails only if the AEAD
    /// refuses the nonce, which the method's own length rules out.
    pub fn seal(&mut self, buf: &mut [u8]) -> Result<[u8; TAG_LEN], SealError> {
        let tag = self
            .aead
            .seal(self.nonce(), buf)
            .map_err(|_| SealError::Cipher);
        self.bump();
        tag
    }

    /// Decrypts `buf` in place if `tag` authenticates it; advances the nonce either way.
    pub fn open(&mut self, buf: &mut [u8], tag: &[u8]) -> Result<(), Invalid> {
        let ok = self
            .aead
            .open(self.nonce(), buf, tag)
            .map_err(|_| Invalid::BadTag);
        self.bump();
        ok
    }

    /// Little-endian increment of the nonce counter; wrapping is the counter's carry.
    fn bump(&mut self) {
        for b in self.nonce.iter_mut().take(self.nonce_len) {
            *b = b.wrapping_add(1);
            if *b != 0 {
                break;
            }
        }
    }
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

    use crate::proto::hex;

    #[test]
    fn evp_bytes_to_key_matches_openssl() {
        // `openssl enc -aes-256-cbc -k foobar -nosalt -md md5 -P` prints this key.
        let k = MasterKey::from_password(Method::Aes256Gcm, b"foobar");
        assert_eq!(
            k.as_bytes(),
            &hex("3858f62230ac3c915f300c664312c63f568378529614d22ddb49237d2f60bfdf")[..]
        );
        let k = MasterKey::from_password(Method::Aes128Gcm, b"foobar");
        assert_eq!(k.as_bytes(), &hex("3858f62230ac3c915f300c664312c63f")[..]);
    }

    #[test]
    fn names_and_refusals() {
        assert_eq!(Method::from_name("AES-256-GCM"), Ok(Method::Aes256Gcm));
        assert!(matches!(
            Method::from_name("rc4-md5"),
            Err(MethodError::Stream(_))
        ));
        assert!(matches!(
            Method::from_name("chacha20-ietf"),
            Err(MethodError::Stream(_))
        ));
        assert_eq!(
            Method::from_name("2022-BLAKE3-aes-128-gcm"),
            Ok(Method::Ss2022Aes128Gcm)
        );
        assert!(matches!(
            Method::from_name("2022-blake3-chacha8-poly1305"),
            Err(MethodError::Ss2022(_))
        ));
        let msg = Method::from_name("nope").unwrap_err().to_string();
        assert!(msg.contains("xchacha20-ietf-poly1305"), "{msg}");
    }

    #[test]
    fn nonce_is_little_endian_counter() {
        let key = MasterKey::from_password(Method::ChaCha20Poly1305, b"k");
        let mut s = Session::new(Method::ChaCha20Poly1305, &key, &[0; 32]);
        for _ in 0..257 {
            s.bump();
        }
        assert_eq!(&s.nonce[..3], &[1, 1, 0]);
    }

    #[test]
    fn seal_open_every_method() {
        for m in METHODS {
            let key = MasterKey::from_password(m, b"pw");
            let salt = [7u8; 32];
            let mut tx = Session::new(m, &key, &salt[..m.salt_len()]);
            let mut rx = Session::new(m, &key, &salt[..m.salt_len()]);
            for round in 0..3u8 {
                let mut buf = [round; 40];
                let tag = tx.seal(&mut buf).unwrap();
                assert_ne!(buf, [round; 40]);
                rx.open(&mut buf, &tag).unwrap();
                assert_eq!(buf, [round; 40]);
            }
            let mut buf = [1u8; 8];
            let mut tag = tx.seal(&mut buf).unwrap();
            tag[0] ^= 1;
            assert_eq!(rx.open(&mut buf, &tag), Err(Invalid::BadTag));
        }
    }
}
