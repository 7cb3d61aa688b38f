//! The Shadowsocks 2022 TCP stream: headers and length-prefixed chunks.
//!
//! ```text
//! request  = salt | seal(fixed) tag | seal(variable) tag | chunk | chunk | ...
//!   fixed    (11 B)  = type 0 | timestamp u64 BE | length of variable u16 BE
//!   variable         = ATYP address port | padding length u16 BE | padding | initial payload
//! response = salt | seal(fixed) tag | seal(first payload) tag | chunk | chunk | ...
//!   fixed (1+8+S+2)  = type 1 | timestamp u64 BE | request salt (S = 16/32) | length u16 BE
//! chunk    = seal(length u16 BE) tag | seal(payload, 1..=0xFFFF bytes) tag
//! ```
//! Each `seal` is one AEAD operation under the stream's subkey (see [`super`]), each advancing
//! the nonce. The request needs initial payload or non-zero padding ([`padding_for`]); its
//! header may not carry more than [`MAX_PADDING`] bytes of padding and no field may run past
//! the variable chunk. The response echoes the request's salt and carries no padding.
//!
//! Encoders seal into buffers the caller laid out; decoders open exact views in place and
//! return what they found or an [`Error`] by cause, checked in the order the spec asks:
//! tag, type, timestamp, then (server) the salt against the [`SaltPool`].

use super::salts::SaltPool;
use super::{check_time, Error, Method, Psk, Stream, MAX_KEY_LEN, MAX_PADDING, TAG_LEN};
use crate::proto::address::Address;
use crate::proto::{ParseError, SealError};
use core::ops::Range;

pub const TYPE_REQUEST: u8 = 0;
pub const TYPE_RESPONSE: u8 = 1;
/// Plaintext of the request's fixed header.
pub const REQUEST_FIXED_LEN: usize = 1 + 8 + 2;
/// Largest chunk payload (and variable header).
pub const MAX_PAYLOAD: usize = 0xFFFF;
/// A sealed length field.
pub const LENGTH_LEN: usize = 2 + TAG_LEN;
/// Bytes a chunk adds to its payload.
pub const OVERHEAD: usize = LENGTH_LEN + TAG_LEN;

/// Salt and sealed fixed header of a request: what the server reads first, in one read.
pub fn request_fixed_len(method: Method) -> usize {
    // At most 32 + 11 + 16.
    method
        .salt_len()
        .saturating_add(REQUEST_FIXED_LEN)
        .saturating_add(TAG_LEN)
}

/// Plaintext of the response's fixed header.
pub fn response_fixed_plain_len(method: Method) -> usize {
    // At most 1 + 8 + 32 + 2.
    method.salt_len().saturating_add(11)
}

/// Salt and sealed fixed header of a response: what the client reads first.
pub fn response_fixed_len(method: Method) -> usize {
    method
        .salt_len()
        .saturating_add(response_fixed_plain_len(method))
        .saturating_add(TAG_LEN)
}

/// The padding a request gets: none when it has initial payload, else `1..=900` bytes from
/// `random` (any u16; reduced here, so the caller need not know the range).
pub fn padding_for(payload_len: usize, random: &mut dyn FnMut() -> u16) -> u16 {
    if payload_len > 0 {
        return 0;
    }
    // random() % 900 < 900: the sum is at most 900.
    (random() % MAX_PADDING).saturating_add(1)
}

/// Plaintext length of a request's variable header, if it fits in one chunk.
fn variable_len(target: &Address, padding: u16, payload_len: usize) -> Option<usize> {
    let n = target
        .wire_len()
        .checked_add(2)?
        .checked_add(usize::from(padding))?
        .checked_add(payload_len)?;
    (n <= MAX_PAYLOAD).then_some(n)
}

/// Bytes [`seal_request`] writes: salt, both header chunks. `None` when the variable header
/// would exceed one chunk (then send less initial payload).
pub fn request_len(
    method: Method,
    target: &Address,
    padding: u16,
    payload_len: usize,
) -> Option<usize> {
    variable_len(target, padding, payload_len)?
        .checked_add(TAG_LEN)?
        .checked_add(request_fixed_len(method))
}

