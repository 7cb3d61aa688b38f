//! Shadowsocks / SOCKS5 target addresses.
//!
//! ```text
//! +------+----------------------------+---------+
//! | ATYP | address                    | port BE |
//! +------+----------------------------+---------+
//! | 0x01 | 4 bytes IPv4               | 2       |
//! | 0x03 | 1 byte length n, n bytes   | 2       |
//! | 0x04 | 16 bytes IPv6              | 2       |
//! +------+----------------------------+---------+
//! ```

use super::{take, take_array, Invalid, ParseError};
use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const ATYP_IPV4: u8 = 0x01;
pub const ATYP_DOMAIN: u8 = 0x03;
pub const ATYP_IPV6: u8 = 0x04;

/// Longest encoded address: ATYP + len + 255 + port.
pub const MAX_LEN: usize = 1 + 1 + 255 + 2;

/// A target as the client named it. Domains stay unresolved (the server resolves them).
/// The name is stored inline so that parsing never allocates; holders that keep an address
/// for long box it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    Ip(SocketAddr),
    Domain(heapless::String<255>, u16),
}

impl Address {
    /// Parses an address at the start of `buf`; returns it and the bytes it used.
    pub fn parse(buf: &[u8]) -> Result<(Address, usize), ParseError> {
        let [atyp] = *take_array(buf, 0)?;
        match atyp {
            ATYP_IPV4 => {
                let [a, b, c, d, p0, p1] = *take_array(buf, 1)?;
                let ip = Ipv4Addr::new(a, b, c, d);
                let port = u16::from_be_bytes([p0, p1]);
                Ok((Address::Ip(SocketAddr::new(IpAddr::V4(ip), port)), 7))
            }
            ATYP_IPV6 => {
                let [octets @ .., p0, p1] = *take_array::<18>(buf, 1)?;
                let ip = IpAddr::V6(Ipv6Addr::from(octets));
                let port = u16::from_be_bytes([p0, p1]);
                Ok((Address::Ip(SocketAddr::new(ip, port)), 19))
            }
            ATYP_DOMAIN => {
                let [len] = *take_array(buf, 1)?;
                let len = usize::from(len);
                if len == 0 {
                    return Err(Invalid::EmptyDomain.into());
                }
                // Name and port in one read, so that NeedMore counts both. len <= 255: no
                // overflow in the sums below.
                let used = len.saturating_add(4);
                let field = take(buf, 2, len.saturating_add(2))?;
                let (name, &port) = field
                    .split_last_chunk::<2>()
                    .ok_or(ParseError::NeedMore(2))?;
                let name = core::str::from_utf8(name).map_err(|_| Invalid::DomainNotUtf8)?;
                let mut s = heapless::String::new();
                // Cannot fail: len <= 255 is the capacity.
                let _ = s.push_str(name);
                Ok((Address::Domain(s, u16::from_be_bytes(port)), used))
            }
            other => Err(Invalid::AddressType(other).into()),
        }
    }

    /// Bytes `write_to` will produce.
    pub fn wire_len(&self) -> usize {
        match self {
            Address::Ip(SocketAddr::V4(_)) => 7,
            Address::Ip(SocketAddr::V6(_)) => 19,
            // A heapless::String<255>: the sum is at most 259.
            Address::Domain(name, _) => name.len().saturating_add(4),
        }
    }

    /// Encodes into the start of `out`; returns the length, or `None` if `out` is too short.
    pub fn write_to(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.wire_len();
        let out = out.get_mut(..len)?;
        let (atyp, rest) = out.split_first_mut()?;
        let (port_out, port) = match self {
            Address::Ip(SocketAddr::V4(a)) => {
                *atyp = ATYP_IPV4;
                let (addr, port) = rest.split_first_chunk_mut::<4>()?;
                *addr = a.ip().octets();
                (port, a.port())
            }
            Address::Ip(SocketAddr::V6(a)) => {
                *atyp = ATYP_IPV6;
                let (addr, port) = rest.split_first_chunk_mut::<16>()?;
                *addr = a.ip().octets();
                (port, a.port())
            }
            Address::Domain(name, port) => {
                *atyp = ATYP_DOMAIN;
                let (name_len, rest) = rest.split_first_mut()?;
                // heapless::String<255>: the length fits.
                *name_len = u8::try_from(name.len()).ok()?;
                let (dst, rest) = rest.split_at_mut_checked(name.len())?;
                dst.copy_from_slice(name.as_bytes());
                (rest, *port)
            }
        };
        // `out` is exactly wire_len long, so two bytes remain for the port.
        *<&mut [u8; 2]>::try_from(port_out).ok()? = port.to_be_bytes();
        Some(len)
    }

