//! Sans-IO protocol core: wire formats and cipher state machines over caller-owned byte
//! slices. Nothing here touches sockets, clocks or async, and nothing allocates on the data
//! path. Every parser distinguishes "need more bytes" from "this is invalid" and never panics.
//!
//! # The no-panic contract
//!
//! Everything here reads bytes from the network, and a release build aborts the whole proxy on
//! a panic, so the compiler checks it: the lints below are denied for the whole module (and
//! for `dns::wire`), and CI's `clippy -D warnings` fails on any of them. No indexing or slicing
//! (`get`, `split_*_checked`, `first_chunk`, iterators instead), no `unwrap`/`expect`/`panic!`
//! and friends, and no arithmetic that could overflow: `checked_*` where an input bounds the
//! value, `saturating_*` only where the bound is proven next to it, `wrapping_*` only where
//! wrap-around is the meaning (the nonce counter). Test modules may opt out. A failure to seal
//! is a `SealError` the caller must handle: nothing is ever sent with a made-up tag.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::arithmetic_side_effects
)]

pub mod address;
pub mod cipher;
pub mod handshake;
pub mod replay;
pub mod socks5;
pub mod ss2022;
pub mod stream;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod golden_tests;

/// Hex text to bytes, for the known-answer tests.
#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

use core::fmt;

/// Why a parser could not produce a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The input is a valid prefix; at least this many more bytes are needed.
    NeedMore(usize),
    /// The input can never become valid.
    Invalid(Invalid),
}

/// What made an input invalid, by cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    AddressType(u8),
    EmptyDomain,
    DomainNotUtf8,
    SocksVersion(u8),
    SocksNoMethods,
    SocksReserved(u8),
    SocksFragment(u8),
    /// The two reserved high bits of an AEAD chunk length were set.
    ChunkLengthReserved(u16),
    ZeroLengthChunk,
    /// Authentication tag mismatch: wrong key, corrupted or forged data.
    BadTag,
    /// A packet shorter than salt + tag.
    ShortPacket,
    /// A Shadowsocks 2022 header of the other side's type.
    HeaderType(u8),
    /// A Shadowsocks 2022 header stamped more than 30 s from our clock.
    ClockSkew {
        timestamp: u64,
        now: u64,
    },
    /// A Shadowsocks 2022 response that answers another request.
    SaltMismatch,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Invalid::AddressType(t) => write!(f, "unknown address type {t:#04x}"),
            Invalid::EmptyDomain => f.write_str("empty domain name"),
            Invalid::DomainNotUtf8 => f.write_str("domain name is not valid UTF-8"),
            Invalid::SocksVersion(v) => write!(f, "not SOCKS5 (version byte {v:#04x})"),
            Invalid::SocksNoMethods => f.write_str("SOCKS5 greeting offers no methods"),
            Invalid::SocksReserved(r) => write!(f, "SOCKS5 reserved byte is {r:#04x}"),
            Invalid::SocksFragment(n) => write!(f, "fragmented SOCKS5 UDP datagram ({n})"),
            Invalid::ChunkLengthReserved(l) => {
                write!(f, "chunk length {l:#06x} sets reserved bits")
            }
            Invalid::ZeroLengthChunk => f.write_str("zero-length chunk"),
            Invalid::BadTag => {
                f.write_str("authentication failed (wrong password or corrupted data)")
            }
            Invalid::ShortPacket => f.write_str("packet too short"),
            Invalid::HeaderType(t) => write!(f, "Shadowsocks 2022 header of type {t}"),
            Invalid::ClockSkew { timestamp, now } => write!(
                f,
                "header timestamp is {} s {} our clock (clock skew? both ends need the time \
                 within 30 s: check NTP; or a replay)",
                timestamp.abs_diff(now),
                if timestamp > now {
                    "ahead of"
                } else {
                    "behind"
                }
            ),
            Invalid::SaltMismatch => f.write_str("response to another request (salt mismatch)"),
        }
    }
}

/// Why a chunk or packet could not be sealed. Always the caller's mistake or this crate's,
/// never the peer's; the buffer must then not be sent, since its tag would be missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// A TCP frame whose payload is empty or over `MAX_PAYLOAD` (the frame length is given).
    FrameLength(usize),
    /// A UDP packet buffer too short to hold salt and tag.
    NoRoom,
    /// A salt shorter than the method's.
    ShortSalt,
    /// The AEAD refused its inputs (a nonce not of the method's length).
    Cipher,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SealError::FrameLength(n) => write!(f, "cannot seal a frame of {n} bytes"),
            SealError::NoRoom => f.write_str("packet buffer has no room for salt and tag"),
            SealError::ShortSalt => f.write_str("salt shorter than the method's"),
            SealError::Cipher => f.write_str("cipher refused to seal"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NeedMore(n) => write!(f, "need {n} more bytes"),
            ParseError::Invalid(why) => why.fmt(f),
        }
    }
}

impl From<Invalid> for ParseError {
    fn from(why: Invalid) -> Self {
        ParseError::Invalid(why)
    }
}

/// `buf.get(range)` or "need more": the one way parsers read variable-size fields.
pub(crate) fn take(buf: &[u8], at: usize, len: usize) -> Result<&[u8], ParseError> {
    // Saturating: an end past usize::MAX is as unreachable as usize::MAX itself.
    let end = at.saturating_add(len);
    buf.get(at..end)
        .ok_or(ParseError::NeedMore(end.saturating_sub(buf.len())))
}

/// [`take`] for fixed-size fields, as an array to destructure.
pub(crate) fn take_array<const N: usize>(buf: &[u8], at: usize) -> Result<&[u8; N], ParseError> {
    take(buf, at, N).and_then(|b| b.first_chunk().ok_or(ParseError::NeedMore(N)))
}
