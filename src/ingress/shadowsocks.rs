//! ss-server's front door: AEAD Shadowsocks streams and packets from clients.
//!
//! TCP: the salt and the first chunk are read and checked by `proto::handshake`; the target it
//! names goes to the relay, with the client's first payload. A Shadowsocks 2022 stream's salt
//! and fixed header are read in one read, then its variable header
//! (`proto::ss2022::handshake`, driven by the same loop); its salt is remembered for a minute
//! (a `SaltPool` of bounded size), and a timestamp 30 s off, a replayed salt or a bad tag are
//! probes like the rest. A connection whose first chunk
//! does not authenticate (wrong key, random bytes, a replayed salt) gets no answer and no early
//! close: it is read and discarded until the idle timeout, with one log line, and counts
//! towards a ban of its source. The cipher state for the reply direction is only built once
//! the client has authenticated.
//!
//! UDP: `salt | seal(ADDRESS | data)` each way; a packet that fails is dropped silently and
//! never counts towards a ban (UDP sources can be forged to get a victim banned).

use super::{
    packet_nonce, random_id, recv_whole, send_now, BoxFuture, Datagram, DatagramFront, Handshake,
    Inbound, Ingress, Peer, Request,
};
use crate::policy::assoc::AssocTable;
use crate::policy::ban::{Ban, BanConfig};
use crate::proto::address::{self, Address};
use crate::proto::cipher::{MasterKey, Method, MAX_SALT_LEN, TAG_LEN};
use crate::proto::handshake::{Next, Probe, ServerHandshake, Step};
use crate::proto::replay::ReplayFilter;
use crate::proto::ss2022::handshake::RequestHandshake;
use crate::proto::ss2022::identity::Users;
use crate::proto::ss2022::salts::SaltPool;
use crate::proto::ss2022::session::{server_prefix_len, ServerSession};
use crate::proto::ss2022::udp::{open_identity, open_separate_header, UdpCipher, NONCE_LEN};
use crate::proto::ss2022::IDENTITY_LEN;
use crate::proto::ss2022::{self, Psk};
use crate::proto::stream::Opening;
use crate::proto::{udp, ParseError};
use crate::relay::pool::{Block, Jumbo, Parked, Pool, BLOCK_SIZE};
use crate::rt::{self, Async, Timer};
use crate::sys::{self, random_salt};
use futures_lite::{future, AsyncReadExt};
use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::ops::{Deref, DerefMut, Range};
use std::rc::Rc;
use std::time::Duration;

/// The server's memory of its clients, shared by its TCP and UDP sides and every listener.
pub struct Guard {
    replay: RefCell<ReplayFilter>,
    /// UDP has a filter of its own: every datagram brings a salt, and at a high packet rate a
    /// shared filter would forget TCP salts within minutes.
    replay_udp: RefCell<ReplayFilter>,
    /// Shadowsocks 2022 request salts of the last minute.
    salts: RefCell<SaltPool>,
    ban: RefCell<Ban>,
}

impl Guard {
    pub fn new(replay_capacity: usize, ban: BanConfig) -> Guard {
        Guard {
            replay: RefCell::new(ReplayFilter::new(replay_capacity)),
            replay_udp: RefCell::new(ReplayFilter::new(replay_capacity / 4)),
            salts: RefCell::new(SaltPool::new(replay_capacity)),
            ban: RefCell::new(Ban::new(ban)),
        }
    }

    fn banned(&self, ip: IpAddr) -> bool {
        self.ban.borrow_mut().is_banned(ip, rt::now())
    }

    /// Counts an authentication failure; logs once when it starts a ban.
    fn failed(&self, ip: IpAddr) {
        if self.ban.borrow_mut().record_failure(ip, rt::now()) {
            log::warn!(
                "{ip}: too many failed authentications; its failures are closed at once for a \
                 while (it may still authenticate)"
            );
        }
    }
}

