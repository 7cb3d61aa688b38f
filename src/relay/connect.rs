//! Outbound connections to the Shadowsocks server(s), with the socket options routers need
//! (SO_MARK, SO_BINDTODEVICE, TCP Fast Open) applied before connecting.

use crate::rt::{Async, Timer};
use crate::sys::{self, OutboundOpts};
use futures_lite::future;
use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Where one transport goes: the servers (resolved at start) or the plugins in front of them,
/// and the socket options for that way.
pub struct Route {
    addrs: Vec<SocketAddr>,
    next: Cell<usize>,
    pub opts: OutboundOpts,
    /// A plugin's port: a refused connect is retried briefly, as the plugin may be restarting
    /// its listener.
    retry_refused: bool,
}

impl Route {
    pub fn new(addrs: Vec<SocketAddr>, opts: OutboundOpts, retry_refused: bool) -> Route {
        Route {
            addrs,
            next: Cell::new(0),
            opts,
            retry_refused,
        }
    }

    /// Addresses in turn, so load spreads over a `server` array as libev's random pick does.
    pub fn pick(&self) -> Option<SocketAddr> {
        let i = self.next.get();
        self.next.set(i.wrapping_add(1));
        self.addrs.get(i % self.addrs.len().max(1)).copied()
    }
}

/// How a client mode reaches its servers: TCP and UDP each by its own route (they differ when
/// a plugin carries only one of them).
pub struct Upstream {
    pub tcp: Route,
    pub udp: Route,
}

/// Attempts at a plugin port that refuses, and the pause between them.
const REFUSED_TRIES: u32 = 10;
const REFUSED_PAUSE: Duration = Duration::from_millis(100);

impl Upstream {
    pub fn new(tcp: Route, udp: Route) -> Upstream {
        Upstream { tcp, udp }
    }

    /// Connects to the next server, giving up after `timeout`.
    pub async fn connect(&self, timeout: Duration) -> io::Result<(Async<TcpStream>, SocketAddr)> {
        let addr = self
            .tcp
            .pick()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no server configured"))?;
        let mut tries = 1;
        loop {
            match connect_tcp(addr, &self.tcp.opts, timeout).await {
                Err(e)
                    if self.tcp.retry_refused
                        && e.kind() == io::ErrorKind::ConnectionRefused
                        && tries < REFUSED_TRIES =>
                {
                    tries += 1;
                    Timer::after(REFUSED_PAUSE).await;
                }
                r => return Ok((r?, addr)),
            }
        }
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
