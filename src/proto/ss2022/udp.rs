//! Shadowsocks 2022 UDP packets: sessions with packet ids instead of a salt per packet.
//!
//! ```text
//! AES methods:
//!   packet = AES_PSK(separate header) 16 | seal_subkey(main header | payload) | tag 16
//!   separate header = session id (8) | packet id u64 BE            (one AES block, no IV)
//!   subkey = derive_key("shadowsocks 2022 session subkey", PSK || session id)
//!   nonce  = separate header (plaintext) bytes 4..16
//! ChaCha method:
//!   packet = nonce 24 (random) | XChaCha20-Poly1305_PSK(separate header | main header |
//!            payload) | tag 16
//! main header:
//!   client -> server: type 0 | timestamp u64 BE |                      padding length u16 BE |
//!                     padding | ATYP address port (the target)
//!   server -> client: type 1 | timestamp u64 BE | client session id 8 | padding length u16 BE |
//!                     padding | ATYP address port (where the payload came from)
//! ```
//! A client picks a random session id per local source and counts packet ids from 0; the
//! server answers under its own session id. Padding is optional here (no 900 cap; keep packets
//! under the path MTU). The receiver checks the packet id against the sender session's
//! [`PacketWindow`](super::window::PacketWindow) and records it only after [`open_body`] succeeded.
//!
//! Opening is two steps so that a server can find the session before paying for its subkey:
//! [`open_separate_header`] yields the session id (AES: one block decrypted; ChaCha: the whole
//! packet opened, since one AEAD covers it), then [`open_body`] with that session's
//! [`SessionCipher`] authenticates and parses the rest.

use super::identity::user_hash;
use super::{check_time, session_subkey, Error, Method, Psk, IDENTITY_LEN, TAG_LEN};
use crate::proto::address::Address;
use crate::proto::{ParseError, SealError};
use core::ops::Range;
use ss_aead::{Aead, AesBlock, Algorithm};

pub const TYPE_CLIENT: u8 = 0;
pub const TYPE_SERVER: u8 = 1;
/// The separate header: session id and packet id.
pub const SEPARATE_LEN: usize = 16;
/// The ChaCha method's random nonce.
pub const NONCE_LEN: usize = 24;

/// Which side sealed a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// The PSK's UDP state: AES key schedule for separate headers, or the XChaCha20-Poly1305 AEAD.
pub struct UdpCipher {
    psk: Psk,
    kind: Kind,
    /// A SIP023 client's identity keys: who encrypts the separate header, and the identity
    /// headers that follow it.
    identity: Option<Box<Identity>>,
}

/// See [`UdpCipher::with_identities`].
struct Identity {
    /// iPSK_0: encrypts the separate header.
    first: AesBlock,
    /// Each identity key's block and the hash of the key after it.
    chain: Vec<(AesBlock, [u8; IDENTITY_LEN])>,
}

enum Kind {
    Aes(AesBlock),
    ChaCha(Aead),
    /// AesBlock refused the key (it cannot: AES keys are 16 or 32 bytes); everything fails.
    Broken,
}

/// One session's body cipher (AES methods); nothing for ChaCha, whose AEAD is the PSK's.
pub struct SessionCipher(Option<Aead>);

impl UdpCipher {
    pub fn new(psk: &Psk) -> UdpCipher {
        let kind = match psk.method() {
            Method::ChaCha20Poly1305 => {
                Kind::ChaCha(Aead::new(Algorithm::XChaCha20Poly1305, psk.array()))
            }
            Method::Aes128Gcm | Method::Aes256Gcm => {
                AesBlock::new(psk.as_bytes()).map_or(Kind::Broken, Kind::Aes)
            }
        };
        UdpCipher {
            psk: psk.clone(),
            kind,
            identity: None,
        }
    }

    /// A SIP023 client's cipher: `user` keys the bodies (and opens the server's answers),
    /// `identities` (outermost first, not empty, AES keys of the same method) the separate
    /// header and the identity headers after it.
    pub fn with_identities(user: &Psk, identities: &[Psk]) -> UdpCipher {
        let mut cipher = UdpCipher::new(user);
        // A loop rather than `collect` into an `Option`: a copy of that adapter less.
        let mut chain = Some(Vec::with_capacity(identities.len()));
        for (i, id) in identities.iter().enumerate() {
            let next = identities.get(i.saturating_add(1)).unwrap_or(user);
            match (AesBlock::new(id.as_bytes()), chain.as_mut()) {
                (Some(block), Some(c)) => c.push((block, user_hash(next))),
                _ => chain = None,
            }
        }
        let first = identities
            .first()
            .and_then(|id| AesBlock::new(id.as_bytes()));
        cipher.identity = match (first, chain) {
            (Some(first), Some(chain)) => Some(Box::new(Identity { first, chain })),
            // A ChaCha key or none: the config allows neither here.
            _ => None,
        };
        cipher
    }

