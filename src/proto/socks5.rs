//! SOCKS5 (RFC 1928) as ss-local speaks it: no authentication, CONNECT and UDP ASSOCIATE.
//!
//! ```text
//! greeting  +-----+----------+----------+      request  +-----+-----+-----+---------+
//!           | 05  | NMETHODS | METHODS  |               | 05  | CMD | 00  | ADDRESS |
//!           +-----+----------+----------+               +-----+-----+-----+---------+
//! reply     +-----+-----+-----+---------+      UDP      +-------+------+---------+------+
//!           | 05  | REP | 00  | ADDRESS |               | 00 00 | FRAG | ADDRESS | DATA |
//!           +-----+-----+-----+---------+               +-------+------+---------+------+
//! ```
//! ADDRESS is the Shadowsocks address form (see `address`).

use super::address::Address;
use super::{take, take_array, Invalid, ParseError};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

pub const VERSION: u8 = 0x05;
pub const METHOD_NO_AUTH: u8 = 0x00;
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xff;

/// Reply codes.
pub const REP_SUCCEEDED: u8 = 0x00;
pub const REP_GENERAL_FAILURE: u8 = 0x01;
pub const REP_NETWORK_UNREACHABLE: u8 = 0x03;
pub const REP_HOST_UNREACHABLE: u8 = 0x04;
pub const REP_CONNECTION_REFUSED: u8 = 0x05;
pub const REP_COMMAND_NOT_SUPPORTED: u8 = 0x07;
pub const REP_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

/// Longest reply: 3 bytes + an IPv6 address.
pub const MAX_REPLY_LEN: usize = 3 + 19;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Connect,
    Bind,
    UdpAssociate,
    Other(u8),
}

/// Parses the method-selection greeting; returns whether "no authentication" is offered.
pub fn parse_greeting(buf: &[u8]) -> Result<(bool, usize), ParseError> {
    let [version, n] = *take_array(buf, 0)?;
    if version != VERSION {
        return Err(Invalid::SocksVersion(version).into());
    }
    if n == 0 {
        return Err(Invalid::SocksNoMethods.into());
    }
    let methods = take(buf, 2, usize::from(n))?;
    Ok((
        methods.contains(&METHOD_NO_AUTH),
        usize::from(n).saturating_add(2),
    ))
}

/// A request whose command we parsed. The address may fail separately (see `parse_request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub address: Address,
}

/// Parses a request. An unknown address type is `Invalid::AddressType` (reply 08).
pub fn parse_request(buf: &[u8]) -> Result<(Request, usize), ParseError> {
    let [version, command, reserved] = *take_array(buf, 0)?;
    if version != VERSION {
        return Err(Invalid::SocksVersion(version).into());
    }
    let command = match command {
        0x01 => Command::Connect,
        0x02 => Command::Bind,
        0x03 => Command::UdpAssociate,
        other => Command::Other(other),
    };
    if reserved != 0 {
        return Err(Invalid::SocksReserved(reserved).into());
    }
    let rest = buf.get(3..).unwrap_or(&[]);
    let (address, used) = Address::parse(rest)?;
    // `used` <= MAX_LEN.
    Ok((Request { command, address }, used.saturating_add(3)))
}

/// Writes a reply with `code` and the bound address (0.0.0.0:0 if none); returns its length.
pub fn write_reply(code: u8, bound: Option<SocketAddr>, out: &mut [u8; MAX_REPLY_LEN]) -> usize {
    let bound = bound.unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
    let [version, rep, reserved, rest @ ..] = out;
    (*version, *rep, *reserved) = (VERSION, code, 0);
    // Cannot fail: an IP address needs at most 19 bytes and 19 remain.
    Address::Ip(bound)
        .write_to(rest)
        .unwrap_or(0)
        .saturating_add(3)
}

