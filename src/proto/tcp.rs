//! The AEAD TCP stream: a salt, then length-prefixed chunks, each part sealed on its own.
//!
//! ```text
//! +--------+--------------------------+-------------------------------+-----
//! | salt   | seal(len u16 BE) | tag16 | seal(payload, len bytes) | tag16 | ...
//! +--------+--------------------------+-------------------------------+-----
//! ```
//! `len` is 1..=0x3FFF (the two high bits are reserved and must be zero; a zero-length chunk is
//! invalid for libev). The nonce counter advances once for the length and once for the payload.
//!
//! Both halves work in place on buffers the caller owns: the encryptor seals a chunk laid out
//! with room for its header and tag, the decryptor opens chunks where they were received.

use super::cipher::{MasterKey, Method, Session, MAX_SALT_LEN, TAG_LEN};
use super::{take, Invalid, ParseError, SealError};
use core::ops::Range;

/// Largest payload of one chunk.
pub const MAX_PAYLOAD: usize = 0x3FFF;
/// Sealed length field: 2 bytes + tag.
pub const HEADER_LEN: usize = 2 + TAG_LEN;
/// Bytes a chunk adds to its payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// A full chunk on the wire.
pub const MAX_CHUNK: usize = OVERHEAD + MAX_PAYLOAD;

/// Sealing half of a stream.
pub struct Encryptor {
    /// `None` when `new` was given a salt shorter than the method's: every seal then fails
    /// rather than sealing under a salt nobody chose.
    session: Option<Session>,
    salt: [u8; MAX_SALT_LEN],
    salt_len: u8,
}

impl Encryptor {
    /// `salt` must be `method.salt_len()` fresh random bytes; the caller sends it first.
    pub fn new(method: Method, key: &MasterKey, salt: &[u8]) -> Encryptor {
        let salt_len = method.salt_len();
        let mut own = [0u8; MAX_SALT_LEN];
        let session = match (own.get_mut(..salt_len), salt.get(..salt_len)) {
            (Some(dst), Some(src)) => {
                dst.copy_from_slice(src);
                Some(Session::new(method, key, src))
            }
            _ => None,
        };
        Encryptor {
            session,
            salt: own,
            // At most MAX_SALT_LEN (32).
            salt_len: salt_len as u8,
        }
    }

    pub fn salt(&self) -> &[u8] {
        self.salt.get(..usize::from(self.salt_len)).unwrap_or(&[])
    }

    /// Seals one chunk in place. `frame` is `[HEADER_LEN spare][payload][TAG_LEN spare]` with a
    /// payload of 1..=MAX_PAYLOAD bytes; any other frame is left untouched and refused. On
    /// error the frame must not be sent: it is not (or not entirely) sealed.
    #[must_use = "an unsealed chunk must not be sent"]
    pub fn seal_chunk(&mut self, frame: &mut [u8]) -> Result<(), SealError> {
        let bad = SealError::FrameLength(frame.len());
        let session = self.session.as_mut().ok_or(SealError::ShortSalt)?;
        let (len_bytes, rest) = frame.split_first_chunk_mut::<2>().ok_or(bad)?;
        let (len_tag, rest) = rest.split_first_chunk_mut::<TAG_LEN>().ok_or(bad)?;
        let (payload, tag) = rest.split_last_chunk_mut::<TAG_LEN>().ok_or(bad)?;
        let len = u16::try_from(payload.len())
            .ok()
            .filter(|&n| n != 0 && usize::from(n) <= MAX_PAYLOAD)
            .ok_or(bad)?;
        *len_bytes = len.to_be_bytes();
        *len_tag = session.seal(len_bytes)?;
        *tag = session.seal(payload)?;
        Ok(())
    }
}

enum Expect {
    Salt,
    Length,
    Payload(u16),
    Failed,
}

/// Opening half of a stream: a state machine fed with whatever bytes have arrived.
pub struct Decryptor {
    method: Method,
    key: MasterKey,
    session: Option<Session>,
    expect: Expect,
    /// Kept for the server's replay filter.
    salt: [u8; MAX_SALT_LEN],
}

/// One step of decoding: `consumed` input bytes; plaintext (possibly empty) at `plain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub consumed: usize,
    pub plain: Range<usize>,
}