    /// Identity header bytes this cipher's client packets carry.
    pub fn identity_len(&self) -> usize {
        self.identity
            .as_ref()
            .map_or(0, |i| IDENTITY_LEN.saturating_mul(i.chain.len()))
    }

    pub fn method(&self) -> Method {
        self.psk.method()
    }

    /// The body cipher of session `session_id` (derives its subkey; callers keep it per session).
    pub fn session(&self, session_id: u64) -> SessionCipher {
        match self.kind {
            Kind::ChaCha(_) => SessionCipher(None),
            _ => SessionCipher(Some(Aead::new(
                self.psk.method().algorithm(),
                &session_subkey(&self.psk, &session_id.to_be_bytes()),
            ))),
        }
    }
}

/// What a packet's headers say, for sealing.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    pub session_id: u64,
    pub packet_id: u64,
    pub timestamp: u64,
    /// `None` for client packets; the client's session id for server packets.
    pub client_session_id: Option<u64>,
    pub padding: u16,
    pub target: &'a Address,
}

/// Bytes before the payload in the sealed packet (separate and main headers, ChaCha's nonce).
pub fn prefix_len(method: Method, h: &Header) -> usize {
    let lead = match method {
        Method::ChaCha20Poly1305 => NONCE_LEN + SEPARATE_LEN,
        Method::Aes128Gcm | Method::Aes256Gcm => SEPARATE_LEN,
    };
    let sid = if h.client_session_id.is_some() { 8 } else { 0 };
    // At most 40 + 19 + 65535 + 259: no overflow.
    lead.saturating_add(1 + 8 + 2)
        .saturating_add(sid)
        .saturating_add(usize::from(h.padding))
        .saturating_add(h.target.wire_len())
}

/// Seals a packet in place: `buf` is `[prefix_len spare][payload][TAG_LEN spare]`. `nonce`
/// (24 fresh random bytes) is used by the ChaCha method only. On error nothing may be sent.
#[must_use = "an unsealed packet must not be sent"]
pub fn seal_packet(
    cipher: &UdpCipher,
    session: &SessionCipher,
    h: &Header,
    nonce: &[u8; NONCE_LEN],
    buf: &mut [u8],
) -> Result<(), SealError> {
    // A client packet of an identity chain carries the identity headers after its separate
    // header, and iPSK_0 encrypts that header.
    let identity = match (&cipher.identity, h.client_session_id) {
        (Some(id), None) => Some(&**id),
        _ => None,
    };
    let eih_len = identity.map_or(0, |_| cipher.identity_len());
    let prefix = prefix_len(cipher.method(), h).saturating_add(eih_len);
    let (body, tag) = buf
        .split_last_chunk_mut::<TAG_LEN>()
        .ok_or(SealError::NoRoom)?;
    if body.len() < prefix {
        return Err(SealError::NoRoom);
    }
    let (lead, rest) = match cipher.kind {
        Kind::ChaCha(_) => body
            .split_at_mut_checked(NONCE_LEN)
            .ok_or(SealError::NoRoom)?,
        _ => body.split_at_mut_checked(0).ok_or(SealError::NoRoom)?,
    };
    lead.copy_from_slice(nonce.get(..lead.len()).ok_or(SealError::NoRoom)?);
    let (sep, rest) = rest
        .split_first_chunk_mut::<SEPARATE_LEN>()
        .ok_or(SealError::NoRoom)?;
    let (sid, pid) = sep.split_at_mut(8);
    sid.copy_from_slice(&h.session_id.to_be_bytes());
    pid.copy_from_slice(&h.packet_id.to_be_bytes());
    let (eihs, rest) = rest
        .split_at_mut_checked(eih_len)
        .ok_or(SealError::NoRoom)?;
    if let Some(id) = identity {
        for ((block, hash), out) in id.chain.iter().zip(eihs.chunks_exact_mut(IDENTITY_LEN)) {
            let mut eih = *hash;
            for (e, b) in eih.iter_mut().zip(sep.iter()) {
                *e ^= b;
            }
            block.encrypt(&mut eih);
            out.copy_from_slice(&eih);
        }
    }
    let (ty, rest) = rest.split_first_mut().ok_or(SealError::NoRoom)?;
    *ty = if h.client_session_id.is_some() {
        TYPE_SERVER
    } else {
        TYPE_CLIENT
    };
    let (ts, mut rest) = rest.split_first_chunk_mut::<8>().ok_or(SealError::NoRoom)?;
    *ts = h.timestamp.to_be_bytes();
    if let Some(client) = h.client_session_id {
        let (c, r) = rest.split_first_chunk_mut::<8>().ok_or(SealError::NoRoom)?;
        *c = client.to_be_bytes();
        rest = r;
    }
    let (pad_len, rest) = rest.split_first_chunk_mut::<2>().ok_or(SealError::NoRoom)?;
    *pad_len = h.padding.to_be_bytes();
    let (pad, rest) = rest
        .split_at_mut_checked(usize::from(h.padding))
        .ok_or(SealError::NoRoom)?;
    pad.fill(0);
    h.target.write_to(rest).ok_or(SealError::NoRoom)?;

    match &cipher.kind {
        Kind::ChaCha(aead) => {
            let sealed = body.get_mut(NONCE_LEN..).ok_or(SealError::NoRoom)?;
            *tag = aead.seal(nonce, sealed).map_err(|_| SealError::Cipher)?;
        }
        Kind::Aes(block) => {
            let aead = session.0.as_ref().ok_or(SealError::Cipher)?;
            let (sep, sealed) = body
                .split_first_chunk_mut::<SEPARATE_LEN>()
                .ok_or(SealError::NoRoom)?;
            let sealed = sealed.get_mut(eih_len..).ok_or(SealError::NoRoom)?;
            let nonce = sep.get(4..).ok_or(SealError::NoRoom)?;
            *tag = aead.seal(nonce, sealed).map_err(|_| SealError::Cipher)?;
            match identity {
                Some(id) => id.first.encrypt(sep),
                None => block.encrypt(sep),
            }
        }
        Kind::Broken => return Err(SealError::Cipher),
    }
    Ok(())
}

