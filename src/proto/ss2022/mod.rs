//! Shadowsocks 2022 (SIP022): methods, pre-shared keys, the session-subkey schedule and the
//! errors of its decoders. Sans-IO like the rest of `proto`: no clock (callers pass `now`, unix
//! seconds), no randomness (callers pass salts, nonces and padding lengths), no sockets.
//!
//! ```text
//! method                          PSK = salt   TCP AEAD            UDP
//! 2022-blake3-aes-128-gcm         16 bytes     AES-128-GCM         AES-128 header + AES-128-GCM
//! 2022-blake3-aes-256-gcm         32 bytes     AES-256-GCM         AES-256 header + AES-256-GCM
//! 2022-blake3-chacha20-poly1305   32 bytes     ChaCha20-Poly1305   XChaCha20-Poly1305(PSK)
//!
//! PSK            = base64 of exactly key-length random bytes (no password KDF)
//! session subkey = BLAKE3-derive_key("shadowsocks 2022 session subkey", PSK || salt)
//!                  TCP: salt = the stream's salt; UDP (AES): salt = the 8-byte session id
//! TCP nonce      = 12-byte little-endian counter from 0, +1 after every seal or open
//! ```
//!
//! [`tcp`] has the stream headers and chunks, [`stream`] the two halves of a stream as the
//! relay drives them, [`udp`] the packets, [`salts`] the server's
//! salt store and [`window`] the per-session packet-id filter.

pub mod handshake;
pub mod identity;
pub mod salts;
pub mod session;
pub mod stream;
pub mod tcp;
pub mod udp;
pub mod window;

#[cfg(test)]
mod tests;

use super::Invalid;
use base64::Engine;
use core::fmt;
use ss_aead::{Aead, Algorithm};

pub use ss_aead::TAG_LEN;

/// Longest PSK (and salt).
pub const MAX_KEY_LEN: usize = 32;
/// Identity keys a client may put before its user key (SIP023 chains through relays).
pub const MAX_IDENTITIES: usize = 4;
/// BLAKE3 context of the identity subkey (SIP023).
pub const IDENTITY_CONTEXT: &str = "shadowsocks 2022 identity subkey";
/// An identity header: one AES block.
pub const IDENTITY_LEN: usize = 16;
/// BLAKE3 context of the session subkey.
pub const SUBKEY_CONTEXT: &str = "shadowsocks 2022 session subkey";
/// Largest accepted difference between a header's timestamp and `now`, in seconds.
pub const MAX_TIME_DIFF: u64 = 30;
/// Largest padding a TCP request header may carry (MaxPaddingLength).
pub const MAX_PADDING: u16 = 900;

/// A Shadowsocks 2022 method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

/// Every method.
pub const METHODS: [Method; 3] = [
    Method::Aes128Gcm,
    Method::Aes256Gcm,
    Method::ChaCha20Poly1305,
];

impl Method {
    /// The method called `name` (case-insensitive), if it is one of [`METHODS`].
    pub fn from_name(name: &str) -> Option<Method> {
        METHODS
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Aes128Gcm => "2022-blake3-aes-128-gcm",
            Method::Aes256Gcm => "2022-blake3-aes-256-gcm",
            Method::ChaCha20Poly1305 => "2022-blake3-chacha20-poly1305",
        }
    }

    /// PSK bytes; also the TCP salt's length.
    pub fn key_len(self) -> usize {
        match self {
            Method::Aes128Gcm => 16,
            Method::Aes256Gcm | Method::ChaCha20Poly1305 => 32,
        }
    }

    pub fn salt_len(self) -> usize {
        self.key_len()
    }

    /// The TCP stream's AEAD (and the AES methods' UDP body AEAD).
    pub(crate) fn algorithm(self) -> Algorithm {
        match self {
            Method::Aes128Gcm => Algorithm::Aes128Gcm,
            Method::Aes256Gcm => Algorithm::Aes256Gcm,
            Method::ChaCha20Poly1305 => Algorithm::ChaCha20Poly1305,
        }
    }
}

