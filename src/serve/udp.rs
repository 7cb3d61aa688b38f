//! The one datagram relay: a program's UDP front door ([`DatagramFront`]: how datagrams
//! arrive and how replies leave) on one side, the far side on the other, and between them a
//! bounded table of associations, one per client address, each with its own outbound sockets.
//! An association whose reply reached the client is assured: when the table is full, the
//! associations that never had one are evicted first, so a flood of new sources cannot push
//! established flows out.
//!
//! ```text
//! client → front.receive → (client, target, data) → Server:  salt | seal(ADDRESS | data) → server
//!                                                  → Targets: data → target (resolved, checked)
//! client ← front.reply   ← (client, from, data)   ← Server:  open, ADDRESS = from
//!                                                  ← Targets: from = the remote's address
//! ```
//!
//! Datagrams are received straight into the place where they are sealed or sent from: the
//! front receives at an offset that leaves room for the far side's header in front, and a
//! reply is received after room for the front's header. No payload is copied, except that of
//! a datagram waiting for a name to resolve: it is copied out of its block (within the pool's
//! spill budget), so lookups cannot hold pool blocks, and an association has at most
//! [`MAX_LOOKUPS`] of them at once.

use super::Far;
use crate::ingress::{packet_nonce, random_id, Datagram, DatagramFront, Peer};
use crate::policy::assoc::AssocTable;
use crate::policy::throttle::{skipped_note, Throttle};
use crate::proto::address::{self, Address};
use crate::proto::cipher::{MAX_SALT_LEN, TAG_LEN};
use crate::proto::ss2022::session::{client_prefix_len, ClientSession};
use crate::proto::ss2022::udp::{NONCE_LEN, SEPARATE_LEN};
use crate::proto::ss2022::{self, IDENTITY_LEN, MAX_IDENTITIES};
use crate::proto::udp;
use crate::relay::direct::Targets;
use crate::relay::pool::{Block, Pool};
use crate::relay::upstream::{Credentials, Server, UDP};
use crate::rt::{self, Async, Timer};
use crate::rt::{LocalExecutor, Task};
use crate::sys::{self, random_salt};
use futures_lite::future;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

/// Datagrams of one association waiting for their target's name to resolve.
pub const MAX_LOOKUPS: u8 = 8;

/// One outbound socket of an association and the task relaying its replies; dropping it
/// cancels the task.
struct Outbound {
    socket: Rc<Async<UdpSocket>>,
    via: Option<Rc<Via>>,
    _replies: Task<()>,
}

/// A client association's server: which one, its keys, and for a Shadowsocks 2022 method the
/// session with it.
struct Via {
    server: Rc<Server>,
    creds: Rc<Credentials>,
    session: Option<RefCell<ClientSession>>,
}

/// An association's socket and, for a client, its server.
type Way = (Rc<Async<UdpSocket>>, Option<Rc<Via>>);

/// One client's association: through the server, one socket (slot 0); to targets, one per
/// address family (0: IPv4, 1: IPv6).
#[derive(Default)]
struct Assoc {
    out: [Option<Outbound>; 2],
    lookups: Rc<Cell<u8>>,
}

pub struct UdpRelay {
    front: Box<dyn DatagramFront>,
    far: Far,
    pool: Rc<Pool>,
    table: RefCell<AssocTable<Assoc, Peer>>,
    ex: Rc<LocalExecutor>,
    /// Evictions are warned about at most once a second.
    evictions: Throttle,
}

impl UdpRelay {
    pub fn new(
        front: Box<dyn DatagramFront>,
        far: Far,
        pool: Rc<Pool>,
        timeout: Duration,
        capacity: usize,
        ex: Rc<LocalExecutor>,
    ) -> Rc<Self> {
        Rc::new(UdpRelay {
            front,
            far,
            pool,
            table: RefCell::new(AssocTable::new(capacity, timeout)),
            ex,
            evictions: Throttle::new(Duration::from_secs(1)),
        })
    }

    /// Associations currently held.
    pub fn associations(&self) -> usize {
        self.table.borrow().len()
    }