/// A packet's session and packet id, from [`open_separate_header`]; feed it to [`open_body`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeparateHeader {
    pub session_id: u64,
    pub packet_id: u64,
    /// The method that opened it. Private: only `open_separate_header` makes one, so
    /// `open_body` knows what state the packet is in.
    method: Method,
}

/// Smallest packet: leading parts and tag (the main header is checked when parsed).
fn min_len(method: Method) -> usize {
    match method {
        Method::ChaCha20Poly1305 => NONCE_LEN + SEPARATE_LEN + TAG_LEN,
        Method::Aes128Gcm | Method::Aes256Gcm => SEPARATE_LEN + TAG_LEN,
    }
}

/// Step one of opening `buf` (a whole datagram) in place. AES: decrypts the separate header
/// (unauthenticated until [`open_body`]); ChaCha: opens the whole packet.
pub fn open_separate_header(cipher: &UdpCipher, buf: &mut [u8]) -> Result<SeparateHeader, Error> {
    if buf.len() < min_len(cipher.method()) {
        return Err(Error::ShortPacket);
    }
    let sep: &[u8; SEPARATE_LEN] = match &cipher.kind {
        Kind::Aes(block) => {
            let sep = buf
                .first_chunk_mut::<SEPARATE_LEN>()
                .ok_or(Error::ShortPacket)?;
            block.decrypt(sep);
            sep
        }
        Kind::ChaCha(aead) => {
            let (nonce, rest) = buf
                .split_first_chunk_mut::<NONCE_LEN>()
                .ok_or(Error::ShortPacket)?;
            let (body, tag) = rest
                .split_last_chunk_mut::<TAG_LEN>()
                .ok_or(Error::ShortPacket)?;
            aead.open(nonce, body, tag).map_err(|_| Error::BadTag)?;
            body.first_chunk::<SEPARATE_LEN>()
                .ok_or(Error::ShortPacket)?
        }
        Kind::Broken => return Err(Error::BadTag),
    };
    let [s @ .., _, _, _, _, _, _, _, _] = *sep;
    let [_, _, _, _, _, _, _, _, p @ ..] = *sep;
    Ok(SeparateHeader {
        session_id: u64::from_be_bytes(s),
        packet_id: u64::from_be_bytes(p),
        method: cipher.method(),
    })
}