pub struct Shadowsocks {
    pub method: Method,
    pub key: MasterKey,
    pub pool: Rc<Pool>,
    pub guard: Rc<Guard>,
    pub timeout: Duration,
    /// Time for the salt and first chunk to arrive.
    pub handshake_timeout: Duration,
    /// A multi-user Shadowsocks 2022 server's users.
    pub users: Option<Rc<Users>>,
}

/// Why the first chunk did not yield a target.
enum FirstError {
    Probe(Probe),
    /// An authenticated client sent something unusable.
    Request(ParseError),
    /// An authenticated Shadowsocks 2022 client sent a header that breaks the rules.
    Request2022(ss2022::Error),
    /// Refused for want of room (the salt store full, no buffer for a long header): why.
    Busy(&'static str),
    Io(io::Error),
    Closed,
    TimedOut,
}

/// The decrypted request: the target, the client's first payload and the ciphertext received
/// past the request, parked.
struct First {
    target: Address,
    early: Parked,
    /// The user a multi-user server's request came from.
    user: Option<Box<str>>,
}

impl Ingress for Shadowsocks {
    fn open<'a>(
        &'a self,
        client: &'a Async<TcpStream>,
        peer: SocketAddr,
        _handshake: &'a dyn Handshake,
    ) -> BoxFuture<'a, Option<Inbound>> {
        Box::pin(async move {
            // A banned source may still authenticate (a legitimate client behind the same
            // NAT); only its failures are not held.
            let banned = self.guard.banned(peer.ip());
            // In an allocation of its own: the head buffer and the handshake are gone by the time a
            // probe is held until idle.
            let read = Box::pin(future::or(self.read_request(client), async {
                Timer::after(self.handshake_timeout).await;
                Err(FirstError::TimedOut)
            }))
            .await;
            let (first, hs) = match read {
                Ok(x) => x,
                Err(FirstError::Probe(_) | FirstError::TimedOut) if banned => {
                    log::debug!("{peer}: failed again while banned; closed");
                    return None;
                }
                Err(FirstError::Probe(why)) => {
                    self.guard.failed(peer.ip());
                    log::warn!("{peer}: {why}; holding the connection until it goes idle");
                    discard_until_idle(client, self.timeout).await;
                    return None;
                }
                Err(FirstError::TimedOut) => {
                    // Silence, a truncated salt or a trickle: a failure like a wrong key.
                    self.guard.failed(peer.ip());
                    log::warn!(
                        "{peer}: no complete first chunk within {} s; holding the connection \
                         until it goes idle",
                        self.handshake_timeout.as_secs()
                    );
                    discard_until_idle(client, self.timeout).await;
                    return None;
                }
                Err(FirstError::Request(e)) => {
                    log::warn!("{peer}: bad request header: {e}");
                    return None;
                }
                Err(FirstError::Request2022(e)) => {
                    log::warn!("{peer}: bad request header: {e}");
                    return None;
                }
                Err(FirstError::Busy(why)) => {
                    log::warn!("{peer}: refused: {why}");
                    return None;
                }
                Err(FirstError::Io(e)) => {
                    log::debug!("{peer}: {e}");
                    return None;
                }
                Err(FirstError::Closed) => {
                    log::debug!("{peer}: closed before a request");
                    return None;
                }
            };
            let First {
                target,
                early,
                user,
            } = first;
            let who = match user {
                Some(u) => format!("{peer} ({u}) -> {target}"),
                None => format!("{peer} -> {target}"),
            };
            Some(Inbound {
                who,
                request: Request::Direct {
                    target: Box::new(target),
                    early,
                    dec: Box::new(hs),
                },
            })
        })
    }
}

/// ss-server's handshake of either edition: both are fed the same way.
enum Hello {
    Aead(ServerHandshake),
    Ss2022(RequestHandshake),
}

impl Hello {
    fn head_len(&self) -> usize {
        match self {
            Hello::Aead(hs) => hs.head_len(),
            Hello::Ss2022(hs) => hs.head_len(),
        }
    }

