//! The front doors: each program's inbound side, one module each, behind one small interface.
//!
//! A TCP [`Ingress`] turns an accepted connection into an [`Inbound`]: where the client wants
//! to go, what it sent past its request, and how its stream is framed from then on. Every
//! program then runs the same connection flow (`relay::connection`): a client mode's plaintext
//! goes sealed through the Shadowsocks server, ss-server's sealed stream goes plain to the
//! target. A [`DatagramFront`] is the same seam for UDP: how a datagram arrives (client,
//! target, payload) and how a reply leaves, for the one datagram relay (`relay::udp`).
//!
//! | program    | TCP ingress                 | UDP front                                  |
//! |------------|-----------------------------|--------------------------------------------|
//! | ss-local   | [`socks5::Socks5`]          | [`socks5::Socks5Datagrams`]                |
//! | ss-tunnel  | [`tunnel::Tunnel`]          | [`tunnel::TunnelDatagrams`]                |
//! | ss-redir   | [`redir::Redir`]            | [`redir::RedirDatagrams`]                  |
//! | ss-server  | [`shadowsocks::Shadowsocks`]| [`shadowsocks::ShadowsocksDatagrams`]      |

pub mod redir;
pub mod shadowsocks;
pub mod socks5;
pub mod tunnel;

use crate::proto::address::Address;
use crate::proto::ss2022;
use crate::proto::ss2022::udp::{UdpCipher, NONCE_LEN};
use crate::proto::stream::Opening;
use crate::relay::pool::Parked;
use crate::rt::Async;
use futures_lite::future;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::ops::{Deref, Range};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// What one accepted connection asked for.
pub struct Inbound {
    /// "client -> target", for the log lines of this connection.
    pub who: String,
    pub request: Request,
}

pub enum Request {
    /// A client mode's plaintext stream: the encoded target address and whatever the client
    /// sent past its request, which leave with the salt in the first write to the server.
    ViaServer { prefix: Prefix },
    /// ss-server: a sealed stream whose first chunk named `target`; `early` holds the client's
    /// first payload and the ciphertext read past that chunk.
    Direct {
        target: Box<Address>,
        early: Parked,
        dec: Box<Opening>,
    },
}

/// The bytes a client mode sends ahead of the client's data: made per connection (SOCKS5) or
/// shared by every connection (ss-tunnel's one destination, encoded once).
pub enum Prefix {
    Owned(Box<[u8]>),
    Shared(Rc<[u8]>),
}

impl Deref for Prefix {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Prefix::Owned(b) => b,
            Prefix::Shared(b) => b,
        }
    }
}

/// A boxed future: front doors are used as trait objects, so each program's flow is compiled
/// once (the request phase runs in an allocation of its own anyway).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A connection's place among those still in their handshake (`policy::handshakes`), which
/// give way when a source or the whole program has too many. The flow settles it when `open`
/// returns; a front door that keeps a connection open past its request (SOCKS5 UDP
/// ASSOCIATE) settles it first.
pub trait Handshake {
    fn settle(&self);
}

/// A program's TCP front door.
pub trait Ingress {
    /// Reads what `client` asks for. `None`: nothing to relay (refused, a probe held until it
    /// went idle, a SOCKS5 UDP association kept open until closed); already logged.
    fn open<'a>(
        &'a self,
        client: &'a Async<TcpStream>,
        peer: SocketAddr,
        handshake: &'a dyn Handshake,
    ) -> BoxFuture<'a, Option<Inbound>>;

    /// Tells the client whether its target could be reached (SOCKS5's reply); most ingresses
    /// have nothing to say.
    fn answer<'a>(
        &'a self,
        _client: &'a Async<TcpStream>,
        _reached: Result<(), &'a io::Error>,
    ) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Whom a datagram's association belongs to: a client address, or a Shadowsocks 2022 client
/// session, which stays the same when the client's address changes (NAT rebinding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    Addr(SocketAddr),
    Session(u64),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Addr(a) => a.fmt(f),
            Peer::Session(id) => write!(f, "session {id:016x}"),
        }
    }
}

impl Peer {
    /// The address a front that keys by address replies to.
    pub fn addr(self) -> io::Result<SocketAddr> {
        match self {
            Peer::Addr(a) => Ok(a),
            Peer::Session(_) => Err(io::Error::other("a session where an address was expected")),
        }
    }
}