/// Parses the header of a SOCKS5 UDP datagram; returns the target and the header length.
/// Fragments (FRAG != 0) are refused: no peer implements reassembly.
pub fn parse_udp_header(buf: &[u8]) -> Result<(Address, usize), ParseError> {
    let [rsv0, rsv1, frag] = *take_array(buf, 0)?;
    if rsv0 != 0 || rsv1 != 0 {
        return Err(Invalid::SocksReserved(rsv0 | rsv1).into());
    }
    if frag != 0 {
        return Err(Invalid::SocksFragment(frag).into());
    }
    let (addr, used) = Address::parse(buf.get(3..).unwrap_or(&[]))?;
    Ok((addr, used.saturating_add(3)))
}

/// Length of the UDP header for `addr`.
pub fn udp_header_len(addr: &Address) -> usize {
    addr.wire_len().saturating_add(3)
}

/// Writes `00 00 00 ADDRESS` at the start of `out`; `None` if it does not fit.
pub fn write_udp_header(addr: &Address, out: &mut [u8]) -> Option<usize> {
    let head = out.get_mut(..3)?;
    head.copy_from_slice(&[0, 0, 0]);
    Some(addr.write_to(out.get_mut(3..)?)?.saturating_add(3))
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
    fn greeting() {
        assert_eq!(parse_greeting(&[5, 2, 2, 0]), Ok((true, 4)));
        assert_eq!(parse_greeting(&[5, 1, 2]), Ok((false, 3)));
        assert_eq!(parse_greeting(&[5, 3, 0]), Err(ParseError::NeedMore(2)));
        assert_eq!(parse_greeting(&[5]), Err(ParseError::NeedMore(1)));
        assert_eq!(
            parse_greeting(&[4, 1, 0]),
            Err(Invalid::SocksVersion(4).into())
        );
        assert_eq!(parse_greeting(&[5, 0]), Err(Invalid::SocksNoMethods.into()));
    }

    #[test]
    fn request_connect_domain() {
        let req = b"\x05\x01\x00\x03\x09localhost\x1f\x90extra";
        let (r, used) = parse_request(req).unwrap();
        assert_eq!(used, req.len() - 5);
        assert_eq!(r.command, Command::Connect);
        assert_eq!(
            r.address,
            Address::from_host_port("localhost:8080").unwrap()
        );
    }

    #[test]
    fn request_errors() {
        assert_eq!(parse_request(&[5, 1]), Err(ParseError::NeedMore(1)));
        assert_eq!(
            parse_request(&[5, 1, 0, 1, 127]),
            Err(ParseError::NeedMore(5))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 7]),
            Err(Invalid::AddressType(7).into())
        );
        assert_eq!(
            parse_request(&[5, 1, 1, 1]),
            Err(Invalid::SocksReserved(1).into())
        );
        let (r, _) = parse_request(&[5, 9, 0, 1, 1, 2, 3, 4, 0, 1]).unwrap();
        assert_eq!(r.command, Command::Other(9));
    }

    #[test]
    fn reply_bytes() {
        let mut out = [0u8; MAX_REPLY_LEN];
        let n = write_reply(REP_SUCCEEDED, None, &mut out);
        assert_eq!(&out[..n], &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let n = write_reply(
            REP_CONNECTION_REFUSED,
            Some("[::1]:1080".parse().unwrap()),
            &mut out,
        );
        assert_eq!(n, 22);
        assert_eq!(out[1], 5);
    }

    #[test]
    fn udp_header() {
        let addr = Address::Ip("198.51.100.1:53".parse().unwrap());
        let mut buf = [0u8; 32];
        let n = write_udp_header(&addr, &mut buf).unwrap();
        assert_eq!(n, udp_header_len(&addr));
        assert_eq!(parse_udp_header(&buf[..n + 3]), Ok((addr, n)));
        assert_eq!(
            parse_udp_header(&[0, 0, 1, 1]),
            Err(Invalid::SocksFragment(1).into())
        );
        assert_eq!(
            write_udp_header(&Address::Ip("[::1]:1".parse().unwrap()), &mut [0; 8]),
            None
        );
    }
}