/// Why a PSK was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    NotBase64,
    /// Decoded to `got` bytes where the method needs `want`.
    WrongLength {
        method: Method,
        got: usize,
        want: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotBase64 => f.write_str(
                "the key of a Shadowsocks 2022 method is base64 of random bytes, not a \
                 password; make one with `head -c 32 /dev/urandom | base64` (16 bytes for \
                 2022-blake3-aes-128-gcm)",
            ),
            KeyError::WrongLength { method, got, want } => write!(
                f,
                "the key decodes to {got} bytes but {} needs exactly {want}; make one with \
                 `head -c {want} /dev/urandom | base64`",
                method.name()
            ),
        }
    }
}

/// A method's pre-shared key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk {
    method: Method,
    /// The first `method.key_len()` bytes are the key; the rest are zero.
    key: [u8; MAX_KEY_LEN],
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk({}, ..)", self.method.name())
    }
}

impl Psk {
    /// Decodes a base64 PSK (surrounding whitespace ignored) for `method`.
    pub fn from_base64(method: Method, text: &str) -> Result<Psk, KeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::NotBase64)?;
        Psk::from_bytes(method, &bytes)
    }

    /// A raw key, which must be exactly `method.key_len()` bytes.
    pub fn from_bytes(method: Method, bytes: &[u8]) -> Result<Psk, KeyError> {
        let want = method.key_len();
        let mut key = [0u8; MAX_KEY_LEN];
        match key.get_mut(..want) {
            Some(dst) if bytes.len() == want => dst.copy_from_slice(bytes),
            _ => {
                return Err(KeyError::WrongLength {
                    method,
                    got: bytes.len(),
                    want,
                })
            }
        }
        Ok(Psk { method, key })
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.key.get(..self.method.key_len()).unwrap_or(&self.key)
    }

    /// The key in the array form the AEADs take (zero beyond the key).
    pub(crate) fn array(&self) -> &[u8; MAX_KEY_LEN] {
        &self.key
    }
}

/// `derive_key(SUBKEY_CONTEXT, PSK || salt)`; the first `key_len` bytes key the AEAD, and the
/// rest of the array is zeroed. `salt` longer than [`MAX_KEY_LEN`] is cut there (no caller
/// passes one: TCP salts are the key length, UDP session ids 8 bytes).
pub fn session_subkey(psk: &Psk, salt: &[u8]) -> [u8; MAX_KEY_LEN] {
    subkey(SUBKEY_CONTEXT, psk, salt)
}

/// `derive_key(context, PSK || salt)`, cut to the method's key length (zeros after it).
pub(crate) fn subkey(context: &str, psk: &Psk, salt: &[u8]) -> [u8; MAX_KEY_LEN] {
    let mut material = [0u8; 2 * MAX_KEY_LEN];
    let key = psk.as_bytes();
    let salt = salt.get(..MAX_KEY_LEN).unwrap_or(salt);
    // key.len() + salt.len() <= 64 = material.len().
    let used = key.len().saturating_add(salt.len());
    if let Some((k, s)) = material
        .get_mut(..used)
        .and_then(|m| m.split_at_mut_checked(key.len()))
    {
        k.copy_from_slice(key);
        s.copy_from_slice(salt);
    }
    let material = material.get(..used).unwrap_or(&[]);
    // Cannot fail: 64 bytes is far below BLAKE3's one-chunk limit of 1024.
    let full = ss_aead::blake3::derive_key(context, material).unwrap_or([0; 32]);
    let mut out = [0u8; MAX_KEY_LEN];
    for (o, b) in out.iter_mut().zip(full).take(psk.method.key_len()) {
        *o = b;
    }
    out
}

