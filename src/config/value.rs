//! Value rules shared by the command line and the JSON file: numbers with their ranges, host
//! names, `host:port` pairs, base64 keys and a redacting wrapper for secrets.
//!
//! Both sources check a value with the same rule, at the moment it is read, so the error can
//! name where it came from (`-p` or `"server_port" in FILE`). Messages here are fragments such as
//! `must be a port number (1-65535)`; the caller adds the name and, for files, the value.

use super::options::Rule;
use super::server_entry::{parse_ss_url, ServerEntry};
use super::Transport;
use core::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// A checked value of some option, from the command line, the file or a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    Bool(bool),
    Num(u64),
    Text(String),
    Secret(Secret),
    Hosts(Vec<HostPort>),
    Nameservers(Vec<SocketAddr>),
    Transport(Transport),
    Args(Vec<String>),
    /// Name and key of each Shadowsocks 2022 user.
    Users(Vec<(String, Secret)>),
    /// Servers with settings of their own (`servers`, `--server-url`).
    Entries(Vec<ServerEntry>),
}

/// Reads a command-line value or a default by `rule`. Errors are fragments (`must be …`).
/// `None` means "not set" (an empty `OptionalText`).
pub fn parse_text(rule: Rule, s: &str) -> Result<Option<Val>, String> {
    Ok(Some(match rule {
        Rule::Switch => Val::Bool(true),
        Rule::Port => Val::Num(u64::from(parse_port(s)?)),
        Rule::Host => Val::Text(check_host(s)?),
        Rule::Hosts => Val::Hosts(vec![parse_host_port(s)?]),
        Rule::Int(r) => Val::Num(r.parse(s)?),
        Rule::Secret => Val::Secret(Secret::new(parse_nonempty(s)?)),
        Rule::Text => Val::Text(parse_nonempty(s)?),
        Rule::OptionalText if s.is_empty() => return Ok(None),
        Rule::OptionalText => Val::Text(s.to_string()),
        Rule::Interface => Val::Text(parse_interface(s)?),
        Rule::Transport => Val::Transport(parse_transport(s)?),
        Rule::Nameservers => Val::Nameservers(parse_nameservers(s)?),
        Rule::Args => Val::Args(vec![s.to_string()]),
        Rule::Users | Rule::Entries => return Err("can only be given in the config file".into()),
        Rule::Links => Val::Entries(vec![parse_ss_url(s)?]),
    }))
}

/// libev falls back to tcp_only on a typo; we refuse, since a silently missing UDP relay is
/// much harder to diagnose than a start-up error.
pub fn parse_transport(s: &str) -> Result<Transport, String> {
    match s {
        "tcp_only" => Ok(Transport::TcpOnly),
        "tcp_and_udp" => Ok(Transport::TcpAndUdp),
        "udp_only" => Ok(Transport::UdpOnly),
        _ => Err("must be \"tcp_only\", \"tcp_and_udp\" or \"udp_only\"".into()),
    }
}

/// libev hands the text to c-ares, which takes a comma-separated list.
pub fn parse_nameservers(s: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.push(parse_nameserver(part)?);
    }
    if out.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(out)
}

/// An integer option: its range and how to describe it in an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntRule {
    pub what: &'static str,
    pub min: u64,
    pub max: u64,
    /// Zero is accepted outside `min..=max` and means "default/off" (mtu, nofile, fwmark).
    pub zero_ok: bool,
}