impl Decryptor {
    pub fn new(method: Method, key: &MasterKey) -> Decryptor {
        Decryptor {
            method,
            key: key.clone(),
            session: None,
            expect: Expect::Salt,
            salt: [0; MAX_SALT_LEN],
        }
    }

    /// The peer's salt, once received.
    pub fn salt(&self) -> Option<&[u8]> {
        self.session.as_ref()?;
        self.salt.get(..self.method.salt_len())
    }

    /// Decodes the next element (salt, length or payload) at the start of `buf`, in place.
    /// `NeedMore(n)`: wait for n more bytes. After `Invalid` the stream is dead for good.
    pub fn decode(&mut self, buf: &mut [u8]) -> Result<Step, ParseError> {
        let result = self.step(buf);
        if let Err(ParseError::Invalid(_)) = result {
            self.expect = Expect::Failed;
        }
        result
    }

    /// True between chunks: a clean place for the stream to end.
    pub fn at_boundary(&self) -> bool {
        matches!(self.expect, Expect::Length | Expect::Salt)
    }

    /// Bytes from the start of the element being waited for to the start of the next chunk's
    /// payload, so that a receive buffer can be placed for that payload to start aligned.
    pub fn payload_offset(&self) -> usize {
        match self.expect {
            // At most 32 + 18.
            Expect::Salt => self.method.salt_len().saturating_add(HEADER_LEN),
            Expect::Length | Expect::Failed => HEADER_LEN,
            Expect::Payload(_) => 0,
        }
    }

    /// Bytes the element being waited for needs in total, to size receive buffers.
    pub fn element_len(&self) -> usize {
        match self.expect {
            Expect::Salt => self.method.salt_len(),
            Expect::Length | Expect::Failed => HEADER_LEN,
            // At most 0x3FFF + 16.
            Expect::Payload(n) => usize::from(n).saturating_add(TAG_LEN),
        }
    }

    fn step(&mut self, buf: &mut [u8]) -> Result<Step, ParseError> {
        let need = self.element_len();
        let have = buf.len();
        match (&self.expect, &mut self.session) {
            (Expect::Failed, _) => Err(Invalid::BadTag.into()),
            (Expect::Salt, _) => {
                let salt = take(buf, 0, need)?;
                self.session = Some(Session::new(self.method, &self.key, salt));
                // need = salt_len <= MAX_SALT_LEN: the whole salt is kept.
                for (own, &b) in self.salt.iter_mut().zip(salt) {
                    *own = b;
                }
                self.expect = Expect::Length;
                Ok(Step {
                    consumed: need,
                    plain: 0..0,
                })
            }
            (Expect::Length, Some(session)) => {
                let more = ParseError::NeedMore(need.saturating_sub(have));
                let header = buf.get_mut(..need).ok_or(more)?;
                let (len, tag) = header.split_first_chunk_mut::<2>().ok_or(more)?;
                session.open(len, tag)?;
                let len = u16::from_be_bytes(*len);
                if len & !(MAX_PAYLOAD as u16) != 0 {
                    return Err(Invalid::ChunkLengthReserved(len).into());
                }
                if len == 0 {
                    return Err(Invalid::ZeroLengthChunk.into());
                }
                self.expect = Expect::Payload(len);
                Ok(Step {
                    consumed: need,
                    plain: 0..0,
                })
            }
            (&Expect::Payload(len), Some(session)) => {
                let more = ParseError::NeedMore(need.saturating_sub(have));
                let chunk = buf.get_mut(..need).ok_or(more)?;
                let (payload, tag) = chunk.split_last_chunk_mut::<TAG_LEN>().ok_or(more)?;
                session.open(payload, tag)?;
                self.expect = Expect::Length;
                Ok(Step {
                    consumed: need,
                    plain: 0..usize::from(len),
                })
            }
            // Length/Payload are only entered after the salt created the session.
            (_, None) => Err(Invalid::BadTag.into()),
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
    use crate::proto::cipher::METHODS;

    /// Seals `data` into a complete stream the way the relay lays chunks out.
    fn seal_stream(m: Method, key: &MasterKey, salt: &[u8], data: &[u8]) -> Vec<u8> {
        let mut enc = Encryptor::new(m, key, salt);
        let mut out = enc.salt().to_vec();
        for piece in data.chunks(MAX_PAYLOAD) {
            let mut frame = vec![0u8; piece.len() + OVERHEAD];
            frame[HEADER_LEN..HEADER_LEN + piece.len()].copy_from_slice(piece);
            enc.seal_chunk(&mut frame).unwrap();
            out.extend_from_slice(&frame);
        }
        out
    }

    /// Decodes a stream delivered `step` bytes at a time, as a relay would.
    fn open_stream(
        m: Method,
        key: &MasterKey,
        wire: &[u8],
        step: usize,
    ) -> Result<Vec<u8>, ParseError> {
        let mut dec = Decryptor::new(m, key);
        let mut pending: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                match dec.decode(&mut pending) {
                    Ok(s) => {
                        out.extend_from_slice(&pending[s.plain.clone()]);
                        pending.drain(..s.consumed);
                    }
                    Err(ParseError::NeedMore(_)) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        assert!(
            dec.at_boundary() && pending.is_empty(),
            "stream ended mid-chunk"
        );
        Ok(out)
    }

    #[test]
    fn roundtrip_every_method_and_split() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + 3) as u8).collect();
        for m in METHODS {
            let key = MasterKey::from_password(m, b"secret");
            let wire = seal_stream(m, &key, &[9u8; 32], &data);
            assert_eq!(wire.len(), m.salt_len() + data.len() + 3 * OVERHEAD);
            for step in [1, 17, 4096, wire.len()] {
                assert_eq!(open_stream(m, &key, &wire, step).unwrap(), data);
            }
        }
    }