/// Why a Shadowsocks 2022 header, chunk or packet was refused, by cause. The causes are for
/// logs; a server must answer every one of them alike (see reference/protocol.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The buffer is a valid prefix; at least this many more bytes are needed.
    NeedMore(usize),
    /// Authentication failed: wrong key, corrupted or forged data.
    BadTag,
    /// A header of another type (a request where a response was expected, or vice versa).
    BadType(u8),
    /// The header's timestamp is more than [`MAX_TIME_DIFF`] seconds from `now`.
    ClockSkew { timestamp: u64, now: u64 },
    /// The salt was seen within the last minute.
    Replay,
    /// The salt store is full of unexpired salts (see [`salts::SaltPool`]).
    SaltPoolFull,
    /// A TCP request with more than [`MAX_PADDING`] bytes of padding.
    PaddingTooLong(u16),
    /// A TCP request header with neither padding nor initial payload.
    NoPaddingNoPayload,
    /// A field (address, padding) runs past the end of its header chunk or packet.
    HeaderOverrun,
    /// The address inside a header is invalid.
    Address(Invalid),
    /// A TCP response that does not echo this connection's request salt.
    SaltMismatch,
    /// A server packet addressed to another client session.
    SessionMismatch,
    /// A packet too short to hold its fixed parts.
    ShortPacket,
    /// A packet id already seen, or too old for the window.
    PacketId(u64),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NeedMore(n) => write!(f, "need {n} more bytes"),
            Error::BadTag => f.write_str("authentication failed (wrong key or corrupted data)"),
            Error::BadType(t) => write!(f, "unexpected header type {t}"),
            Error::ClockSkew { timestamp, now } => write!(
                f,
                "header timestamp {timestamp} is more than {MAX_TIME_DIFF} s from our clock \
                 ({now}): clock skew? (check NTP on both ends) or a replay"
            ),
            Error::Replay => f.write_str("replayed salt"),
            Error::SaltPoolFull => f.write_str("too many new sessions in the last minute"),
            Error::PaddingTooLong(n) => write!(f, "padding of {n} bytes (at most {MAX_PADDING})"),
            Error::NoPaddingNoPayload => f.write_str("request with neither padding nor payload"),
            Error::HeaderOverrun => f.write_str("header field runs past the end of its chunk"),
            Error::Address(why) => write!(f, "bad address in header: {why}"),
            Error::SaltMismatch => f.write_str("response to another request (salt mismatch)"),
            Error::SessionMismatch => f.write_str("packet for another client session"),
            Error::ShortPacket => f.write_str("packet too short"),
            Error::PacketId(id) => write!(f, "packet id {id} repeated or too old"),
        }
    }
}

/// Checks a header's timestamp against `now`.
pub(crate) fn check_time(timestamp: u64, now: u64) -> Result<(), Error> {
    if timestamp.abs_diff(now) > MAX_TIME_DIFF {
        return Err(Error::ClockSkew { timestamp, now });
    }
    Ok(())
}

/// One direction of a TCP stream: the subkey's AEAD and the 12-byte little-endian nonce.
pub struct Stream {
    aead: Aead,
    nonce: [u8; 12],
}

impl Stream {
    /// The stream keyed with the session subkey of `salt`.
    pub fn new(psk: &Psk, salt: &[u8]) -> Stream {
        Stream {
            aead: Aead::new(psk.method.algorithm(), &session_subkey(psk, salt)),
            nonce: [0; 12],
        }
    }

    /// Encrypts `buf` in place, returns its tag and advances the nonce.
    pub fn seal(&mut self, buf: &mut [u8]) -> Result<[u8; TAG_LEN], super::SealError> {
        let tag = self
            .aead
            .seal(&self.nonce, buf)
            .map_err(|_| super::SealError::Cipher);
        self.bump();
        tag
    }

    /// Decrypts `buf` in place if `tag` authenticates it; advances the nonce either way.
    pub fn open(&mut self, buf: &mut [u8], tag: &[u8]) -> Result<(), Error> {
        let ok = self
            .aead
            .open(&self.nonce, buf, tag)
            .map_err(|_| Error::BadTag);
        self.bump();
        ok
    }

    /// Little-endian increment; wrapping is the counter's carry.
    fn bump(&mut self) {
        for b in self.nonce.iter_mut() {
            *b = b.wrapping_add(1);
            if *b != 0 {
                break;
            }
        }
    }
}
