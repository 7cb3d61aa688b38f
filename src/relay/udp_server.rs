//! ss-server's UDP side: opens client packets, sends their payload to the target they name, and
//! seals replies with the remote's address. One association per client address, each with an
//! outbound socket per address family, in the bounded association table.
//!
//! ```text
//! client → server:  salt | seal( ADDRESS(target) | data )      → data to target
//! server → client:  salt | seal( ADDRESS(remote) | data )      ← data from remote
//! ```

use super::pool::Pool;
use super::server::ServerState;
use crate::policy::assoc::AssocTable;
use crate::proto::address::Address;
use crate::proto::cipher::{MasterKey, Method, MAX_SALT_LEN, TAG_LEN};
use crate::proto::udp;
use crate::rt::{Async, Timer};
use crate::sys::{self, random_salt};
use async_executor::{LocalExecutor, Task};
use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

/// Longest address a reply can carry (an IPv6 one); replies are received after this much room.
const REPLY_ADDR_ROOM: usize = 19;

/// One client's outbound sockets, created per family on first use; dropping it cancels the
/// reply tasks.
#[derive(Default)]
struct Assoc {
    v4: Option<(Rc<Async<UdpSocket>>, Task<()>)>,
    v6: Option<(Rc<Async<UdpSocket>>, Task<()>)>,
}

pub struct UdpServer {
    listener: Async<UdpSocket>,
    method: Method,
    key: MasterKey,
    pool: Rc<Pool>,
    srv: Rc<ServerState>,
    table: AssocTable<RefCell<Assoc>>,
    ex: Rc<LocalExecutor<'static>>,
}

impl UdpServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        listener: UdpSocket,
        method: Method,
        key: MasterKey,
        pool: Rc<Pool>,
        srv: Rc<ServerState>,
        timeout: Duration,
        capacity: usize,
        ex: Rc<LocalExecutor<'static>>,
    ) -> io::Result<Rc<UdpServer>> {
        Ok(Rc::new(UdpServer {
            listener: Async::new(listener)?,
            method,
            key,
            pool,
            srv,
            table: AssocTable::new(capacity, timeout),
            ex,
        }))
    }

    pub async fn serve(self: Rc<Self>) -> io::Result<()> {
        let _sweeper = self.ex.spawn(Rc::clone(&self).sweep());
        loop {
            self.listener.readable().await?;
            let mut block = self.pool.take().await;
            let (n, client) = match self.listener.try_read_with(|s| s.recv_from(&mut block)) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    log::debug!("udp: receive: {e}");
                    continue;
                }
            };
            if self.srv.banned(client.ip()) {
                continue;
            }
            let plain = match udp::open(self.method, &self.key, &mut block[..n]) {
                Ok(r) => r,
                // Not counted towards a ban: UDP sources can be forged to get a victim banned.
                Err(why) => {
                    log::debug!("udp: {client}: {why}");
                    continue;
                }
            };
            let salt = &block[..self.method.salt_len()];
            if self.srv.replay_udp.borrow_mut().check_and_insert(salt) {
                log::debug!("udp: {client}: replayed salt");
                continue;
            }
            let (target, used) = match Address::parse(&block[plain.clone()]) {
                Ok(x) => x,
                Err(e) => {
                    log::debug!("udp: {client}: bad address: {e}");
                    continue;
                }
            };
            let data = plain.start + used..plain.end;
            match target {
                // An IP target resolves at once (only the policy check runs).
                Address::Ip(_) => match self.srv.resolve(&target).await {
                    Ok(addr) => self.forward(client, addr, &block[data]).await,
                    Err(e) => log::debug!("udp: {client} -> {target}: {e}"),
                },
                // Resolving may take a while: do it beside the receive loop, holding the block.
                Address::Domain(..) => {
                    let this = Rc::clone(&self);
                    self.ex
                        .spawn(async move {
                            match this.srv.resolve(&target).await {
                                Ok(addr) => this.forward(client, addr, &block[data]).await,
                                Err(e) => log::debug!("udp: {client} -> {target}: {e}"),
                            }
                        })
                        .detach();
                }
            }
        }
    }

    /// Sends one payload to `addr` from `client`'s association.
    async fn forward(self: &Rc<Self>, client: SocketAddr, addr: SocketAddr, data: &[u8]) {
        let socket = match self.socket_for(client, addr) {
            Ok(s) => s,
            Err(e) => return log::warn!("udp: {client} -> {addr}: {e}"),
        };
        if let Err(e) = socket.send_to(data, addr).await {
            log::debug!("udp: {client} -> {addr}: {e}");
        }
    }

    /// The outbound socket of `client`'s association for `addr`'s family, made on first use.
    fn socket_for(
        self: &Rc<Self>,
        client: SocketAddr,
        addr: SocketAddr,
    ) -> io::Result<Rc<Async<UdpSocket>>> {
        let existing = self.table.with(&client, |a| {
            let a = a.borrow();
            let slot = if addr.is_ipv4() { &a.v4 } else { &a.v6 };
            slot.as_ref().map(|(s, _)| Rc::clone(s))
        });
        if let Some(Some(socket)) = existing {
            return Ok(socket);
        }
        let socket = Rc::new(Async::new_nonblocking(sys::outbound_udp_socket(
            addr,
            self.srv.outbound(&addr),
        )?)?);
        let task = self
            .ex
            .spawn(Rc::clone(self).replies(client, Rc::clone(&socket)));
        if existing.is_none() {
            self.table.insert(client, RefCell::new(Assoc::default()));
        }
        self.table.with(&client, |a| {
            let mut a = a.borrow_mut();
            let slot = if addr.is_ipv4() { &mut a.v4 } else { &mut a.v6 };
            *slot = Some((Rc::clone(&socket), task));
        });
        Ok(socket)
    }

    /// Remote → client for one outbound socket.
    async fn replies(self: Rc<Self>, client: SocketAddr, socket: Rc<Async<UdpSocket>>) {
        let salt_len = self.method.salt_len();
        let data_at = salt_len + REPLY_ADDR_ROOM;
        loop {
            if socket.readable().await.is_err() {
                return;
            }
            let mut block = self.pool.take().await;
            let room = block.len() - TAG_LEN;
            let (n, remote) = match socket.try_read_with(|s| s.recv_from(&mut block[data_at..room]))
            {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    log::debug!("udp: {client}: receive from target: {e}");
                    continue;
                }
            };
            self.table.touch(&client);
            let remote = Address::Ip(canonical(remote));
            let addr_len = remote.wire_len();
            let plain_at = data_at - addr_len;
            let _ = remote.write_to(&mut block[plain_at..data_at]);
            let mut salt = [0u8; MAX_SALT_LEN];
            if random_salt(&mut salt[..salt_len]).is_err() {
                continue;
            }
            let packet = &mut block[plain_at - salt_len..data_at + n + TAG_LEN];
            if udp::seal(self.method, &self.key, &salt, packet).is_err() {
                continue;
            }
            if let Err(e) = self.listener.send_to(packet, client).await {
                log::debug!("udp: {client}: send: {e}");
            }
        }
    }

    async fn sweep(self: Rc<Self>) {
        loop {
            Timer::after(self.table.sweep_period()).await;
            self.table.sweep();
        }
    }
}

/// IPv4-mapped IPv6 sources are reported as IPv4, as clients expect.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}