/// Writes a whole request header into the start of `out`: salt, sealed fixed header, sealed
/// variable header (target, `padding` zero bytes of padding, `payload`). Returns its length and
/// the stream's sealing state for the chunks that follow. `salt` must be `salt_len` fresh
/// random bytes, kept by the caller to check the response ([`open_response_fixed`]).
/// The spec wants all of it in one write.
pub fn seal_request(
    psk: &Psk,
    salt: &[u8],
    now: u64,
    target: &Address,
    padding: u16,
    payload: &[u8],
    out: &mut [u8],
) -> Result<(usize, Sealer), SealError> {
    let method = psk.method();
    if padding > MAX_PADDING || (padding == 0 && payload.is_empty()) {
        return Err(SealError::FrameLength(payload.len()));
    }
    let total = request_len(method, target, padding, payload.len()).ok_or(SealError::NoRoom)?;
    let out = out.get_mut(..total).ok_or(SealError::NoRoom)?;
    let (_, rest) = out
        .split_at_mut_checked(request_fixed_len(method))
        .ok_or(SealError::NoRoom)?;
    let (var, _) = rest
        .split_last_chunk_mut::<TAG_LEN>()
        .ok_or(SealError::NoRoom)?;
    let used = target.write_to(var).ok_or(SealError::NoRoom)?;
    let (_, rest) = var.split_at_mut_checked(used).ok_or(SealError::NoRoom)?;
    let (pad_len, rest) = rest.split_first_chunk_mut::<2>().ok_or(SealError::NoRoom)?;
    *pad_len = padding.to_be_bytes();
    let (pad, rest) = rest
        .split_at_mut_checked(usize::from(padding))
        .ok_or(SealError::NoRoom)?;
    pad.fill(0);
    // `out` is exactly `total` long, so `rest` is exactly the payload's room.
    rest.get_mut(..payload.len())
        .ok_or(SealError::NoRoom)?
        .copy_from_slice(payload);
    let sealer = seal_request_in_place(psk, salt, now, out)?;
    Ok((total, sealer))
}

/// [`seal_request`] over a frame the caller laid out: `[request_fixed_len spare][variable
/// header plaintext, 1..=0xFFFF bytes][TAG_LEN spare]`. The variable header's content (target,
/// padding rules) is the caller's to get right; the frame is the whole request header.
pub fn seal_request_in_place(
    psk: &Psk,
    salt: &[u8],
    now: u64,
    frame: &mut [u8],
) -> Result<Sealer, SealError> {
    let bad = SealError::FrameLength(frame.len());
    let salt = salt
        .get(..psk.method().salt_len())
        .ok_or(SealError::ShortSalt)?;
    let (salt_out, rest) = frame.split_at_mut_checked(salt.len()).ok_or(bad)?;
    salt_out.copy_from_slice(salt);
    let (fixed, rest) = rest
        .split_first_chunk_mut::<REQUEST_FIXED_LEN>()
        .ok_or(bad)?;
    let (fixed_tag, rest) = rest.split_first_chunk_mut::<TAG_LEN>().ok_or(bad)?;
    let (var, var_tag) = rest.split_last_chunk_mut::<TAG_LEN>().ok_or(bad)?;
    let var_len = u16::try_from(var.len())
        .ok()
        .filter(|&n| n != 0)
        .ok_or(bad)?;
    let mut stream = Stream::new(psk, salt);
    let [ty, ts @ .., l0, l1] = fixed;
    *ty = TYPE_REQUEST;
    *ts = now.to_be_bytes();
    [*l0, *l1] = var_len.to_be_bytes();
    *fixed_tag = stream.seal(fixed)?;
    *var_tag = stream.seal(var)?;
    Ok(Sealer(stream))
}

/// What the server learnt from a request's fixed header.
pub struct RequestFixed {
    /// The stream's opening state, for the variable header and the chunks after it.
    pub opener: Opener,
    /// Plaintext length of the variable header (read `variable_len + TAG_LEN` bytes next).
    pub variable_len: u16,
    pub timestamp: u64,
    salt: [u8; MAX_KEY_LEN],
    salt_len: usize,
}

impl RequestFixed {
    /// The request's salt, which the response must echo.
    pub fn salt(&self) -> &[u8] {
        self.salt.get(..self.salt_len).unwrap_or(&self.salt)
    }
}

/// Salt, body and tag views of a sealed element.
type Sealed<'a> = (&'a mut [u8], &'a mut [u8], &'a mut [u8; TAG_LEN]);

/// Splits a buffer into `salt`, `body` and `tag` views over its first `salt + body + 16` bytes.
fn split_sealed(buf: &mut [u8], salt: usize, body: usize) -> Result<Sealed<'_>, Error> {
    let need = salt.saturating_add(body).saturating_add(TAG_LEN);
    let have = buf.len();
    let buf = buf
        .get_mut(..need)
        .ok_or(Error::NeedMore(need.saturating_sub(have)))?;
    let (salt, rest) = buf
        .split_at_mut_checked(salt)
        .ok_or(Error::NeedMore(need))?;
    let (body, tag) = rest
        .split_last_chunk_mut::<TAG_LEN>()
        .ok_or(Error::NeedMore(need))?;
    Ok((salt, body, tag))
}