    #[test]
    fn wrong_key_fails_on_first_length() {
        let m = Method::ChaCha20Poly1305;
        let wire = seal_stream(m, &MasterKey::from_password(m, b"a"), &[1; 32], b"hi");
        let other = MasterKey::from_password(m, b"b");
        assert_eq!(
            open_stream(m, &other, &wire, 64),
            Err(Invalid::BadTag.into())
        );
    }

    #[test]
    fn need_more_counts() {
        let m = Method::Aes128Gcm;
        let key = MasterKey::from_password(m, b"k");
        let mut dec = Decryptor::new(m, &key);
        assert_eq!(dec.decode(&mut [0u8; 10]), Err(ParseError::NeedMore(6)));
        assert_eq!(dec.decode(&mut [0u8; 16]).unwrap().consumed, 16);
        assert_eq!(dec.decode(&mut [0u8; 5]), Err(ParseError::NeedMore(13)));
    }

    #[test]
    fn reserved_bits_and_zero_length_rejected() {
        let m = Method::ChaCha20Poly1305;
        let key = MasterKey::from_password(m, b"k");
        for bad_len in [0x4000u16, 0] {
            let mut s = Session::new(m, &key, &[2; 32]);
            let mut wire = vec![2u8; 32];
            let mut len = bad_len.to_be_bytes();
            let tag = s.seal(&mut len).unwrap();
            wire.extend_from_slice(&len);
            wire.extend_from_slice(&tag);
            let err = open_stream(m, &key, &wire, 100).unwrap_err();
            assert!(matches!(
                err,
                ParseError::Invalid(Invalid::ChunkLengthReserved(_) | Invalid::ZeroLengthChunk)
            ));
        }
    }

    #[test]
    fn seal_chunk_refuses_bad_frames() {
        let m = Method::ChaCha20Poly1305;
        let mut enc = Encryptor::new(m, &MasterKey::from_password(m, b"k"), &[0; 32]);
        let empty = [7u8; OVERHEAD];
        let mut frame = empty;
        assert_eq!(
            enc.seal_chunk(&mut frame),
            Err(SealError::FrameLength(OVERHEAD))
        );
        assert_eq!(frame, empty, "a refused frame is left untouched");
        assert_eq!(
            enc.seal_chunk(&mut vec![0u8; MAX_CHUNK + 1]),
            Err(SealError::FrameLength(MAX_CHUNK + 1))
        );
        assert_eq!(
            enc.seal_chunk(&mut [0u8; 3]),
            Err(SealError::FrameLength(3))
        );
        assert_eq!(enc.seal_chunk(&mut vec![0u8; MAX_CHUNK]), Ok(()));
    }

    #[test]
    fn short_salt_never_seals() {
        let m = Method::Aes256Gcm;
        let mut enc = Encryptor::new(m, &MasterKey::from_password(m, b"k"), &[1; 31]);
        assert_eq!(
            enc.seal_chunk(&mut [0u8; OVERHEAD + 1]),
            Err(SealError::ShortSalt)
        );
    }
}