    fn element_len(&self) -> usize {
        match self {
            Hello::Aead(hs) => hs.element_len(),
            Hello::Ss2022(hs) => hs.element_len(),
        }
    }

    fn handle(&mut self, input: &mut [u8], guard: &Guard) -> Step {
        match self {
            Hello::Aead(hs) => hs.handle(input, &mut guard.replay.borrow_mut()),
            Hello::Ss2022(hs) => hs.handle(input, &mut guard.salts.borrow_mut(), rt::unix_now()),
        }
    }

    fn into_opening(self) -> Option<Opening> {
        match self {
            Hello::Aead(hs) => Some(Opening::Aead(hs.into_decryptor())),
            Hello::Ss2022(hs) => hs.into_opener().map(Opening::Ss2022),
        }
    }
}

/// Where the request's body is read: a pool block, or a jumbo buffer for a Shadowsocks 2022
/// header longer than a block.
enum Room {
    Block(Block),
    Jumbo(Jumbo),
}

impl Deref for Room {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Room::Block(b) => b,
            Room::Jumbo(j) => j,
        }
    }
}

impl DerefMut for Room {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Room::Block(b) => b,
            Room::Jumbo(j) => j,
        }
    }
}

/// Why a long Shadowsocks 2022 header was refused.
const NO_ROOM: &str = "no buffer memory left for a long request header (all spilled)";

/// Longest head: a 32-byte salt, an identity header and a sealed 2022 fixed header.
const HEAD_MAX: usize = MAX_SALT_LEN + ss2022::IDENTITY_LEN + 11 + TAG_LEN;

impl Shadowsocks {
    /// Reads until the request authenticates and names a target.
    async fn read_request(
        &self,
        client: &Async<TcpStream>,
    ) -> Result<(First, Opening), FirstError> {
        let mut hs = match self.method.ss2022() {
            None => Hello::Aead(ServerHandshake::new(self.method, &self.key)),
            // The config checked the key's length.
            Some(m) => Hello::Ss2022(RequestHandshake::new(
                &Psk::from_bytes(m, self.key.as_bytes())
                    .map_err(|_| FirstError::Probe(Probe::BadTag))?,
                self.users.clone(),
            )),
        };
        // Until the head (salt and the first sealed length or fixed header) authenticates,
        // read only it, into a small buffer: a prober without the key must not hold a block.
        let mut head = [0u8; HEAD_MAX];
        let head = head
            .get_mut(..hs.head_len())
            .ok_or(FirstError::Probe(Probe::BadChunk))?;
        (&*client)
            .read_exact(head)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => FirstError::Closed,
                _ => FirstError::Io(e),
            })?;
        let step = hs.handle(head, &self.guard);
        match decided(step.next, 0) {
            None => {}
            Some(Err(e)) => return Err(e),
            // The head holds no payload, so no request either.
            Some(Ok(_)) => return Err(FirstError::Probe(Probe::BadChunk)),
        }
        // Only a key holder gets here. Even so, take a block only once the whole first chunk
        // (or 2022 header) is queued, so slow or stalled clients cannot pin the pool while it
        // trickles in. Usually it came with the salt: then no SO_RCVLOWAT round trip is needed.
        let need = hs.element_len();
        wait_queued(client, need).await?;
        let mut room = if need > BLOCK_SIZE {
            Room::Jumbo(self.pool.take_jumbo().ok_or(FirstError::Busy(NO_ROOM))?)
        } else {
            Room::Block(self.pool.take().await)
        };
        let (mut filled, mut start) = (0, 0);
        loop {
            let free = room.len() - filled;
            match client.try_read_with(|mut s| s.read(&mut room[filled..])) {
                Ok(0) => return Err(FirstError::Closed),
                Ok(n) => {
                    if n < free {
                        // Everything queued was read: the relay waits for more, no read first.
                        client.drained();
                    }
                    filled += n;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    client.readable().await.map_err(FirstError::Io)?;
                    continue;
                }
                Err(e) => return Err(FirstError::Io(e)),
            }
            let step = hs.handle(&mut room[start..filled], &self.guard);
            let at = start;
            start += step.consumed;
            match decided(step.next, at) {
                None if filled < room.len() => {
                    client.readable().await.map_err(FirstError::Io)?;
                }
                None => return Err(FirstError::Probe(Probe::BadChunk)),
                Some(Ok((target, early))) => {
                    let early = match room {
                        Room::Block(block) => Parked::new(&self.pool, block, early, start..filled),
                        Room::Jumbo(big) => {
                            Parked::spilled(&self.pool, &big[early], &big[start..filled])
                                .ok_or(FirstError::Busy(NO_ROOM))?
                        }
                    };
                    let user = match &hs {
                        Hello::Ss2022(h) => h.user_name().map(Box::from),
                        Hello::Aead(_) => None,
                    };
                    let dec = hs
                        .into_opening()
                        .ok_or(FirstError::Probe(Probe::BadChunk))?;
                    return Ok((
                        First {
                            target,
                            early,
                            user,
                        },
                        dec,
                    ));
                }
                Some(Err(e)) => return Err(e),
            }
        }
    }
}