/// Opens a request's salt and fixed header, the first [`request_fixed_len`] bytes of `buf`, in
/// place; checks type and timestamp, then records the salt in `salts` (refusing a replay).
pub fn open_request_fixed(
    psk: &Psk,
    buf: &mut [u8],
    now: u64,
    salts: &mut SaltPool,
) -> Result<RequestFixed, Error> {
    let salt_len = psk.method().salt_len();
    let (salt, fixed, tag) = split_sealed(buf, salt_len, REQUEST_FIXED_LEN)?;
    let mut stream = Stream::new(psk, salt);
    stream.open(fixed, tag)?;
    let [ty, ts @ .., l0, l1] = *<&[u8; REQUEST_FIXED_LEN]>::try_from(&*fixed)
        .map_err(|_| Error::NeedMore(REQUEST_FIXED_LEN))?;
    if ty != TYPE_REQUEST {
        return Err(Error::BadType(ty));
    }
    let timestamp = u64::from_be_bytes(ts);
    check_time(timestamp, now)?;
    salts.insert(salt, now)?;
    let mut own = [0u8; MAX_KEY_LEN];
    own.get_mut(..salt_len)
        .ok_or(Error::ShortPacket)?
        .copy_from_slice(salt);
    Ok(RequestFixed {
        opener: Opener(stream),
        variable_len: u16::from_be_bytes([l0, l1]),
        timestamp,
        salt: own,
        salt_len,
    })
}

/// A request's variable header, opened.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub target: Address,
    pub padding: u16,
    /// Where the initial payload lies in the buffer given to [`open_request_variable`].
    pub payload: Range<usize>,
}

/// Opens the variable header, the first `fixed.variable_len + TAG_LEN` bytes of `buf`, in place.
pub fn open_request_variable(
    fixed: &mut RequestFixed,
    buf: &mut [u8],
) -> Result<RequestHeader, Error> {
    let len = usize::from(fixed.variable_len);
    let (_, var, tag) = split_sealed(buf, 0, len)?;
    fixed.opener.0.open(var, tag)?;
    let (target, used) = Address::parse(var).map_err(|e| match e {
        ParseError::NeedMore(_) => Error::HeaderOverrun,
        ParseError::Invalid(why) => Error::Address(why),
    })?;
    let rest = var.get(used..).ok_or(Error::HeaderOverrun)?;
    let (pad_len, rest) = rest.split_first_chunk::<2>().ok_or(Error::HeaderOverrun)?;
    let padding = u16::from_be_bytes(*pad_len);
    if padding > MAX_PADDING {
        return Err(Error::PaddingTooLong(padding));
    }
    let payload_len = rest
        .len()
        .checked_sub(usize::from(padding))
        .ok_or(Error::HeaderOverrun)?;
    if padding == 0 && payload_len == 0 {
        return Err(Error::NoPaddingNoPayload);
    }
    // Inside `var` (len <= 0xFFFF): no overflow.
    let start = len.saturating_sub(payload_len);
    Ok(RequestHeader {
        target,
        padding,
        payload: start..len,
    })
}

/// Seals a response header with its first payload in `frame`, laid out as
/// `[response_fixed_len spare][payload, 1..=0xFFFF bytes][TAG_LEN spare]`. Returns the stream's
/// sealing state for the chunks after it. `salt` is the response's own fresh salt.
pub fn seal_response(
    psk: &Psk,
    salt: &[u8],
    now: u64,
    request_salt: &[u8],
    frame: &mut [u8],
) -> Result<Sealer, SealError> {
    let method = psk.method();
    let salt_len = method.salt_len();
    let bad = SealError::FrameLength(frame.len());
    let salt = salt.get(..salt_len).ok_or(SealError::ShortSalt)?;
    let request_salt = request_salt.get(..salt_len).ok_or(SealError::ShortSalt)?;
    let (salt_out, rest) = frame.split_at_mut_checked(salt_len).ok_or(bad)?;
    salt_out.copy_from_slice(salt);
    let (fixed, rest) = rest
        .split_at_mut_checked(response_fixed_plain_len(method))
        .ok_or(bad)?;
    let (fixed_tag, rest) = rest.split_first_chunk_mut::<TAG_LEN>().ok_or(bad)?;
    let (payload, tag) = rest.split_last_chunk_mut::<TAG_LEN>().ok_or(bad)?;
    let len = u16::try_from(payload.len())
        .ok()
        .filter(|&n| n != 0)
        .ok_or(bad)?;
    let (ty, rest) = fixed.split_first_mut().ok_or(bad)?;
    *ty = TYPE_RESPONSE;
    let (ts, rest) = rest.split_first_chunk_mut::<8>().ok_or(bad)?;
    *ts = now.to_be_bytes();
    let (echo, len_out) = rest.split_last_chunk_mut::<2>().ok_or(bad)?;
    echo.get_mut(..salt_len)
        .ok_or(bad)?
        .copy_from_slice(request_salt);
    *len_out = len.to_be_bytes();
    let mut stream = Stream::new(psk, salt);
    *fixed_tag = stream.seal(fixed)?;
    *tag = stream.seal(payload)?;
    Ok(Sealer(stream))
}

