//! ss-local's front door: SOCKS5 (no authentication), CONNECT and UDP ASSOCIATE. Domain
//! targets are passed to the server unresolved.
//!
//! A UDP datagram is `00 00 FRAG | ADDRESS | DATA`; ADDRESS | DATA is exactly the Shadowsocks
//! plaintext, so the relay seals it where it was received.

use super::{
    recv_whole, send_now, BoxFuture, Datagram, DatagramFront, Handshake, Inbound, Ingress, Peer,
    Prefix, Request,
};
use crate::proto::address::Address;
use crate::proto::socks5::{self, Command};
use crate::proto::{Invalid, ParseError};
use crate::rt::{Async, Timer};
use futures_lite::{future, AsyncReadExt};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::ops::Range;
use std::time::Duration;

pub struct Socks5 {
    /// The UDP relay's port, when UDP is on: UDP ASSOCIATE points clients there.
    pub udp_port: Option<u16>,
    /// How long a client may take over its greeting and request.
    pub timeout: Duration,
}

#[derive(Debug)]
enum HandshakeError {
    Io(io::Error),
    Socks(ParseError),
    NoAcceptableMethod,
    Unsupported(Command),
    TimedOut,
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// What the exchange asked for; lives only in the request phase's own allocation.
#[allow(clippy::large_enum_variant)]
enum Asked {
    Connect { target: Address, prefix: Box<[u8]> },
    UdpAssociate,
}

impl Ingress for Socks5 {
    fn open<'a>(
        &'a self,
        client: &'a Async<TcpStream>,
        peer: SocketAddr,
        budget: &'a dyn Handshake,
    ) -> BoxFuture<'a, Option<Inbound>> {
        Box::pin(async move {
            let asked = future::or(handshake(client, self.udp_port.is_some()), async {
                Timer::after(self.timeout).await;
                Err(HandshakeError::TimedOut)
            })
            .await;
            match asked {
                Ok(Asked::Connect { target, prefix }) => Some(Inbound {
                    who: format!("{peer} -> {target}"),
                    request: Request::ViaServer {
                        prefix: Prefix::Owned(prefix),
                    },
                }),
                Ok(Asked::UdpAssociate) => {
                    // The handshake is over; the connection now only holds the association.
                    budget.settle();
                    associate(client, peer, self.udp_port).await;
                    None
                }
                Err(e) => {
                    match e {
                        HandshakeError::Io(e) => log::debug!("{peer}: SOCKS5 handshake: {e}"),
                        HandshakeError::TimedOut => log::debug!("{peer}: SOCKS5 handshake timed out"),
                        HandshakeError::Unsupported(c) => {
                            log::debug!("{peer}: SOCKS5 command {} not supported", match c {
                                socks5::Command::Connect => 1,
                                socks5::Command::Bind => 2,
                                socks5::Command::UdpAssociate => 3,
                                socks5::Command::Other(n) => n,
                            })
                        }
                        HandshakeError::NoAcceptableMethod => log::warn!(
                            "{peer}: SOCKS5 client offers no usable method (only no-auth is supported)"
                        ),
                        HandshakeError::Socks(e) => log::warn!("{peer}: bad SOCKS5 request: {e}"),
                    }
                    None
                }
            }
        })
    }

    fn answer<'a>(
        &'a self,
        client: &'a Async<TcpStream>,
        reached: Result<(), &'a io::Error>,
    ) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let code = match reached {
                Ok(()) => socks5::REP_SUCCEEDED,
                Err(e) => failure_code(e),
            };
            reply(client, code, None).await
        })
    }
}

/// Reads until `parse` succeeds on the buffered bytes; returns its value and what it used.
async fn read_parsed<T>(
    client: &Async<TcpStream>,
    buf: &mut [u8],
    filled: &mut usize,
    parse: impl Fn(&[u8]) -> Result<(T, usize), ParseError>,
) -> Result<(T, usize), HandshakeError> {
    loop {
        match parse(&buf[..*filled]) {
            Err(ParseError::NeedMore(_)) if *filled < buf.len() => {}
            Err(ParseError::NeedMore(_)) => {
                return Err(HandshakeError::Socks(ParseError::NeedMore(0)))
            }
            other => return other.map_err(HandshakeError::Socks),
        }
        let n = (&*client).read(&mut buf[*filled..]).await?;
        if n == 0 {
            return Err(HandshakeError::Io(ErrorKind::UnexpectedEof.into()));
        }
        *filled += n;
    }
}

async fn reply(client: &Async<TcpStream>, code: u8, bound: Option<SocketAddr>) -> io::Result<()> {
    let mut out = [0u8; socks5::MAX_REPLY_LEN];
    let n = socks5::write_reply(code, bound, &mut out);
    client.write_all(&out[..n]).await
}