/// Waits until `need` bytes are queued on `client` (SO_RCVLOWAT where it works), so a pool
/// block is lent only for a request that has wholly arrived.
async fn wait_queued(client: &Async<TcpStream>, need: usize) -> Result<(), FirstError> {
    if sys::bytes_queued(client.get_ref()).map_err(FirstError::Io)? < need {
        let lowat = sys::set_recv_lowat(client.get_ref(), need).is_ok();
        client.queued(need).await.map_err(FirstError::Io)?;
        if lowat {
            let _ = sys::set_recv_lowat(client.get_ref(), 1);
        }
    }
    Ok(())
}

/// What a handshake step decided, with the early payload's range moved by `at` (where the
/// step's input began); `None` while it needs more bytes.
#[allow(clippy::type_complexity)]
fn decided(next: Next, at: usize) -> Option<Result<(Address, Range<usize>), FirstError>> {
    match next {
        Next::NeedMore(_) => None,
        Next::Probe(why) => Some(Err(FirstError::Probe(why))),
        Next::BadRequest(e) => Some(Err(FirstError::Request(e))),
        Next::Refused(e) => Some(Err(FirstError::Request2022(e))),
        Next::Busy => Some(Err(FirstError::Busy(
            "--replay-capacity new Shadowsocks 2022 sessions in the last minute (the salts \
             remembered); raise it if this server is that busy",
        ))),
        Next::Connect { target, early } => Some(Ok((target, at + early.start..at + early.end))),
    }
}

/// Reads and drops whatever arrives until nothing has for `timeout`, so a prober learns
/// neither where authentication failed nor how many bytes it took.
async fn discard_until_idle(client: &Async<TcpStream>, timeout: Duration) {
    let mut sink = [0u8; 512];
    loop {
        let read = future::or(async { Some((&*client).read(&mut sink).await) }, async {
            Timer::after(timeout).await;
            None
        })
        .await;
        match read {
            Some(Ok(n)) if n > 0 => continue,
            _ => return,
        }
    }
}

/// Shadowsocks packets on the server's UDP socket.
pub struct ShadowsocksDatagrams {
    socket: Async<UdpSocket>,
    method: Method,
    key: MasterKey,
    guard: Rc<Guard>,
    /// Shadowsocks 2022: the client sessions, by client session id.
    sessions: Option<Sessions>,
}

impl Sessions {
    /// The packet cipher of `user`'s sessions, or the server's own.
    fn cipher(&self, user: Option<usize>) -> &UdpCipher {
        user.and_then(|i| Some(&self.users.as_ref()?.get(i)?.udp))
            .unwrap_or(&self.udp)
    }
}

