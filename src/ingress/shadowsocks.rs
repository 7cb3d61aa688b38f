//! ss-server's front door: AEAD Shadowsocks streams and packets from clients.
//!
//! TCP: the salt and the first chunk are read and checked by `proto::handshake`; the target it
//! names goes to the relay, with the client's first payload. A connection whose first chunk
//! does not authenticate (wrong key, random bytes, a replayed salt) gets no answer and no early
//! close: it is read and discarded until the idle timeout, with one log line, and counts
//! towards a ban of its source. The cipher state for the reply direction is only built once
//! the client has authenticated.
//!
//! UDP: `salt | seal(ADDRESS | data)` each way; a packet that fails is dropped silently and
//! never counts towards a ban (UDP sources can be forged to get a victim banned).

use super::{
    recv_whole, send_now, BoxFuture, Datagram, DatagramFront, Handshake, Inbound, Ingress, Request,
};
use crate::policy::ban::{Ban, BanConfig};
use crate::proto::address::{self, Address};
use crate::proto::cipher::{MasterKey, Method, MAX_SALT_LEN, TAG_LEN};
use crate::proto::handshake::{Next, Probe, ServerHandshake};
use crate::proto::replay::ReplayFilter;
use crate::proto::tcp::HEADER_LEN;
use crate::proto::{udp, ParseError};
use crate::relay::pool::{Block, Parked, Pool};
use crate::rt::{self, Async, Timer};
use crate::sys::{self, random_salt};
use futures_lite::{future, AsyncReadExt};
use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

/// The server's memory of its clients, shared by its TCP and UDP sides and every listener.
pub struct Guard {
    replay: RefCell<ReplayFilter>,
    /// UDP has a filter of its own: every datagram brings a salt, and at a high packet rate a
    /// shared filter would forget TCP salts within minutes.
    replay_udp: RefCell<ReplayFilter>,
    ban: RefCell<Ban>,
}

impl Guard {
    pub fn new(replay_capacity: usize, ban: BanConfig) -> Guard {
        Guard {
            replay: RefCell::new(ReplayFilter::new(replay_capacity)),
            replay_udp: RefCell::new(ReplayFilter::new(replay_capacity / 4)),
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
}

/// Why the first chunk did not yield a target.
enum FirstError {
    Probe(Probe),
    /// An authenticated client sent something unusable.
    Request(ParseError),
    Io(io::Error),
    Closed,
    TimedOut,
}

/// The decrypted first chunk, still in the block it arrived in.
struct First {
    target: Address,
    block: Block,
    /// Plaintext after the address: the client's first payload.
    early: Range<usize>,
    /// Ciphertext received past the first chunk.
    rest: Range<usize>,
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
                block,
                early,
                rest,
            } = first;
            Some(Inbound {
                who: format!("{peer} -> {target}"),
                request: Request::Direct {
                    target: Box::new(target),
                    early: Parked::new(&self.pool, block, early, rest),
                    dec: Box::new(hs.into_decryptor()),
                },
            })
        })
    }
}

impl Shadowsocks {
    /// Reads until the first chunk authenticates and names a target.
    async fn read_request(
        &self,
        client: &Async<TcpStream>,
    ) -> Result<(First, ServerHandshake), FirstError> {
        let mut hs = ServerHandshake::new(self.method, &self.key);
        // Until the first chunk's length authenticates, read only the salt and the sealed
        // length, into a small buffer: a prober without the key must not hold a pool block.
        let mut head = [0u8; MAX_SALT_LEN + HEADER_LEN];
        let head = &mut head[..hs.head_len()];
        (&*client)
            .read_exact(head)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => FirstError::Closed,
                _ => FirstError::Io(e),
            })?;
        let step = hs.handle(head, &mut self.guard.replay.borrow_mut());
        match decided(step.next, 0) {
            None => {}
            Some(Err(e)) => return Err(e),
            // The head holds no payload, so no request either.
            Some(Ok(_)) => return Err(FirstError::Probe(Probe::BadChunk)),
        }
        // Only a key holder gets here. Even so, take a block only once the whole first chunk is
        // queued, so slow or stalled clients cannot pin the pool while it trickles in.
        // Usually the whole chunk came with the salt: then no SO_RCVLOWAT round trip is needed.
        let need = hs.element_len();
        if sys::bytes_queued(client.get_ref()).map_err(FirstError::Io)? < need {
            let lowat = sys::set_recv_lowat(client.get_ref(), need).is_ok();
            client.queued(need).await.map_err(FirstError::Io)?;
            if lowat {
                let _ = sys::set_recv_lowat(client.get_ref(), 1);
            }
        }
        let mut block = self.pool.take().await;
        let (mut filled, mut start) = (0, 0);
        loop {
            let room = block.len() - filled;
            match client.try_read_with(|mut s| s.read(&mut block[filled..])) {
                Ok(0) => return Err(FirstError::Closed),
                Ok(n) => {
                    if n < room {
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
            let step = hs.handle(
                &mut block[start..filled],
                &mut self.guard.replay.borrow_mut(),
            );
            let at = start;
            start += step.consumed;
            match decided(step.next, at) {
                None if filled < block.len() => {
                    client.readable().await.map_err(FirstError::Io)?;
                }
                None => return Err(FirstError::Probe(Probe::BadChunk)),
                Some(Ok((target, early))) => {
                    let first = First {
                        target,
                        block,
                        early,
                        rest: start..filled,
                    };
                    return Ok((first, hs));
                }
                Some(Err(e)) => return Err(e),
            }
        }
    }
}

/// What a handshake step decided, with the early payload's range moved by `at` (where the
/// step's input began); `None` while it needs more bytes.
#[allow(clippy::type_complexity)]
fn decided(next: Next, at: usize) -> Option<Result<(Address, Range<usize>), FirstError>> {
    match next {
        Next::NeedMore(_) => None,
        Next::Probe(why) => Some(Err(FirstError::Probe(why))),
        Next::BadRequest(e) => Some(Err(FirstError::Request(e))),
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
    pub socket: Async<UdpSocket>,
    pub method: Method,
    pub key: MasterKey,
    pub guard: Rc<Guard>,
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
                client,
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
        MAX_SALT_LEN + REPLY_ADDR_ROOM
    }

    fn reply(
        &self,
        client: SocketAddr,
        from: &Address,
        buf: &mut [u8],
        data: Range<usize>,
    ) -> io::Result<()> {
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