    /// Encoded form in a small owned buffer.
    pub fn to_wire(&self) -> heapless::Vec<u8, MAX_LEN> {
        let mut v = heapless::Vec::new();
        // Cannot fail: MAX_LEN bounds every encoding.
        let _ = v.resize(self.wire_len(), 0);
        let _ = self.write_to(&mut v);
        v
    }

    /// Parses `host:port`, `[v6]:port` or `v6-literal:port` as written in configs (`-L`).
    pub fn from_host_port(s: &str) -> Option<Address> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Some(Address::Ip(sa));
        }
        let (host, port) = s.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Address::Ip(SocketAddr::new(ip, port)));
        }
        if host.is_empty() || host.len() > 255 {
            return None;
        }
        let mut name = heapless::String::new();
        name.push_str(host).ok()?;
        Some(Address::Domain(name, port))
    }

    pub fn port(&self) -> u16 {
        match self {
            Address::Ip(sa) => sa.port(),
            Address::Domain(_, port) => *port,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(sa) => sa.fmt(f),
            Address::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(sa: SocketAddr) -> Self {
        Address::Ip(sa)
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

    #[test]
    fn ipv4_roundtrip() {
        let a = Address::Ip("192.0.2.7:443".parse().unwrap());
        let wire = a.to_wire();
        assert_eq!(&wire[..], &[1, 192, 0, 2, 7, 0x01, 0xbb]);
        assert_eq!(Address::parse(&wire).unwrap(), (a, 7));
    }

    #[test]
    fn ipv6_roundtrip() {
        let a = Address::Ip("[2001:db8::1]:53".parse().unwrap());
        let wire = a.to_wire();
        assert_eq!(wire.len(), 19);
        assert_eq!(wire[0], ATYP_IPV6);
        assert_eq!(Address::parse(&wire).unwrap(), (a, 19));
    }

    #[test]
    fn domain_roundtrip_and_trailing_bytes() {
        let a = Address::from_host_port("example.com:80").unwrap();
        let mut wire = a.to_wire().to_vec();
        assert_eq!(&wire[..], b"\x03\x0bexample.com\x00\x50");
        wire.extend_from_slice(b"GET /");
        assert_eq!(Address::parse(&wire).unwrap(), (a, 15));
    }

    #[test]
    fn need_more_then_invalid() {
        assert_eq!(Address::parse(&[]), Err(ParseError::NeedMore(1)));
        assert_eq!(Address::parse(&[1, 1, 2]), Err(ParseError::NeedMore(4)));
        assert_eq!(Address::parse(&[3, 5, b'a']), Err(ParseError::NeedMore(6)));
        assert_eq!(
            Address::parse(&[3, 0, 0, 80]),
            Err(Invalid::EmptyDomain.into())
        );
        assert_eq!(Address::parse(&[9]), Err(Invalid::AddressType(9).into()));
        assert_eq!(
            Address::parse(&[3, 1, 0xff, 0, 80]),
            Err(Invalid::DomainNotUtf8.into())
        );
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            Address::from_host_port("[::1]:8053"),
            Some(Address::Ip("[::1]:8053".parse().unwrap()))
        );
        assert_eq!(Address::from_host_port("8.8.8.8:53").unwrap().port(), 53);
        assert_eq!(Address::from_host_port("nohost"), None);
        assert_eq!(Address::from_host_port(":53"), None);
        assert_eq!(Address::from_host_port("a:99999"), None);
    }
}