/// What the client learnt from a response's fixed header.
pub struct ResponseFixed {
    pub opener: Opener,
    /// Plaintext length of the first payload chunk (read `first_len + TAG_LEN` bytes next and
    /// open them with [`Opener::open_payload`]).
    pub first_len: u16,
    pub timestamp: u64,
}

/// Opens a response's salt and fixed header, the first [`response_fixed_len`] bytes of `buf`;
/// checks type, timestamp and that it answers `request_salt`.
pub fn open_response_fixed(
    psk: &Psk,
    request_salt: &[u8],
    buf: &mut [u8],
    now: u64,
) -> Result<ResponseFixed, Error> {
    let method = psk.method();
    let (salt, fixed, tag) =
        split_sealed(buf, method.salt_len(), response_fixed_plain_len(method))?;
    let mut stream = Stream::new(psk, salt);
    stream.open(fixed, tag)?;
    let (&ty, rest) = fixed.split_first().ok_or(Error::ShortPacket)?;
    if ty != TYPE_RESPONSE {
        return Err(Error::BadType(ty));
    }
    let (ts, rest) = rest.split_first_chunk::<8>().ok_or(Error::ShortPacket)?;
    let timestamp = u64::from_be_bytes(*ts);
    check_time(timestamp, now)?;
    let (echo, len) = rest.split_last_chunk::<2>().ok_or(Error::ShortPacket)?;
    if request_salt.get(..method.salt_len()) != Some(echo) {
        return Err(Error::SaltMismatch);
    }
    Ok(ResponseFixed {
        opener: Opener(stream),
        first_len: u16::from_be_bytes(*len),
        timestamp,
    })
}

/// Sealing half of a stream after its header.
pub struct Sealer(Stream);

impl Sealer {
    /// Seals one chunk in place: `frame` is `[LENGTH_LEN spare][payload][TAG_LEN spare]` with a
    /// payload of 1..=[`MAX_PAYLOAD`] bytes; any other frame is refused untouched.
    #[must_use = "an unsealed chunk must not be sent"]
    pub fn seal_chunk(&mut self, frame: &mut [u8]) -> Result<(), SealError> {
        let bad = SealError::FrameLength(frame.len());
        let (len_bytes, rest) = frame.split_first_chunk_mut::<2>().ok_or(bad)?;
        let (len_tag, rest) = rest.split_first_chunk_mut::<TAG_LEN>().ok_or(bad)?;
        let (payload, tag) = rest.split_last_chunk_mut::<TAG_LEN>().ok_or(bad)?;
        let len = u16::try_from(payload.len())
            .ok()
            .filter(|&n| n != 0)
            .ok_or(bad)?;
        *len_bytes = len.to_be_bytes();
        *len_tag = self.0.seal(len_bytes)?;
        *tag = self.0.seal(payload)?;
        Ok(())
    }
}

/// Opening half of a stream after its fixed header.
pub struct Opener(Stream);

impl Opener {
    /// Opens a sealed length, the first [`LENGTH_LEN`] bytes of `buf`, in place; the payload
    /// that follows is `len + TAG_LEN` bytes. A zero length is accepted (an empty chunk).
    pub fn open_length(&mut self, buf: &mut [u8]) -> Result<u16, Error> {
        let (_, len, tag) = split_sealed(buf, 0, 2)?;
        self.0.open(len, tag)?;
        let len = <&[u8; 2]>::try_from(&*len).map_err(|_| Error::NeedMore(2))?;
        Ok(u16::from_be_bytes(*len))
    }

    /// Opens a payload of `len` bytes, the first `len + TAG_LEN` bytes of `buf`, in place; the
    /// plaintext is then `buf[..len]`.
    pub fn open_payload(&mut self, len: u16, buf: &mut [u8]) -> Result<(), Error> {
        let (_, payload, tag) = split_sealed(buf, 0, usize::from(len))?;
        self.0.open(payload, tag)
    }
}
