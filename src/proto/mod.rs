//! Sans-IO protocol core: wire formats and cipher state machines over caller-owned byte
//! slices. Nothing here touches sockets, clocks or async, and nothing allocates on the data
//! path. Every parser distinguishes "need more bytes" from "this is invalid" and never panics.

pub mod address;
pub mod cipher;
pub mod handshake;
pub mod replay;
pub mod socks5;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod golden_tests;

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

/// `buf.get(range)` or "need more": the one way parsers read fixed-size fields.
pub(crate) fn take(buf: &[u8], at: usize, len: usize) -> Result<&[u8], ParseError> {
    let end = at.saturating_add(len);
    buf.get(at..end)
        .ok_or(ParseError::NeedMore(end.saturating_sub(buf.len())))
}
