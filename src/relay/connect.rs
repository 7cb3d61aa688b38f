//! Outbound connections, with the socket options routers need (SO_MARK, SO_BINDTODEVICE, TCP
//! Fast Open) applied before connecting; for client modes, with failover between the servers.

use super::upstream::{Server, Upstream, TCP};
use crate::rt::{self, Async, Timer};
use crate::sys::{self, OutboundOpts};
use futures_lite::future;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

/// Attempts at a plugin port that refuses, and the pause between them.
const REFUSED_TRIES: u32 = 10;
const REFUSED_PAUSE: Duration = Duration::from_millis(100);

/// The longest a connection waits for its servers to accept, all attempts together (libev's
/// MAX_CONNECT_TIMEOUT); shorter when the idle timeout is.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Upstream {
    /// Connects to a server: the next in turn that the circuit breaker lets through, then the
    /// others, each at most once, all within the connect timeout (split between the servers
    /// left, so one that never answers leaves time for the rest). Gives the server.
    pub async fn connect(&self, idle: Duration) -> io::Result<(Async<TcpStream>, Rc<Server>)> {
        let deadline = rt::now() + idle.min(CONNECT_TIMEOUT);
        let servers = self.servers();
        let start = self.start_at(servers.len());
        let mut tried = Vec::new();
        let mut last = None;
        while let Some(i) = Upstream::next(&servers, start, &tried) {
            tried.push(i);
            let Some(server) = servers.get(i) else { break };
            let Some(addr) = server.addr(TCP) else {
                last = Some(io::Error::new(
                    io::ErrorKind::NotFound,
                    "server name not resolved yet (retrying)",
                ));
                continue;
            };
            // This one and every server not tried yet share what is left.
            let left = (servers.len() + 1).saturating_sub(tried.len()).max(1) as u64;
            let budget = share(deadline.saturating_duration_since(rt::now()), left);
            match self.attempt(server, addr, budget).await {
                Ok(stream) => {
                    server.connected();
                    return Ok((stream, Rc::clone(server)));
                }
                // Out of descriptors or buffers here: no server's fault, and none would do.
                Err(e) if local_shortage(&e) => return Err(e),
                Err(e) => {
                    server.failed(&e);
                    last = Some(e);
                }
            }
        }
        // With several servers, each one's failure was logged as it went down.
        Err(last.unwrap_or_else(|| io::ErrorKind::NotFound.into()))
    }

    async fn attempt(
        &self,
        server: &Server,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<Async<TcpStream>> {
        let mut tries = 1;
        loop {
            match connect_tcp(addr, self.opts(server, TCP), timeout).await {
                Err(e)
                    if server.through_plugin(TCP)
                        && e.kind() == io::ErrorKind::ConnectionRefused
                        && tries < REFUSED_TRIES =>
                {
                    tries += 1;
                    Timer::after(REFUSED_PAUSE).await;
                }
                r => return r,
            }
        }
    }
}

/// `t / n` to the millisecond (`Duration`'s own division links a wide one).
fn share(t: Duration, n: u64) -> Duration {
    let ms = t.as_secs() * 1000 + u64::from(t.subsec_millis());
    Duration::from_millis(ms / n.max(1))
}

/// Errors that say this host ran out of something, not that the server is down.
fn local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM)
    )
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