pub const PORT: IntRule = IntRule {
    what: "a port number (1-65535)",
    min: 1,
    max: 65535,
    zero_ok: false,
};
/// A year: later layers add the timeout to `Instant`s, and absurd values would overflow there.
pub const TIMEOUT: IntRule = IntRule {
    what: "a number of seconds (1-31536000)",
    min: 1,
    max: 31_536_000,
    zero_ok: false,
};
/// 68 is the smallest IPv4 MTU; smaller values could not carry a Shadowsocks UDP header.
pub const MTU: IntRule = IntRule {
    what: "an MTU (68-65535, or 0 for the default)",
    min: 68,
    max: 65535,
    zero_ok: true,
};
pub const NOFILE: IntRule = IntRule {
    what: "a file descriptor limit (0-4294967295)",
    min: 0,
    max: u32::MAX as u64,
    zero_ok: true,
};
pub const FWMARK: IntRule = IntRule {
    what: "a firewall mark (0-4294967295, decimal or 0x hex)",
    min: 0,
    max: u32::MAX as u64,
    zero_ok: true,
};
pub const MAX_CONNS: IntRule = IntRule {
    what: "a connection count (1-1048576)",
    min: 1,
    max: 1 << 20,
    zero_ok: false,
};
/// The pool is allocated up front; the cap (the pool's, smaller on 32-bit targets) keeps a typo
/// from failing the allocation. `what` is a literal per width; a test checks it names the cap.
pub const POOL_BLOCKS: IntRule = IntRule {
    what: if usize::BITS == 32 {
        "a buffer count (1-16328)"
    } else {
        "a buffer count (1-65536)"
    },
    min: 1,
    max: crate::policy::memory::MAX_BLOCKS as u64,
    zero_ok: false,
};
pub const UDP_ASSOCS: IntRule = IntRule {
    what: "an association count (1-1048576)",
    min: 1,
    max: 1 << 20,
    zero_ok: false,
};
/// ss-server's replay filter is allocated up front, about 7.2 bytes per salt of capacity; the
/// cap (about 30 MiB) keeps a typo from exhausting a router's RAM.
pub const REPLAY_CAPACITY: IntRule = IntRule {
    what: "a salt count (1-4194304)",
    min: 1,
    max: crate::proto::replay::MAX_CAPACITY as u64,
    zero_ok: false,
};
pub const BAN_FAILURES: IntRule = IntRule {
    what: "a failure count (1-1000000, or 0 to disable banning)",
    min: 1,
    max: 1_000_000,
    zero_ok: true,
};
/// Like `TIMEOUT`: a year at most, since the ban list adds these to `Instant`s.
pub const BAN_SECONDS: IntRule = IntRule {
    what: "a number of seconds (1-31536000)",
    min: 1,
    max: 31_536_000,
    zero_ok: false,
};

impl IntRule {
    /// Range check of an already parsed number.
    pub fn check(&self, n: u64) -> Result<u64, String> {
        if (self.zero_ok && n == 0) || (self.min..=self.max).contains(&n) {
            Ok(n)
        } else {
            Err(format!("must be {}", self.what))
        }
    }

    /// Parses decimal or `0x` hex (fwmarks are usually written in hex), surrounding spaces
    /// allowed because hand-written JSON strings often have them.
    pub fn parse(&self, s: &str) -> Result<u64, String> {
        let t = s.trim();
        let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => t.parse::<u64>(),
        };
        match parsed {
            Ok(n) => self.check(n),
            Err(_) => Err(format!("must be {}", self.what)),
        }
    }
}

/// `u16` from the port rule; `try_from` cannot fail after the range check.
pub fn parse_port(s: &str) -> Result<u16, String> {
    let n = PORT.parse(s)?;
    u16::try_from(n).map_err(|_| format!("must be {}", PORT.what))
}

pub fn parse_u32(rule: &IntRule, s: &str) -> Result<u32, String> {
    let n = rule.parse(s)?;
    u32::try_from(n).map_err(|_| format!("must be {}", rule.what))
}

pub fn parse_usize(rule: &IntRule, s: &str) -> Result<usize, String> {
    let n = rule.parse(s)?;
    usize::try_from(n).map_err(|_| format!("must be {}", rule.what))
}