/// SIP023, on a multi-user server: the user hash that the identity header after a client
/// packet's separate header carries (under the server's key), after [`open_separate_header`].
/// The separate header (plaintext) is then moved up over the identity header, so that the
/// packet from `IDENTITY_LEN` on is as [`open_body`] takes it.
pub fn open_identity(cipher: &UdpCipher, buf: &mut [u8]) -> Result<[u8; IDENTITY_LEN], Error> {
    let Kind::Aes(block) = &cipher.kind else {
        return Err(Error::BadTag);
    };
    let (sep, rest) = buf
        .split_first_chunk_mut::<SEPARATE_LEN>()
        .ok_or(Error::ShortPacket)?;
    let eih = rest
        .first_chunk_mut::<IDENTITY_LEN>()
        .ok_or(Error::ShortPacket)?;
    block.decrypt(eih);
    let mut hash = *eih;
    for (h, s) in hash.iter_mut().zip(sep.iter()) {
        *h ^= s;
    }
    eih.copy_from_slice(sep);
    Ok(hash)
}

/// An opened packet.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet {
    pub session_id: u64,
    pub packet_id: u64,
    pub timestamp: u64,
    /// Server packets: the client session they answer.
    pub client_session_id: Option<u64>,
    pub padding: u16,
    /// Client packets: the target; server packets: where the payload came from.
    pub address: Address,
    /// Where the payload lies in `buf`.
    pub payload: Range<usize>,
}

/// Step two: authenticates (AES) and parses the rest of `buf` as a packet from `sender`, with
/// `session` the body cipher of `sep.session_id` (ignored by ChaCha). Checks type and
/// timestamp; the caller then checks `client_session_id` and the packet-id window.
pub fn open_body(
    cipher: &UdpCipher,
    session: &SessionCipher,
    sep: SeparateHeader,
    buf: &mut [u8],
    now: u64,
    sender: Sender,
) -> Result<Packet, Error> {
    if sep.method != cipher.method() {
        return Err(Error::BadTag);
    }
    let body_at = match &cipher.kind {
        Kind::Aes(_) => {
            let aead = session.0.as_ref().ok_or(Error::BadTag)?;
            let (sep_plain, rest) = buf
                .split_first_chunk_mut::<SEPARATE_LEN>()
                .ok_or(Error::ShortPacket)?;
            let (body, tag) = rest
                .split_last_chunk_mut::<TAG_LEN>()
                .ok_or(Error::ShortPacket)?;
            let nonce = sep_plain.get(4..).ok_or(Error::ShortPacket)?;
            aead.open(nonce, body, tag).map_err(|_| Error::BadTag)?;
            SEPARATE_LEN
        }
        Kind::ChaCha(_) => NONCE_LEN + SEPARATE_LEN,
        Kind::Broken => return Err(Error::BadTag),
    };
    let end = buf.len().saturating_sub(TAG_LEN);
    let body = buf.get(body_at..end).ok_or(Error::ShortPacket)?;
    let (&ty, rest) = body.split_first().ok_or(Error::ShortPacket)?;
    let want = match sender {
        Sender::Client => TYPE_CLIENT,
        Sender::Server => TYPE_SERVER,
    };
    if ty != want {
        return Err(Error::BadType(ty));
    }
    let (ts, mut rest) = rest.split_first_chunk::<8>().ok_or(Error::ShortPacket)?;
    let timestamp = u64::from_be_bytes(*ts);
    check_time(timestamp, now)?;
    let mut client_session_id = None;
    if sender == Sender::Server {
        let (c, r) = rest.split_first_chunk::<8>().ok_or(Error::ShortPacket)?;
        client_session_id = Some(u64::from_be_bytes(*c));
        rest = r;
    }
    let (pad_len, rest) = rest.split_first_chunk::<2>().ok_or(Error::ShortPacket)?;
    let padding = u16::from_be_bytes(*pad_len);
    let rest = rest
        .get(usize::from(padding)..)
        .ok_or(Error::HeaderOverrun)?;
    let (address, used) = Address::parse(rest).map_err(|e| match e {
        ParseError::NeedMore(_) => Error::HeaderOverrun,
        ParseError::Invalid(why) => Error::Address(why),
    })?;
    // The payload is what follows the address, up to the tag; all inside `buf`.
    let start = end.saturating_sub(rest.len().saturating_sub(used));
    Ok(Packet {
        session_id: sep.session_id,
        packet_id: sep.packet_id,
        timestamp,
        client_session_id,
        padding,
        address,
        payload: start..end,
    })
}