async fn handshake(client: &Async<TcpStream>, udp: bool) -> Result<Asked, HandshakeError> {
    // Greeting (<= 257 bytes) and request (<= 262) plus anything pipelined after them.
    let mut buf = [0u8; 600];
    let mut filled = 0;
    let (no_auth, used) =
        read_parsed(client, &mut buf, &mut filled, socks5::parse_greeting).await?;
    if !no_auth {
        client
            .write_all(&[socks5::VERSION, socks5::METHOD_NONE_ACCEPTABLE])
            .await?;
        return Err(HandshakeError::NoAcceptableMethod);
    }
    client
        .write_all(&[socks5::VERSION, socks5::METHOD_NO_AUTH])
        .await?;
    buf.copy_within(used..filled, 0);
    filled -= used;
    let (req, used) = match read_parsed(client, &mut buf, &mut filled, socks5::parse_request).await
    {
        Err(HandshakeError::Socks(ParseError::Invalid(Invalid::AddressType(t)))) => {
            reply(client, socks5::REP_ADDRESS_TYPE_NOT_SUPPORTED, None).await?;
            return Err(HandshakeError::Socks(Invalid::AddressType(t).into()));
        }
        other => other?,
    };
    match req.command {
        Command::Connect => {
            // Anything the client pipelined after its request rides in the first chunk too.
            let mut prefix = Vec::with_capacity(req.address.wire_len() + filled - used);
            prefix.extend_from_slice(&req.address.to_wire());
            prefix.extend_from_slice(&buf[used..filled]);
            Ok(Asked::Connect {
                target: req.address,
                prefix: prefix.into_boxed_slice(),
            })
        }
        Command::UdpAssociate if udp => Ok(Asked::UdpAssociate),
        other => {
            reply(client, socks5::REP_COMMAND_NOT_SUPPORTED, None).await?;
            Err(HandshakeError::Unsupported(other))
        }
    }
}

/// The SOCKS5 reply code for a failed connection to the server.
fn failure_code(e: &io::Error) -> u8 {
    match e.kind() {
        ErrorKind::ConnectionRefused => socks5::REP_CONNECTION_REFUSED,
        ErrorKind::NetworkUnreachable => socks5::REP_NETWORK_UNREACHABLE,
        ErrorKind::HostUnreachable | ErrorKind::TimedOut => socks5::REP_HOST_UNREACHABLE,
        _ => socks5::REP_GENERAL_FAILURE,
    }
}

/// UDP ASSOCIATE: point the client at the UDP relay (same address, same port) and keep the TCP
/// connection open until the client closes it, as RFC 1928 asks.
async fn associate(client: &Async<TcpStream>, peer: SocketAddr, udp_port: Option<u16>) {
    let bound = client
        .get_ref()
        .local_addr()
        .ok()
        .zip(udp_port)
        .map(|(a, p)| SocketAddr::new(a.ip(), p));
    if reply(client, socks5::REP_SUCCEEDED, bound).await.is_err() {
        return;
    }
    match bound {
        Some(b) => log::debug!("{peer}: UDP associate via {b}"),
        None => log::debug!("{peer}: UDP associate refused"),
    }
    let mut sink = [0u8; 64];
    while let Ok(n) = (&*client).read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// SOCKS5 UDP on the relay's socket.
pub struct Socks5Datagrams {
    pub socket: Async<UdpSocket>,
}

impl DatagramFront for Socks5Datagrams {
    fn socket(&self) -> &Async<UdpSocket> {
        &self.socket
    }

    fn receive(&self, buf: &mut [u8], at: usize) -> io::Result<Option<Datagram>> {
        let Some((n, client)) = recv_whole(&self.socket, buf, at)? else {
            return Ok(None);
        };
        match socks5::parse_udp_header(&buf[at..at + n]) {
            Ok((target, header)) => Ok(Some(Datagram {
                client: Peer::Addr(client),
                target,
                data: at + header..at + n,
            })),
            Err(e) => {
                log::debug!("udp: {client}: dropped datagram: {e}");
                Ok(None)
            }
        }
    }

    fn reply_headroom(&self) -> usize {
        3 + crate::proto::address::MAX_LEN
    }

    fn reply(
        &self,
        client: Peer,
        from: &Address,
        buf: &mut [u8],
        data: Range<usize>,
    ) -> io::Result<()> {
        let client = client.addr()?;
        let start = data.start - socks5::udp_header_len(from);
        let _ = socks5::write_udp_header(from, &mut buf[start..data.start]);
        send_now(&self.socket, &buf[start..data.end], client)
    }
}