/// A password or base64 key: never shown by `Debug`, so configs can be debug-printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A server entry as libev's `parse_addr` reads it: `host`, `host:port`, `[v6]:port`, or a
/// bare IPv6 literal (whose colons are not a port separator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

const HOST_PORT_WHAT: &str = "must be HOST, HOST:PORT or [IPv6]:PORT";

pub fn parse_host_port(s: &str) -> Result<HostPort, String> {
    let s = s.trim();
    if s.parse::<IpAddr>().is_ok() {
        return Ok(HostPort {
            host: s.to_string(),
            port: None,
        });
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{HOST_PORT_WHAT} (missing ']')"))?;
        if inside.parse::<Ipv6Addr>().is_err() && !is_scoped_v6(inside) {
            return Err(format!("{HOST_PORT_WHAT} (not an IPv6 address inside [])"));
        }
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (inside, Some(p)),
                None => return Err(HOST_PORT_WHAT.to_string()),
            },
        }
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            },
            // Several colons and not an IP literal: only a scoped IPv6 (fe80::1%eth0) is left.
            _ => (s, None),
        }
    };
    let host = check_host(host)?;
    let port = match port {
        Some(p) => Some(parse_port(p).map_err(|e| format!("port {e}"))?),
        None => None,
    };
    Ok(HostPort { host, port })
}

fn is_scoped_v6(s: &str) -> bool {
    match s.split_once('%') {
        Some((ip, scope)) => ip.parse::<Ipv6Addr>().is_ok() && !scope.is_empty(),
        None => false,
    }
}

/// A host name or IP literal without a port; brackets around IPv6 are removed. Names are not
/// resolved here (the server may not be resolvable yet at boot), only checked for shape.
pub fn check_host(s: &str) -> Result<String, String> {
    let s = s.trim();
    let s = match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => inner,
        None => s,
    };
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 255 {
        return Err("is longer than 255 bytes".into());
    }
    if s.contains(':') {
        if s.parse::<Ipv6Addr>().is_ok() || is_scoped_v6(s) {
            return Ok(s.to_string());
        }
        return Err("must be a host name or IP address without a port".into());
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/[]@\\\"'".contains(c))
    {
        return Err("is not a valid host name or IP address".into());
    }
    Ok(s.to_string())
}

/// A name server for ss-server's resolver: an IP address, optionally with a port (default 53).
/// It must be a literal: we cannot resolve the resolver.
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() != 0 {
            return Ok(sa);
        }
    }
    Err("must be an IP address, IP:PORT or [IPv6]:PORT".into())
}

/// Network interface names are at most 15 bytes on Linux (IFNAMSIZ - 1).
pub fn parse_interface(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 || s.chars().any(|c| c == '/' || c.is_whitespace()) {
        return Err("must be a network interface name (1-15 characters, no '/' or spaces)".into());
    }
    Ok(s.to_string())
}

pub fn parse_nonempty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_string())
}

