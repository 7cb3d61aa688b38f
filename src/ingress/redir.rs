//! ss-redir's front doors: connections and datagrams that the firewall diverted to the local
//! port, each sent through the server to where it was going.
//!
//! ```text
//! TCP REDIRECT  nat rewrote the destination    → SO_ORIGINAL_DST (conntrack) is the target
//! TCP TPROXY    delivered to a transparent listener → the accepted socket's local address
//! UDP TPROXY    delivered to a transparent socket   → the IP_ORIGDSTADDR control message;
//!               replies leave from a transparent socket bound to that address
//! ```
//!
//! One listener on `::` serves both families for all three: IPv4 peers and destinations
//! arrive as IPv4-mapped addresses and are unmapped here, so an IPv4 destination is asked of
//! IPv4 conntrack and answered from an IPv4 socket.
//!
//! A destination that is ss-redir's own port on an address of this host means the client
//! reached the port directly, without a rule: relaying it would loop, so it is refused.

use super::{
    BoxFuture, Datagram, DatagramFront, Handshake, Inbound, Ingress, Peer, Prefix, Request, Stray,
    Strays,
};
use crate::policy::assoc::AssocTable;
use crate::policy::throttle::{skipped_note, Throttle};
use crate::proto::address::Address;
use crate::rt::{self, Async};
use crate::rt::{LocalExecutor, Task};
use crate::sys::{self, OrigDstBuf};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Warnings a LAN host can repeat at will: at most one a second per cause.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// How a TCP listener's connections were diverted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Divert {
    Redirect,
    Tproxy,
}

pub struct Redir {
    divert: Divert,
    port: u16,
    no_destination: Throttle,
    direct: Throttle,
}

impl Redir {
    /// `port`: the port the listener is bound to.
    pub fn new(divert: Divert, port: u16) -> Redir {
        Redir {
            divert,
            port,
            no_destination: Throttle::new(WARN_EVERY),
            direct: Throttle::new(WARN_EVERY),
        }
    }

    fn destination(&self, client: &TcpStream) -> io::Result<SocketAddr> {
        let found = match self.divert {
            Divert::Redirect => sys::original_dst(client),
            Divert::Tproxy => client.local_addr(),
        };
        found.map(unmapped)
    }
}

impl Ingress for Redir {
    fn open<'a>(
        &'a self,
        client: &'a Async<TcpStream>,
        peer: SocketAddr,
        _handshake: &'a dyn Handshake,
    ) -> BoxFuture<'a, Option<Inbound>> {
        Box::pin(async move {
            let peer = unmapped(peer);
            let target = match self.destination(client.get_ref()) {
                Ok(t) => t,
                Err(e) => {
                    if let Some(n) = self.no_destination.allow(rt::now()) {
                        log::warn!(
                            "tcp: {peer}: no original destination: {e}{}",
                            skipped_note(n)
                        );
                    }
                    return None;
                }
            };
            if is_own_port(target, self.port) {
                if let Some(n) = self.direct.allow(rt::now()) {
                    log::warn!(
                        "tcp: {peer} connected to ss-redir's port {target} directly, not through \
                         a redirect rule: closed{}",
                        skipped_note(n)
                    );
                }
                return None;
            }
            let target = Address::Ip(target);
            Some(Inbound {
                who: format!("{peer} -> {target}"),
                request: Request::ViaServer {
                    prefix: Prefix::Owned(Box::from(&target.to_wire()[..])),
                },
            })
        })
    }
}

/// Whether `target` is this process's own port on an address of this host.
fn is_own_port(target: SocketAddr, port: u16) -> bool {
    target.port() == port && sys::is_local_address(target.ip())
}

fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// TPROXY'd datagrams, and the transparent sockets their replies leave from.
///
/// A reply must come from the address the client sent to, or the client's stack drops it:
/// it leaves from a socket bound (transparently) to that address. Those sockets are kept in a
/// bounded table keyed by the address they impersonate, shared by every client that talks to
/// it and closed after the idle timeout. When the table is full the least recently used one
/// is closed, sockets that carried only the reply they were opened for first: one that carried
/// a second is assured, the address of a flow that keeps answering (a resolver, a game
/// server), which a spray of one-off replies (a peer-to-peer client's lookups) must not close.
/// They are read too: with the project's rules clients' datagrams always reach the
/// listener, but a rule that delivers UDP by socket lookup (`socket transparent 1`, common in
/// guides) hands a flow's later datagrams to the reply socket bound to its destination.
pub struct RedirDatagrams {
    socket: Async<UdpSocket>,
    port: u16,
    cmsg: RefCell<OrigDstBuf>,
    /// Keyed by `Peer::Addr`, like the relay's table: one hash table type less in the binary.
    replies: RefCell<AssocTable<Reply, Peer>>,
    strays: Rc<Strays>,
    ex: Rc<LocalExecutor>,
    last_sweep: Cell<Option<Instant>>,
    no_destination: Throttle,
    direct: Throttle,
    reply_failed: Throttle,
}

/// A reply socket and the task reading what clients send to it; dropping it cancels the task.
struct Reply {
    socket: Rc<Async<UdpSocket>>,
    _reader: Task<()>,
}

impl RedirDatagrams {
    /// `socket` from `sys::udp_tproxy_listener`; at most `capacity` reply sockets, each closed
    /// after `timeout` without a reply.
    pub fn new(
        socket: UdpSocket,
        capacity: usize,
        timeout: Duration,
        ex: Rc<LocalExecutor>,
    ) -> io::Result<Self> {
        let port = socket.local_addr()?.port();
        Ok(RedirDatagrams {
            socket: Async::new(socket)?,
            port,
            cmsg: RefCell::new(OrigDstBuf::new()),
            replies: RefCell::new(AssocTable::new(capacity.max(1), timeout)),
            strays: Rc::default(),
            ex,
            last_sweep: Cell::new(None),
            no_destination: Throttle::new(WARN_EVERY),
            direct: Throttle::new(WARN_EVERY),
            reply_failed: Throttle::new(WARN_EVERY),
        })
    }

    /// Reply sockets currently open.
    pub fn reply_sockets(&self) -> usize {
        self.replies.borrow().len()
    }

    /// Sends `data` to `client` from `from`'s transparent socket, opened when missing.
    fn send_from(&self, from: SocketAddr, client: SocketAddr, data: &[u8]) -> io::Result<()> {
        let now = rt::now();
        self.sweep(now);
        let existing = self
            .replies
            .borrow_mut()
            .get(&Peer::Addr(from), now)
            .map(|r| Rc::clone(&r.socket));
        let reused = existing.is_some();
        let socket = match existing {
            Some(s) => s,
            None => self.open_reply(from, now)?,
        };
        match socket.get_ref().send_to(data, client) {
            Ok(_) => {
                // Every socket here was opened for a reply, so one reply proves nothing; a
                // second one sent makes it a live flow's.
                if reused {
                    self.replies.borrow_mut().assure(&Peer::Addr(from), now);
                }
                Ok(())
            }
            // Full send buffer: dropped, as the network would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn open_reply(&self, from: SocketAddr, now: Instant) -> io::Result<Rc<Async<UdpSocket>>> {
        let socket = Rc::new(Async::new(sys::udp_tproxy_reply_socket(from)?)?);
        let reader = self.ex.spawn(read_strays(
            Rc::clone(&socket),
            from,
            Rc::clone(&self.strays),
        ));
        let reply = Reply {
            socket: Rc::clone(&socket),
            _reader: reader,
        };
        let gone = self
            .replies
            .borrow_mut()
            .insert(Peer::Addr(from), reply, now);
        if let Some((evicted, _)) = &gone {
            log::debug!("udp: reply socket table full, closed the one for {evicted}");
        }
        // Dropped outside the borrow: dropping a reply socket cancels its task.
        drop(gone);
        Ok(socket)
    }

    /// Closes reply sockets idle past the timeout, checked at most once a sweep period.
    fn sweep(&self, now: Instant) {
        let period = self.replies.borrow().sweep_period();
        let due = self
            .last_sweep
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= period);
        if due {
            self.last_sweep.set(Some(now));
            let gone = self.replies.borrow_mut().sweep(now);
            drop(gone);
        }
    }

