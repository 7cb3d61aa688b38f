//! Ports for plugins: a free loopback port to hand a plugin, and whether a plugin has opened
//! its port yet, read from the kernel's socket tables without connecting (a test connection
//! would make a client plugin dial the server).
//!
//! ```text
//! /proc/net/tcp:  sl  local_address rem_address   st …
//!                  0: 0100007F:1F90 00000000:0000 0A …     (0A: LISTEN; port 0x1F90 = 8080)
//! ```

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

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
    let mut last = None;
    for _ in 0..16 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = tcp.local_addr()?.port();
        if !udp {
            return Ok(port);
        }
        match UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
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
        std::fs::read_to_string(f)
            .map(|table| table_has(&table, port, proto))
            .unwrap_or(false)
    })
}

/// Whether a socket table's text has `port` open: TCP in state LISTEN, UDP bound and not
/// connected (state 07).
fn table_has(table: &str, port: u16, proto: Proto) -> bool {
    let state = match proto {
        Proto::Tcp => "0A",
        Proto::Udp => "07",
    };
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1);
        let st = fields.nth(1);
        let local_port = local
            .and_then(|l| l.rsplit_once(':'))
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        local_port == Some(port) && st == Some(state)
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
        assert!(table_has(TCP, 8080, Proto::Tcp));
        // 8081 is an established connection, not a listener.
        assert!(!table_has(TCP, 8081, Proto::Tcp));
        assert!(table_has(TCP6, 443, Proto::Tcp));
        assert!(!table_has(TCP6, 80, Proto::Tcp));
        assert!(!table_has("garbage\n 0: x\n", 80, Proto::Tcp));
    }

    #[test]
    fn sees_a_real_listener_and_a_free_port() {
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
