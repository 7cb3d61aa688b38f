//! UDP relaying: one association per client address, each with its own socket to the server.
//!
//! The table has a fixed capacity; associations idle for the timeout are swept, and when the
//! table is full the least recently active one is evicted, so nothing grows without bound.
//! Datagrams are received straight into the place where they are sealed: the Shadowsocks
//! plaintext *is* the SOCKS5 datagram minus `00 00 FRAG`, so it is received 3 bytes before the
//! end of the salt and the salt then overwrites those 3 bytes. No payload is copied.

use super::connect::Upstream;
use super::pool::Pool;
use crate::policy::assoc::AssocTable;
use crate::proto::address::Address;
use crate::proto::cipher::{MasterKey, Method, MAX_SALT_LEN, TAG_LEN};
use crate::proto::{socks5, udp};
use crate::rt::{Async, Timer};
use crate::sys::{self, random_salt};
use async_executor::{LocalExecutor, Task};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

/// How client datagrams name their destination.
pub enum Framing {
    /// SOCKS5 UDP: `00 00 FRAG ADDRESS DATA`; replies carry the remote's address.
    Socks5,
    /// ss-tunnel: bare payloads to one fixed destination.
    Tunnel(Box<Address>),
}

struct Assoc {
    socket: Rc<Async<UdpSocket>>,
    _replies: Task<()>,
}

pub struct UdpRelay {
    listener: Rc<Async<UdpSocket>>,
    framing: Framing,
    method: Method,
    key: MasterKey,
    pool: Rc<Pool>,
    upstream: Rc<Upstream>,
    table: AssocTable<Assoc>,
    ex: Rc<LocalExecutor<'static>>,
}

impl UdpRelay {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        listener: UdpSocket,
        framing: Framing,
        method: Method,
        key: MasterKey,
        pool: Rc<Pool>,
        upstream: Rc<Upstream>,
        timeout: Duration,
        capacity: usize,
        ex: Rc<LocalExecutor<'static>>,
    ) -> io::Result<Rc<UdpRelay>> {
        Ok(Rc::new(UdpRelay {
            listener: Rc::new(Async::new(listener)?),
            framing,
            method,
            key,
            pool,
            upstream,
            table: AssocTable::new(capacity, timeout),
            ex,
        }))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// Associations currently held.
    pub fn associations(&self) -> usize {
        self.table.len()
    }

    /// Receives client datagrams forever, forwarding each through its association.
    pub async fn serve(self: Rc<Self>) -> io::Result<()> {
        let _sweeper = self.ex.spawn(Rc::clone(&self).sweep());
        let salt_len = self.method.salt_len();
        let prefix = match &self.framing {
            Framing::Tunnel(addr) => Some(addr.to_wire()),
            Framing::Socks5 => None,
        };
        // Offset where the datagram lands so that its plaintext starts right after the salt.
        let recv_at = match &prefix {
            Some(p) => salt_len + p.len(),
            None => salt_len - 3,
        };
        loop {
            self.listener.readable().await?;
            let mut block = self.pool.take().await;
            let room = block.len() - TAG_LEN;
            let (n, client) = match self
                .listener
                .try_read_with(|s| s.recv_from(&mut block[recv_at..room]))
            {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    log::debug!("udp: receive: {e}");
                    continue;
                }
            };
            if recv_at + n == room {
                log::debug!("udp: {client}: datagram too large, dropped");
                continue;
            }
            let plain_end = recv_at + n;
            match &prefix {
                Some(p) => block[salt_len..recv_at].copy_from_slice(p),
                None => {
                    if let Err(e) = socks5::parse_udp_header(&block[recv_at..plain_end]) {
                        log::debug!("udp: {client}: dropped datagram: {e}");
                        continue;
                    }
                }
            }
            let assoc = match self.association(client) {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("udp: {client}: cannot open a socket to the server: {e}");
                    continue;
                }
            };
            let mut salt = [0u8; MAX_SALT_LEN];
            if random_salt(&mut salt[..salt_len]).is_err() {
                log::error!("udp: the system random number generator failed");
                continue;
            }
            let packet = &mut block[..plain_end + TAG_LEN];
            if udp::seal(self.method, &self.key, &salt, packet).is_err() {
                continue;
            }
            if let Err(e) = assoc.send(packet).await {
                log::debug!("udp: {client}: send to server: {e}");
            }
        }
    }

    /// The association for `client`, created (evicting the stalest if full) when missing.
    fn association(self: &Rc<Self>, client: SocketAddr) -> io::Result<Rc<Async<UdpSocket>>> {
        if let Some(socket) = self.table.with(&client, |a| Rc::clone(&a.socket)) {
            return Ok(socket);
        }
        let server = self
            .upstream
            .pick()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no server"))?;
        let socket = sys::outbound_udp_socket(server, &self.upstream.opts)?;
        socket.connect(server)?;
        let socket = Rc::new(Async::new_nonblocking(socket)?);
        let replies = self
            .ex
            .spawn(Rc::clone(self).replies(client, Rc::clone(&socket)));
        self.table.insert(
            client,
            Assoc {
                socket: Rc::clone(&socket),
                _replies: replies,
            },
        );
        log::debug!("udp: {client}: new association via {server}");
        Ok(socket)
    }

    /// Server → client for one association.
    async fn replies(self: Rc<Self>, client: SocketAddr, socket: Rc<Async<UdpSocket>>) {
        let mut warned = false;
        loop {
            if socket.readable().await.is_err() {
                return;
            }
            let mut block = self.pool.take().await;
            let n = match socket.try_read_with(|s| s.recv(&mut block)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    log::debug!("udp: {client}: receive from server: {e}");
                    continue;
                }
            };
            let plain = match udp::open(self.method, &self.key, &mut block[..n]) {
                Ok(r) => r,
                Err(why) => {
                    if !warned {
                        log::warn!("udp: {client}: bad packet from server: {why}");
                        warned = true;
                    }
                    continue;
                }
            };
            self.table.touch(&client);
            let out = match &self.framing {
                Framing::Socks5 => {
                    // The plaintext is ADDRESS DATA; the salt before it leaves room for 00 00 00.
                    let start = plain.start - 3;
                    block[start..plain.start].copy_from_slice(&[0, 0, 0]);
                    start..plain.end
                }
                Framing::Tunnel(_) => match Address::parse(&block[plain.clone()]) {
                    Ok((_, used)) => plain.start + used..plain.end,
                    Err(e) => {
                        log::debug!("udp: {client}: bad address from server: {e}");
                        continue;
                    }
                },
            };
            if let Err(e) = self.listener.send_to(&block[out], client).await {
                log::debug!("udp: {client}: send to client: {e}");
            }
        }
    }

    /// Drops associations idle for longer than the timeout.
    async fn sweep(self: Rc<Self>) {
        loop {
            Timer::after(self.table.sweep_period()).await;
            self.table.sweep();
        }
    }
}