    /// The next datagram a reply socket received, copied to `buf[at..]`.
    fn stray(&self, buf: &mut [u8], at: usize) -> io::Result<Option<Datagram>> {
        let Some(stray) = self.strays.pop() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let end = at.saturating_add(stray.data.len());
        let Some(room) = buf.get_mut(at..end) else {
            log::debug!("udp: {}: datagram too large, dropped", stray.client);
            return Ok(None);
        };
        room.copy_from_slice(&stray.data);
        Ok(Some(Datagram {
            client: Peer::Addr(stray.client),
            target: stray.target,
            data: at..end,
        }))
    }
}

/// What clients send to `target`'s reply socket, queued for the relay as if it had reached the
/// listener. Copied out at its exact size: this path is taken only under rules that deliver by
/// socket lookup, and must not hold a pool block per reply socket.
async fn read_strays(socket: Rc<Async<UdpSocket>>, target: SocketAddr, strays: Rc<Strays>) {
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let received = socket.try_read_with(|s| {
            let mut data = vec![0u8; sys::bytes_queued(s)?].into_boxed_slice();
            let (n, client) = s.recv_from(&mut data)?;
            Ok((data, n, client))
        });
        let (data, n, client) = match received {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                log::debug!("udp: reply socket for {target}: {e}");
                continue;
            }
        };
        if n != data.len() {
            continue;
        }
        let stray = Stray {
            client: unmapped(client),
            target: Address::Ip(target),
            data,
        };
        if !strays.push(stray) {
            log::debug!("udp: {client} -> {target}: queue full, dropped");
        }
    }
}

impl DatagramFront for RedirDatagrams {
    fn socket(&self) -> &Async<UdpSocket> {
        &self.socket
    }

    fn strays(&self) -> Option<&Strays> {
        Some(&self.strays)
    }

    fn receive(&self, buf: &mut [u8], at: usize) -> io::Result<Option<Datagram>> {
        let room = buf.get_mut(at..).unwrap_or_default();
        let received = {
            let mut cmsg = self.cmsg.borrow_mut();
            self.socket
                .try_read_with(|s| sys::recv_orig_dst(s, room, &mut cmsg))
        };
        let (n, client, target) = match received {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                if let Some(n) = self.no_destination.allow(rt::now()) {
                    log::warn!("udp: datagram dropped: {e}{}", skipped_note(n));
                }
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.stray(buf, at),
            Err(e) => return Err(e),
        };
        if is_own_port(target, self.port) {
            if let Some(n) = self.direct.allow(rt::now()) {
                log::warn!(
                    "udp: {client} sent to ss-redir's port {target} directly, not through a \
                     TPROXY rule: dropped{}",
                    skipped_note(n)
                );
            }
            return Ok(None);
        }
        Ok(Some(Datagram {
            client: Peer::Addr(client),
            target: Address::Ip(target),
            data: at..at + n,
        }))
    }

    fn reply_headroom(&self) -> usize {
        0
    }

    fn reply(
        &self,
        client: Peer,
        from: &Address,
        buf: &mut [u8],
        data: Range<usize>,
    ) -> io::Result<()> {
        let client = client.addr()?;
        let Address::Ip(from) = from else {
            // The server names the replying address as it got it: an IP for an IP target.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("reply from a name ({from}), not an address"),
            ));
        };
        let from = unmapped(*from);
        let data = buf.get(data).unwrap_or_default();
        self.send_from(from, client, data).or_else(|e| {
            if let Some(n) = self.reply_failed.allow(rt::now()) {
                log::warn!(
                    "udp: {client}: cannot reply from {from}: {e}{}",
                    skipped_note(n)
                );
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_unmapped() {
        let m: SocketAddr = "[::ffff:192.0.2.1]:53".parse().unwrap();
        assert_eq!(unmapped(m), "192.0.2.1:53".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        assert_eq!(unmapped(v6), v6);
    }

    #[test]
    fn own_port_on_a_local_address_is_ss_redir_itself() {
        assert!(is_own_port("127.0.0.1:1080".parse().unwrap(), 1080));
        assert!(!is_own_port("127.0.0.1:1081".parse().unwrap(), 1080));
        // A documentation address is not this host's: a remote service on the same port.
        assert!(!is_own_port("203.0.113.9:1080".parse().unwrap(), 1080));
    }
}