/// A Shadowsocks 2022 server's client sessions: bounded like the relay's associations, and
/// those that were answered kept ahead of those never answered when full.
struct Sessions {
    udp: UdpCipher,
    users: Option<Rc<Users>>,
    /// Keyed like the relay's associations: one hash table type less in the binary.
    table: RefCell<AssocTable<Session, Peer>>,
}

struct Session {
    state: ServerSession,
    /// On a multi-user server, the user whose key the session is under.
    user: Option<usize>,
    /// Where the client's last authenticated packet came from: replies go there, so a client
    /// whose address changed keeps its session.
    addr: SocketAddr,
}

impl ShadowsocksDatagrams {
    /// `capacity` sessions at most (Shadowsocks 2022), each dropped after `timeout` idle.
    pub fn new(
        socket: Async<UdpSocket>,
        method: Method,
        key: MasterKey,
        guard: Rc<Guard>,
        capacity: usize,
        timeout: Duration,
        users: Option<Rc<Users>>,
    ) -> ShadowsocksDatagrams {
        let sessions = method
            .ss2022()
            .and_then(|m| Psk::from_bytes(m, key.as_bytes()).ok())
            .map(|psk| Sessions {
                udp: UdpCipher::new(&psk),
                users,
                table: RefCell::new(AssocTable::new(capacity, timeout)),
            });
        ShadowsocksDatagrams {
            socket,
            method,
            key,
            guard,
            sessions,
        }
    }

    /// A Shadowsocks 2022 packet: its session found (or made, once it authenticated), its
    /// packet id checked against the session's window.
    fn receive_2022(
        &self,
        sessions: &Sessions,
        client: SocketAddr,
        packet: &mut [u8],
        at: usize,
    ) -> Option<Datagram> {
        let sep = match open_separate_header(&sessions.udp, packet) {
            Ok(sep) => sep,
            Err(why) => {
                log::debug!("udp: {client}: {why}");
                return None;
            }
        };
        // A multi-user server: the identity header names the user, whose key opens the rest.
        let (packet, at, user) = match &sessions.users {
            None => (packet, at, None),
            Some(users) => {
                let named = open_identity(&sessions.udp, packet)
                    .ok()
                    .and_then(|hash| users.find(&hash));
                let (Some((index, _)), Some(rest)) = (named, packet.get_mut(IDENTITY_LEN..)) else {
                    log::debug!("udp: {client}: no user of this server");
                    return None;
                };
                (rest, at + IDENTITY_LEN, Some(index))
            }
        };
        let udp = sessions.cipher(user);
        let (now, unix) = (rt::now(), rt::unix_now());
        let mut table = sessions.table.borrow_mut();
        let peer = Peer::Session(sep.session_id);
        let opened = match table.get_mut(&peer, now) {
            Some(s) if s.user != user => Err(ss2022::Error::SessionMismatch),
            Some(s) => s
                .state
                .open(udp, sep, packet, unix)
                .inspect(|_| s.addr = client),
            None => {
                let Ok(id) = random_id() else {
                    log::error!("udp: the system random number generator failed");
                    return None;
                };
                ServerSession::open_first(udp, sep, packet, unix, id).map(|(state, p)| {
                    let gone = table.insert(
                        peer,
                        Session {
                            state,
                            addr: client,
                            user,
                        },
                        now,
                    );
                    drop(gone);
                    p
                })
            }
        };
        drop(table);
        match opened {
            Ok(p) => Some(Datagram {
                client: peer,
                target: p.address,
                data: at + p.payload.start..at + p.payload.end,
            }),
            // Only a key holder (or a replay of one) gets past the tag.
            Err(why @ (ss2022::Error::PacketId(_) | ss2022::Error::ClockSkew { .. })) => {
                log::warn!("udp: {client}: dropped: {why}");
                None
            }
            Err(why) => {
                log::debug!("udp: {client}: {why}");
                None
            }
        }
    }

