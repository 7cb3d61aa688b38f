//! ss-tunnel's front door: every connection and datagram on the local port goes to one fixed
//! destination (`-L host:port`) through the server. Nothing is read before relaying: the
//! client's first bytes leave with the salt and the destination's address.

use super::{
    recv_whole, send_now, BoxFuture, Datagram, DatagramFront, Handshake, Inbound, Ingress, Peer,
    Prefix, Request,
};
use crate::proto::address::Address;
use crate::rt::Async;
use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::ops::Range;
use std::rc::Rc;

pub struct Tunnel {
    target: Address,
    /// The destination encoded once: every connection sends the same bytes, and a copy (up to
    /// 259 bytes) per connection would cost more than the rest of an idle connection.
    wire: Rc<[u8]>,
}

impl Tunnel {
    pub fn new(target: Address) -> Tunnel {
        Tunnel {
            wire: Rc::from(&target.to_wire()[..]),
            target,
        }
    }
}

impl Ingress for Tunnel {
    fn open<'a>(
        &'a self,
        _client: &'a Async<TcpStream>,
        peer: SocketAddr,
        _handshake: &'a dyn Handshake,
    ) -> BoxFuture<'a, Option<Inbound>> {
        Box::pin(async move {
            Some(Inbound {
                who: format!("{peer} -> {}", self.target),
                request: Request::ViaServer {
                    prefix: Prefix::Shared(Rc::clone(&self.wire)),
                },
            })
        })
    }
}

/// Bare payloads on the tunnel's UDP port, all to the one destination.
pub struct TunnelDatagrams {
    pub socket: Async<UdpSocket>,
    pub target: Address,
}

impl DatagramFront for TunnelDatagrams {
    fn socket(&self) -> &Async<UdpSocket> {
        &self.socket
    }

    fn receive(&self, buf: &mut [u8], at: usize) -> io::Result<Option<Datagram>> {
        let Some((n, client)) = recv_whole(&self.socket, buf, at)? else {
            return Ok(None);
        };
        Ok(Some(Datagram {
            client: Peer::Addr(client),
            target: self.target.clone(),
            data: at..at + n,
        }))
    }

    fn reply_headroom(&self) -> usize {
        0
    }

    fn reply(
        &self,
        client: Peer,
        _from: &Address,
        buf: &mut [u8],
        data: Range<usize>,
    ) -> io::Result<()> {
        send_now(&self.socket, &buf[data], client.addr()?)
    }
}
