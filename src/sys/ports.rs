//! Ports for SIP003 plugins: a free loopback port to hand a plugin, and whether a plugin has
//! opened its port yet, read from Linux's socket tables (/proc/net) without connecting (a test connection
//! would make a client plugin dial the server).
//!
//! ```text
//! /proc/net/tcp:  sl  local_address rem_address   st …
//!                  0: 0100007F:1F90 00000000:0000 0A …     (0A: LISTEN; port 0x1F90 = 8080)
//! ```

use super as sys;
use std::net::{Ipv4Addr, SocketAddr};

/// Which table a port is looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// A loopback port that is free for TCP, and for UDP too when `udp`. Another program can
/// take it before the plugin binds it; the plugin then fails and we exit, as libev does.
pub fn free_loopback_port(udp: bool) -> std::io::Result<u16> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut last = None;
    for _ in 0..16 {
        let tcp = sys::tcp_listener(any, false, false)?;
        let port = tcp.local_addr()?.port();
        if !udp {
            return Ok(port);
        }
        match sys::udp_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), false) {
            Ok(_) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()))
}

/// Whether some socket listens on (TCP) or is bound to (UDP) `port`, on any address.
pub fn is_open(port: u16, proto: Proto) -> bool {
    let files: [&str; 2] = match proto {
        Proto::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => ["/proc/net/udp", "/proc/net/udp6"],
    };
    files.iter().any(|f| {
        std::fs::read(f)
            .map(|table| table_has(&table, port, proto))
            .unwrap_or(false)
    })
}

/// Whether a socket table's text has `port` open: TCP in state LISTEN, UDP bound and not
/// connected (state 07).
fn table_has(table: &[u8], port: u16, proto: Proto) -> bool {
    let state: &[u8] = match proto {
        Proto::Tcp => b"0A",
        Proto::Udp => b"07",
    };
    table.split(|&b| b == b'\n').skip(1).any(|line| {
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let local = fields.nth(1);
        let st = fields.nth(1);
        let local_port = local
            .and_then(|l| l.rsplit(|&b| b == b':').next())
            .and_then(hex_u16);
        local_port == Some(port) && st == Some(state)
    })
}

fn hex_u16(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    digits.iter().try_fold(0u16, |n, &d| {
        let v = (d as char).to_digit(16)?;
        Some(n << 4 | v as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000
   1: 0100007F:1F91 0100007F:C350 01 00000000:00000000 00:00000000 00000000
";
    const TCP6: &str = "  sl  local_address                         remote_address st
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A
";

    #[test]
    fn finds_listening_ports_only() {
        assert!(table_has(TCP.as_bytes(), 8080, Proto::Tcp));
        // 8081 is an established connection, not a listener.
        assert!(!table_has(TCP.as_bytes(), 8081, Proto::Tcp));
        assert!(table_has(TCP6.as_bytes(), 443, Proto::Tcp));
        assert!(!table_has(TCP6.as_bytes(), 80, Proto::Tcp));
        assert!(!table_has(b"garbage\n 0: x\n", 80, Proto::Tcp));
        assert_eq!(hex_u16(b"1F90"), Some(8080));
        assert_eq!(hex_u16(b"1F9G"), None);
        assert_eq!(hex_u16(b"10000"), None);
    }

    #[test]
    fn sees_a_real_listener_and_a_free_port() {
        use std::net::{TcpListener, UdpSocket};
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(is_open(port, Proto::Tcp));
        drop(l);
        let free = free_loopback_port(true).unwrap();
        assert!(!is_open(free, Proto::Tcp));
        let u = UdpSocket::bind((Ipv4Addr::LOCALHOST, free)).unwrap();
        assert!(is_open(free, Proto::Udp));
        drop(u);
    }
}
