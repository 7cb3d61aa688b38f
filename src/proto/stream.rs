//! A TCP stream of either edition, as the relay drives it: AEAD-2017 ([`super::tcp`]) or
//! Shadowsocks 2022 ([`super::ss2022::stream`]), chosen by the method.
//!
//! ```text
//!                 first frame                                   later frames
//! AEAD-2017       salt | seal(len) tag | seal(payload) tag      seal(len) tag | seal(payload) tag
//! 2022 request    salt | seal(fixed) tag | seal(ADDRESS pad_len [pad] payload) tag      (same)
//! 2022 response   salt | seal(fixed, echoing the request salt) tag | seal(payload) tag  (same)
//! ```
//! Both sealing halves take frames laid out by the caller, `[first_len or HEADER_LEN spare]
//! [payload][TAG_LEN spare]`; both opening halves are fed received bytes in place and say how
//! long the element they wait for is.

use super::cipher::{MasterKey, Method};
use super::ss2022::stream::{StreamOpener, StreamSealer};
use super::ss2022::Psk;
use super::tcp::{Decryptor, Encryptor, Step, HEADER_LEN};
use super::{ParseError, SealError};
use std::rc::Rc;

/// The PSK of a 2022 method (the config checked its length).
fn psk(method: Method, key: &MasterKey) -> Option<Psk> {
    Psk::from_bytes(method.ss2022()?, key.as_bytes()).ok()
}

/// The sealing half of a stream.
pub enum Sealing {
    Aead(Encryptor),
    Ss2022(StreamSealer),
}

impl Sealing {
    /// A client's, under `salt` (fresh random bytes); `padding` is any random u16, used when
    /// a 2022 request has no data to carry. `None` only for a 2022 key of the wrong length.
    /// `identities` are a 2022 client's SIP023 identity keys (`iPSK:…:uPSK`; `key` is the
    /// user's).
    pub fn client(
        method: Method,
        key: &MasterKey,
        salt: &[u8],
        padding: u16,
        identities: Option<Rc<[Psk]>>,
    ) -> Option<Sealing> {
        Some(match method.ss2022() {
            None => Sealing::Aead(Encryptor::new(method, key, salt)),
            Some(_) => Sealing::Ss2022(StreamSealer::request(
                &psk(method, key)?,
                salt,
                padding,
                identities,
            )),
        })
    }

    /// A server's reply stream; for 2022 it answers the request opened by `dec`, under the
    /// key that opened it (a user's, on a multi-user server).
    pub fn server(method: Method, key: &MasterKey, salt: &[u8], dec: &Opening) -> Option<Sealing> {
        Some(match (method.ss2022(), dec) {
            (None, _) => Sealing::Aead(Encryptor::new(method, key, salt)),
            (Some(_), Opening::Ss2022(d)) => {
                Sealing::Ss2022(StreamSealer::response(d.psk(), salt, d.request_salt()))
            }
            (Some(_), Opening::Aead(_)) => return None,
        })
    }

    pub fn salt(&self) -> &[u8] {
        match self {
            Sealing::Aead(e) => e.salt(),
            Sealing::Ss2022(s) => s.salt(),
        }
    }

    /// Bytes in front of the first frame's payload: the salt and the first header.
    pub fn first_len(&self) -> usize {
        match self {
            // At most 32 + 18.
            Sealing::Aead(e) => e.salt().len().saturating_add(HEADER_LEN),
            Sealing::Ss2022(s) => s.first_len(),
        }
    }

    /// Bytes a client's first payload keeps between the target address and the data.
    pub fn first_gap(&self) -> usize {
        match self {
            Sealing::Aead(_) => 0,
            Sealing::Ss2022(s) => s.first_gap(),
        }
    }

    /// Completes a client's first payload (`prefix_len` bytes of address and gap, then
    /// `data_len` of data); returns its length.
    pub fn fill_gap(&self, payload: &mut [u8], prefix_len: usize, data_len: usize) -> usize {
        match self {
            Sealing::Aead(_) => prefix_len.saturating_add(data_len),
            Sealing::Ss2022(s) => s.fill_gap(payload, prefix_len, data_len),
        }
    }

    /// Seals the first frame, `[first_len spare][payload][TAG_LEN spare]`, salt included;
    /// `now` is unix seconds (2022 stamps its header).
    #[must_use = "an unsealed frame must not be sent"]
    pub fn seal_first(&mut self, frame: &mut [u8], now: u64) -> Result<(), SealError> {
        match self {
            Sealing::Aead(e) => {
                let salt_len = e.salt().len();
                let (salt, chunk) = frame
                    .split_at_mut_checked(salt_len)
                    .ok_or(SealError::FrameLength(0))?;
                salt.copy_from_slice(e.salt());
                e.seal_chunk(chunk)
            }
            Sealing::Ss2022(s) => s.seal_first(frame, now),
        }
    }

    /// Seals a later chunk, `[HEADER_LEN spare][payload][TAG_LEN spare]`.
    #[must_use = "an unsealed chunk must not be sent"]
    pub fn seal_chunk(&mut self, frame: &mut [u8]) -> Result<(), SealError> {
        match self {
            Sealing::Aead(e) => e.seal_chunk(frame),
            Sealing::Ss2022(s) => s.seal_chunk(frame),
        }
    }
}

/// The opening half of a stream.
pub enum Opening {
    Aead(Decryptor),
    Ss2022(StreamOpener),
}

impl Opening {
    /// A client's, for the replies to the stream `enc` seals.
    pub fn client(method: Method, key: &MasterKey, enc: &Sealing) -> Option<Opening> {
        Some(match method.ss2022() {
            None => Opening::Aead(Decryptor::new(method, key)),
            Some(_) => Opening::Ss2022(StreamOpener::response(&psk(method, key)?, enc.salt())),
        })
    }

    /// Decodes the next element (see [`Decryptor::decode`]).
    pub fn decode(&mut self, buf: &mut [u8]) -> Result<Step, ParseError> {
        match self {
            Opening::Aead(d) => d.decode(buf),
            Opening::Ss2022(d) => d.decode(buf),
        }
    }

    pub fn at_boundary(&self) -> bool {
        match self {
            Opening::Aead(d) => d.at_boundary(),
            Opening::Ss2022(d) => d.at_boundary(),
        }
    }

    pub fn payload_offset(&self) -> usize {
        match self {
            Opening::Aead(d) => d.payload_offset(),
            Opening::Ss2022(d) => d.payload_offset(),
        }
    }

    /// Bytes of the element awaited: up to a block's worth for AEAD-2017, up to 0xFFFF + 16
    /// for 2022.
    pub fn element_len(&self) -> usize {
        match self {
            Opening::Aead(d) => d.element_len(),
            Opening::Ss2022(d) => d.element_len(),
        }
    }

    /// True once the peer's first bytes authenticated (its salt, or its 2022 header).
    pub fn answered(&self) -> bool {
        match self {
            Opening::Aead(d) => d.salt().is_some(),
            Opening::Ss2022(d) => d.answered(),
        }
    }

    /// True while a timestamped header is awaited: pass the clock with [`Opening::set_clock`].
    pub fn needs_clock(&self) -> bool {
        matches!(self, Opening::Ss2022(d) if d.awaiting_head())
    }

    pub fn set_clock(&mut self, now: u64) {
        if let Opening::Ss2022(d) = self {
            d.set_clock(now);
        }
    }
}
