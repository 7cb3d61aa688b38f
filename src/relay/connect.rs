//! Outbound connections to the Shadowsocks server(s), with the socket options routers need
//! (SO_MARK, SO_BINDTODEVICE, TCP Fast Open) applied before connecting.

use crate::rt::{Async, Timer};
use crate::sys::{self, OutboundOpts};
use futures_lite::future;
use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The configured servers (resolved at start) and how to reach them.
pub struct Upstream {
    servers: Vec<SocketAddr>,
    next: Cell<usize>,
    pub opts: OutboundOpts,
}

impl Upstream {
    pub fn new(servers: Vec<SocketAddr>, opts: OutboundOpts) -> Upstream {
        Upstream {
            servers,
            next: Cell::new(0),
            opts,
        }
    }

    /// Servers in turn, so load spreads over a `server` array as libev's random pick does.
    pub fn pick(&self) -> Option<SocketAddr> {
        let i = self.next.get();
        self.next.set(i.wrapping_add(1));
        self.servers.get(i % self.servers.len().max(1)).copied()
    }

    /// Connects to the next server, giving up after `timeout`.
    pub async fn connect(&self, timeout: Duration) -> io::Result<(Async<TcpStream>, SocketAddr)> {
        let addr = self
            .pick()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no server configured"))?;
        Ok((connect_tcp(addr, &self.opts, timeout).await?, addr))
    }
}

/// Non-blocking connect with `opts` applied, bounded by `timeout`.
pub async fn connect_tcp(
    addr: SocketAddr,
    opts: &OutboundOpts,
    timeout: Duration,
) -> io::Result<Async<TcpStream>> {
    let stream = Async::connecting(sys::start_tcp_connect(addr, opts)?)?;
    future::or(
        async {
            stream.writable().await?;
            match stream.get_ref().take_error()? {
                Some(e) => Err(e),
                None => Ok(()),
            }
        },
        async {
            Timer::after(timeout).await;
            Err(io::ErrorKind::TimedOut.into())
        },
    )
    .await?;
    Ok(stream)
}