/// One datagram as it arrived, in the block it was received into.
pub struct Datagram {
    pub client: Peer,
    pub target: Address,
    /// Where the payload lies in the block.
    pub data: Range<usize>,
}

/// A program's UDP front door: its listening socket, how datagrams arrive on it and how
/// replies leave.
pub trait DatagramFront {
    fn socket(&self) -> &Async<UdpSocket>;

    /// Datagrams that reached the program on other sockets than `socket()` and wait for
    /// `receive` (ss-redir's reply sockets); `None` for a front with one socket.
    fn strays(&self) -> Option<&Strays> {
        None
    }

    /// Receives one datagram into `buf[at..]` without waiting (`WouldBlock` when none is
    /// queued); `Ok(None)` for one that was dropped (malformed, refused; logged at debug).
    fn receive(&self, buf: &mut [u8], at: usize) -> io::Result<Option<Datagram>>;

    /// Bytes a reply needs in front of its data in the buffer (for a header or a salt).
    fn reply_headroom(&self) -> usize;

    /// Sends `buf[data]` to `client` as a reply from `from`, without waiting: a reply the
    /// socket cannot take now is dropped, as the network would. `buf[..data.start]` (at least
    /// `reply_headroom` bytes) and the tag room after `data` may be written over.
    fn reply(
        &self,
        client: Peer,
        from: &Address,
        buf: &mut [u8],
        data: Range<usize>,
    ) -> io::Result<()>;
}

/// A datagram that arrived on a socket other than the front's own, copied out of it.
pub struct Stray {
    pub client: SocketAddr,
    pub target: Address,
    pub data: Box<[u8]>,
}

/// A bounded queue of [`Stray`]s with one waiter, the relay's receive loop.
#[derive(Default)]
pub struct Strays {
    queue: RefCell<VecDeque<Stray>>,
    waiter: Cell<Option<Waker>>,
}

impl Strays {
    /// Datagrams queued at most; more are dropped, as a full socket buffer would.
    pub const MAX: usize = 64;

    /// Queues `stray` and wakes the receive loop; `false` when the queue was full.
    pub fn push(&self, stray: Stray) -> bool {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= Self::MAX {
            return false;
        }
        queue.push_back(stray);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
        true
    }

    pub fn pop(&self) -> Option<Stray> {
        self.queue.borrow_mut().pop_front()
    }

    /// Resolves once a datagram is queued.
    pub fn arrived(&self) -> impl Future<Output = io::Result<()>> + '_ {
        future::poll_fn(move |cx| {
            if self.queue.borrow().is_empty() {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        })
    }
}

/// Receives one datagram into `buf[at..]` without waiting: its length and sender, or `None`
/// for one that filled the buffer (it may have been cut short, so it is dropped).
pub fn recv_whole(
    socket: &Async<UdpSocket>,
    buf: &mut [u8],
    at: usize,
) -> io::Result<Option<(usize, SocketAddr)>> {
    let room = buf.len().saturating_sub(at);
    let (n, client) =
        socket.try_read_with(|s| s.recv_from(buf.get_mut(at..).unwrap_or_default()))?;
    if n == room {
        log::debug!("udp: {client}: datagram too large, dropped");
        return Ok(None);
    }
    Ok(Some((n, client)))
}

/// A fresh random 64-bit id (a Shadowsocks 2022 session id).
pub fn random_id() -> io::Result<u64> {
    let mut id = [0u8; 8];
    crate::sys::random_salt(&mut id).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(u64::from_ne_bytes(id))
}

/// The random nonce a Shadowsocks 2022 packet of `udp` needs: the ChaCha method's; the AES
/// methods take none (zeros, unused).
pub fn packet_nonce(udp: &UdpCipher) -> io::Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    if udp.method() == ss2022::Method::ChaCha20Poly1305 {
        crate::sys::random_salt(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    }
    Ok(nonce)
}

/// Sends one datagram if the socket takes it now.
pub fn send_now(socket: &Async<UdpSocket>, buf: &[u8], to: SocketAddr) -> io::Result<()> {
    socket.try_write_with(|s| s.send_to(buf, to)).map(drop)
}