/// libev documents URL-safe base64 but users paste standard base64 too, with or without
/// padding and sometimes with a trailing newline; all of those mean the same bytes.
pub fn decode_base64_key(s: &str) -> Option<Vec<u8>> {
    // Six bits per character of either alphabet; whitespace and padding carry none.
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        acc = (acc << 6) | u32::from(sextet(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // One character left over (6 bits) is no whole byte: not base64. Trailing bits after the
    // last byte are ignored, as libev does.
    if out.is_empty() || bits == 6 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn ports() {
        assert_eq!(parse_port("8388"), Ok(8388));
        assert_eq!(parse_port(" 443 "), Ok(443));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("-1").is_err());
        assert!(parse_port("abc").is_err());
        assert!(parse_port("").is_err());
    }

    #[test]
    fn ranges_and_hex() {
        assert_eq!(parse_u32(&FWMARK, "0xff"), Ok(255));
        assert_eq!(parse_u32(&FWMARK, "0"), Ok(0));
        assert_eq!(parse_u32(&MTU, "0"), Ok(0));
        assert!(parse_u32(&MTU, "10").is_err());
        assert_eq!(parse_u32(&MTU, "1500"), Ok(1500));
        assert!(TIMEOUT.parse("0").is_err());
        assert!(TIMEOUT.parse("99999999999999999999999").is_err());
        assert!(parse_usize(&POOL_BLOCKS, "0").is_err());
        let cap = crate::policy::memory::MAX_BLOCKS;
        assert!(POOL_BLOCKS.what.ends_with(&format!("(1-{cap})")));
        assert!(parse_usize(&POOL_BLOCKS, &cap.to_string()).is_ok());
        assert!(parse_usize(&POOL_BLOCKS, &(cap + 1).to_string()).is_err());
        assert!(parse_usize(&REPLAY_CAPACITY, "0").is_err());
        assert_eq!(parse_usize(&REPLAY_CAPACITY, "4194304"), Ok(1 << 22));
        assert!(parse_usize(&REPLAY_CAPACITY, "4194305").is_err());
        assert_eq!(parse_u32(&BAN_FAILURES, "0"), Ok(0));
        assert!(parse_u32(&BAN_FAILURES, "1000001").is_err());
        assert!(BAN_SECONDS.parse("0").is_err());
    }

    #[test]
    fn host_port_forms() {
        let hp = |h: &str, p: Option<u16>| {
            Ok(HostPort {
                host: h.into(),
                port: p,
            })
        };
        assert_eq!(parse_host_port("example.com"), hp("example.com", None));
        assert_eq!(
            parse_host_port("example.com:8388"),
            hp("example.com", Some(8388))
        );
        assert_eq!(parse_host_port("::1"), hp("::1", None));
        assert_eq!(parse_host_port("[::1]"), hp("::1", None));
        assert_eq!(
            parse_host_port("[2001:db8::1]:443"),
            hp("2001:db8::1", Some(443))
        );
        assert_eq!(parse_host_port("192.0.2.1:1"), hp("192.0.2.1", Some(1)));
        assert_eq!(parse_host_port("fe80::1%eth0"), hp("fe80::1%eth0", None));
        assert!(parse_host_port("").is_err());
        assert!(parse_host_port("host:0").is_err());
        assert!(parse_host_port("host:").is_err());
        assert!(parse_host_port("[::1").is_err());
        assert!(parse_host_port("[::1]x").is_err());
        assert!(parse_host_port("[nothost]:1").is_err());
        assert!(parse_host_port("a b").is_err());
        assert!(parse_host_port("a:b:c").is_err());
    }

    #[test]
    fn hosts() {
        assert_eq!(check_host("[::1]"), Ok("::1".into()));
        assert!(check_host("127.0.0.1:1080").is_err());
        assert!(check_host(&"a".repeat(256)).is_err());
    }

    #[test]
    fn nameservers() {
        assert_eq!(
            parse_nameserver("192.0.2.53"),
            Ok("192.0.2.53:53".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("[2001:db8::53]:5353"),
            Ok("[2001:db8::53]:5353".parse().unwrap())
        );
        assert!(parse_nameserver("dns.example").is_err());
    }

    #[test]
    fn base64_alphabets_and_padding() {
        let bytes: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(0xfb))
            .collect();
        let std_pad = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let url_nopad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert_ne!(std_pad, url_nopad);
        assert_eq!(decode_base64_key(&std_pad).as_deref(), Some(&bytes[..]));
        assert_eq!(decode_base64_key(&url_nopad).as_deref(), Some(&bytes[..]));
        assert_eq!(
            decode_base64_key(&format!("{std_pad}\n")).as_deref(),
            Some(&bytes[..])
        );
        assert_eq!(decode_base64_key("not base64!"), None);
        assert_eq!(decode_base64_key(""), None);
        assert_eq!(decode_base64_key("===="), None);
    }

    #[test]
    fn secret_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(..)");
    }
}