    /// Receives client datagrams for ever, forwarding each through its association.
    pub async fn serve(self: Rc<Self>) -> io::Result<()> {
        let _sweeper = self.ex.spawn(Rc::clone(&self).sweep());
        // Room in front of a datagram for the salt (or 2022's headers) and the target address
        // it leaves with.
        let at = match self.far {
            Far::Server(_) => (MAX_SALT_LEN + address::MAX_LEN).max(SS2022_ROOM),
            Far::Targets(_) => 0,
        };
        loop {
            match self.front.strays() {
                Some(strays) => {
                    future::or(self.front.socket().readable(), strays.arrived()).await?
                }
                None => self.front.socket().readable().await?,
            }
            let mut block = self.pool.take().await;
            let end = block.len() - TAG_LEN;
            let datagram = match self.front.receive(&mut block[..end], at) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    log::debug!("udp: receive: {e}");
                    continue;
                }
            };
            match &self.far {
                Far::Server(_) => self.to_server(block, datagram).await,
                Far::Targets(targets) => self.to_target(targets, block, datagram).await,
            }
        }
    }

    /// Seals `ADDRESS | data` where it lies and sends it on the association's server socket.
    async fn to_server(self: &Rc<Self>, mut block: Block, d: Datagram) {
        let (socket, via) = match self.server_socket(d.client) {
            Ok((socket, Some(via))) => (socket, via),
            Ok((_, None)) => return,
            Err(e) => {
                return log::warn!("udp: {}: cannot open a socket to the server: {e}", d.client)
            }
        };
        let creds = &via.creds;
        if let (Some(udp), Some(session)) = (&creds.udp, &via.session) {
            let start = d.data.start - client_prefix_len(udp, &d.target);
            let packet = &mut block[start..d.data.end + TAG_LEN];
            let Ok(nonce) = packet_nonce(udp) else {
                return log::error!("udp: the system random number generator failed");
            };
            let sealed = session
                .borrow_mut()
                .seal(udp, &d.target, rt::unix_now(), &nonce, packet);
            if let Err(e) = sealed {
                return log::warn!("udp: {}: not sent: {e}", d.client);
            }
            if let Err(e) = socket.send(packet).await {
                log::debug!("udp: {}: send to server: {e}", d.client);
            }
            return;
        }
        let salt_len = creds.method.salt_len();
        let plain_at = d.data.start - d.target.wire_len();
        let _ = d.target.write_to(&mut block[plain_at..d.data.start]);
        let mut salt = [0u8; MAX_SALT_LEN];
        if random_salt(&mut salt[..salt_len]).is_err() {
            return log::error!("udp: the system random number generator failed");
        }
        let packet = &mut block[plain_at - salt_len..d.data.end + TAG_LEN];
        if let Err(e) = udp::seal(creds.method, &creds.key, &salt, packet) {
            return log::warn!("udp: {}: not sent: {e}", d.client);
        }
        if let Err(e) = socket.send(packet).await {
            log::debug!("udp: {}: send to server: {e}", d.client);
        }
    }

    /// Sends the payload to its target: at once for an IP, after a lookup for a name.
    async fn to_target(self: &Rc<Self>, targets: &Rc<Targets>, block: Block, d: Datagram) {
        let Datagram {
            client,
            target,
            data,
        } = d;
        if let Address::Ip(_) = target {
            match targets.resolve(&target).await {
                Ok(addr) => self.send_to_target(client, addr, &block[data]).await,
                Err(e) => log::debug!("udp: {client} -> {target}: {e}"),
            }
            return;
        }
        let lookups = self.lookups(client);
        if lookups.get() >= MAX_LOOKUPS {
            return log::debug!("udp: {client} -> {target}: too many lookups waiting, dropped");
        }
        // A lookup can take seconds: the payload waits outside the pool.
        let Some(payload) = self.pool.spill(&block[data]) else {
            return log::debug!("udp: {client} -> {target}: no room to wait for a lookup, dropped");
        };
        drop(block);
        lookups.set(lookups.get() + 1);
        let (this, targets) = (Rc::clone(self), Rc::clone(targets));
        self.ex.spawn_detached(async move {
            match targets.resolve(&target).await {
                Ok(addr) => this.send_to_target(client, addr, &payload).await,
                Err(e) => log::debug!("udp: {client} -> {target}: {e}"),
            }
            lookups.set(lookups.get().saturating_sub(1));
        });
    }

    async fn send_to_target(self: &Rc<Self>, client: Peer, addr: SocketAddr, data: &[u8]) {
        let socket = match self.target_socket(client, addr).map(|(s, _)| s) {
            Ok(s) => s,
            Err(e) => return log::warn!("udp: {client} -> {addr}: {e}"),
        };
        if let Err(e) = socket.send_to(data, addr).await {
            log::debug!("udp: {client} -> {addr}: {e}");
        }
    }

    /// The lookup counter of `client`'s association, made (empty) when missing.
    fn lookups(&self, client: Peer) -> Rc<Cell<u8>> {
        let now = rt::now();
        let mut table = self.table.borrow_mut();
        if let Some(a) = table.get(&client, now) {
            return Rc::clone(&a.lookups);
        }
        let assoc = Assoc::default();
        let lookups = Rc::clone(&assoc.lookups);
        let gone = table.insert(client, assoc, now);
        drop(table);
        drop(gone);
        lookups
    }

    /// The association's socket to the server, made when missing.
    fn server_socket(self: &Rc<Self>, client: Peer) -> io::Result<Way> {
        self.socket(client, 0, || {
            let Far::Server(upstream) = &self.far else {
                return Err(io::Error::other("no server for this relay"));
            };
            let (chosen, server) = upstream
                .pick_udp(None)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no server reachable"))?;
            let creds = Rc::clone(&chosen.creds);
            let session = match &creds.udp {
                Some(udp) => Some(RefCell::new(ClientSession::new(udp, random_id()?))),
                None => None,
            };
            let socket = sys::outbound_udp_socket(server, upstream.opts(&chosen, UDP))?;
            socket.connect(server)?;
            log::debug!("udp: {client}: new association via {server}");
            let via = Via {
                server: chosen,
                creds,
                session,
            };
            Ok((socket, Some(Rc::new(via))))
        })
    }

    /// The association's socket to targets of `addr`'s family, made when missing.
    fn target_socket(self: &Rc<Self>, client: Peer, addr: SocketAddr) -> io::Result<Way> {
        let slot = usize::from(addr.is_ipv6());
        self.socket(client, slot, || {
            let Far::Targets(targets) = &self.far else {
                return Err(io::Error::other("no targets for this relay"));
            };
            Ok((
                sys::outbound_udp_socket(addr, targets.outbound(&addr))?,
                None,
            ))
        })
    }

    /// `client`'s socket in `slot`, opened with `open` (and its reply task started) if needed.
    fn socket(
        self: &Rc<Self>,
        client: Peer,
        slot: usize,
        open: impl FnOnce() -> io::Result<(UdpSocket, Option<Rc<Via>>)>,
    ) -> io::Result<Way> {
        let now = rt::now();
        let existing = self.table.borrow_mut().get(&client, now).map(|a| {
            a.out
                .get(slot)
                .and_then(Option::as_ref)
                .map(|o| (Rc::clone(&o.socket), o.via.clone()))
        });
        if let Some(Some(way)) = existing {
            return Ok(way);
        }
        let (socket, via) = open()?;
        let socket = Rc::new(Async::new_nonblocking(socket)?);
        let replies =
            self.ex
                .spawn(Rc::clone(self).replies(client, Rc::clone(&socket), via.clone()));
        let outbound = Outbound {
            socket: Rc::clone(&socket),
            via: via.clone(),
            _replies: replies,
        };
        let mut table = self.table.borrow_mut();
        let gone = match table.get_mut(&client, now) {
            Some(assoc) => {
                if let Some(s) = assoc.out.get_mut(slot) {
                    *s = Some(outbound);
                }
                None
            }
            None => {
                let mut assoc = Assoc::default();
                if let Some(s) = assoc.out.get_mut(slot) {
                    *s = Some(outbound);
                }
                table.insert(client, assoc, now)
            }
        };
        drop(table);
        // Dropped outside the borrow: dropping an association cancels its tasks.
        if let Some((evicted, _)) = &gone {
            match self.evictions.allow(now) {
                Some(n) => log::warn!(
                    "udp: association table full ({} clients): evicted {evicted}, the least \
                     recently used (flows never answered go first); a flood of new sources, or \
                     --udp-assocs is too small{}",
                    self.table.borrow().len(),
                    skipped_note(n)
                ),
                None => log::debug!("udp: association table full, evicted {evicted}"),
            }
        }
        drop(gone);
        Ok((socket, via))
    }

    /// Far side → client, for one outbound socket.
    async fn replies(
        self: Rc<Self>,
        client: Peer,
        socket: Rc<Async<UdpSocket>>,
        via: Option<Rc<Via>>,
    ) {
        let head = self.front.reply_headroom();
        let mut warned = false;
        loop {
            if socket.readable().await.is_err() {
                return;
            }
            let mut block = self.pool.take().await;
            let end = block.len() - TAG_LEN;
            let received = socket.try_read_with(|s| s.recv_from(&mut block[head..end]));
            let (n, remote) = match received {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    log::debug!("udp: {client}: receive: {e}");
                    if let (io::ErrorKind::ConnectionRefused, Some(via)) = (e.kind(), &via) {
                        // This task ends with the association's socket.
                        return self.move_on(client, via, &e);
                    }
                    continue;
                }
            };
            let (from, data) = match (&self.far, &via) {
                (Far::Server(_), Some(via)) if via.creds.udp.is_some() => {
                    let packet = &mut block[head..head + n];
                    let opened = match (&via.creds.udp, &via.session) {
                        (Some(udp), Some(s)) => s.borrow_mut().open(udp, packet, rt::unix_now()),
                        _ => Err(ss2022::Error::BadTag),
                    };
                    match opened {
                        Ok(p) => (p.address, head + p.payload.start..head + p.payload.end),
                        Err(why) => {
                            if !warned {
                                log::warn!("udp: {client}: bad packet from server: {why}");
                                warned = true;
                            }
                            continue;
                        }
                    }
                }
                (Far::Server(_), Some(via)) => {
                    let packet = &mut block[head..head + n];
                    let plain = match udp::open(via.creds.method, &via.creds.key, packet) {
                        Ok(r) => r,
                        Err(why) => {
                            if !warned {
                                log::warn!("udp: {client}: bad packet from server: {why}");
                                warned = true;
                            }
                            continue;
                        }
                    };
                    match Address::parse(&packet[plain.clone()]) {
                        Ok((from, used)) => (from, head + plain.start + used..head + plain.end),
                        Err(e) => {
                            log::debug!("udp: {client}: bad address from server: {e}");
                            continue;
                        }
                    }
                }
                (Far::Server(_), None) => continue,
                (Far::Targets(_), _) => (Address::Ip(canonical(remote)), head..head + n),
            };
            let sent = self.front.reply(client, &from, &mut block, data);
            let now = rt::now();
            match sent {
                // The far side answered and the answer went out: a live flow, kept ahead of
                // associations never answered (a flood of new sources) when the table is full.
                Ok(()) => self.table.borrow_mut().assure(&client, now),
                Err(e) => {
                    self.table.borrow_mut().touch(&client, now);
                    log::debug!("udp: {client}: send to client: {e}");
                }
            }
        }
    }

    /// The server of a client association refused (ICMP port unreachable): that counts as its
    /// failure, and the association's socket to it goes, so the client's next datagram opens
    /// one to the server the breaker picks then.
    fn move_on(&self, client: Peer, via: &Via, why: &io::Error) {
        via.server.failed(why);
        let gone = self
            .table
            .borrow_mut()
            .get_mut(&client, rt::now())
            .and_then(|a| a.out.first_mut().and_then(Option::take));
        // Dropped outside the borrow; it cancels this very task, after this poll.
        drop(gone);
    }

    /// Drops associations idle for longer than the timeout.
    async fn sweep(self: Rc<Self>) {
        let period = self.table.borrow().sweep_period();
        loop {
            Timer::after(period).await;
            let gone = self.table.borrow_mut().sweep(rt::now());
            drop(gone);
        }
    }
}

/// Room a Shadowsocks 2022 client packet needs in front of its payload, at most: ChaCha's nonce,
/// the separate header, type, timestamp, padding length and the target address.
const SS2022_ROOM: usize =
    NONCE_LEN + SEPARATE_LEN + IDENTITY_LEN * MAX_IDENTITIES + 1 + 8 + 2 + address::MAX_LEN;

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