    /// A reply to a Shadowsocks 2022 client session, sent where it was last heard from.
    fn reply_2022(
        &self,
        sessions: &Sessions,
        client: Peer,
        from: &Address,
        buf: &mut [u8],
        data: Range<usize>,
    ) -> io::Result<()> {
        let now = rt::now();
        let nonce = packet_nonce(&sessions.udp)?;
        let mut table = sessions.table.borrow_mut();
        let Some(session) = table.get_mut(&client, now) else {
            return Err(io::Error::other("session expired"));
        };
        let start = data
            .start
            .saturating_sub(server_prefix_len(sessions.udp.method(), from));
        let Some(packet) = buf.get_mut(start..data.end + TAG_LEN) else {
            return Ok(());
        };
        // A user's answers are under the user's key, separate header included.
        session
            .state
            .seal(
                sessions.cipher(session.user),
                from,
                rt::unix_now(),
                &nonce,
                packet,
            )
            .map_err(|e| io::Error::other(e.to_string()))?;
        let addr = session.addr;
        table.assure(&client, now);
        drop(table);
        send_now(&self.socket, packet, addr)
    }
}

/// Longest address a reply carries: the remote's IP, an IPv6 one at most.
const REPLY_ADDR_ROOM: usize = 19;

impl DatagramFront for ShadowsocksDatagrams {
    fn socket(&self) -> &Async<UdpSocket> {
        &self.socket
    }

    fn receive(&self, buf: &mut [u8], at: usize) -> io::Result<Option<Datagram>> {
        let Some((n, client)) = recv_whole(&self.socket, buf, at)? else {
            return Ok(None);
        };
        if self.guard.banned(client.ip()) {
            return Ok(None);
        }
        let packet = &mut buf[at..at + n];
        if let Some(sessions) = &self.sessions {
            return Ok(self.receive_2022(sessions, client, packet, at));
        }
        let plain = match udp::open(self.method, &self.key, packet) {
            Ok(r) => r,
            Err(why) => {
                log::debug!("udp: {client}: {why}");
                return Ok(None);
            }
        };
        let salt = &packet[..self.method.salt_len()];
        if self.guard.replay_udp.borrow_mut().check_and_insert(salt) {
            log::debug!("udp: {client}: replayed salt");
            return Ok(None);
        }
        match Address::parse(&packet[plain.clone()]) {
            Ok((target, used)) => Ok(Some(Datagram {
                client: Peer::Addr(client),
                target,
                data: at + plain.start + used..at + plain.end,
            })),
            Err(e) => {
                log::debug!("udp: {client}: bad address: {e}");
                Ok(None)
            }
        }
    }

    fn reply_headroom(&self) -> usize {
        // The larger of a salt and Shadowsocks 2022's nonce, separate header, type, timestamp,
        // client session id and padding length.
        (MAX_SALT_LEN).max(NONCE_LEN + 16 + 1 + 8 + 8 + 2) + REPLY_ADDR_ROOM
    }

    fn reply(
        &self,
        client: Peer,
        from: &Address,
        buf: &mut [u8],
        data: Range<usize>,
    ) -> io::Result<()> {
        if let Some(sessions) = &self.sessions {
            return self.reply_2022(sessions, client, from, buf, data);
        }
        let client = client.addr()?;
        let salt_len = self.method.salt_len();
        let plain_at = data.start - from.wire_len().min(address::MAX_LEN);
        let _ = from.write_to(&mut buf[plain_at..data.start]);
        let mut salt = [0u8; MAX_SALT_LEN];
        random_salt(&mut salt[..salt_len]).map_err(|e| io::Error::other(e.to_string()))?;
        let Some(packet) = buf.get_mut(plain_at - salt_len..data.end + TAG_LEN) else {
            return Ok(());
        };
        udp::seal(self.method, &self.key, &salt, packet)
            .map_err(|e| io::Error::other(e.to_string()))?;
        send_now(&self.socket, packet, client)
    }
}
