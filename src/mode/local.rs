//! ss-local: a SOCKS5 proxy (no authentication) whose CONNECTs and UDP datagrams travel
//! through the server. Domain targets are passed to the server unresolved.

use super::{accept_loop, relay_client, Context, Listeners};
use crate::proto::address::Address;
use crate::proto::socks5::{self, Command};
use crate::proto::{Invalid, ParseError};
use crate::relay::limit::Permit;
use crate::relay::udp::{Framing, UdpRelay};
use crate::rt::{Async, Timer};
use futures_lite::{future, AsyncReadExt};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;

pub async fn serve(ctx: Rc<Context>, listeners: Listeners) -> Result<(), String> {
    let udp = match listeners.udp {
        Some(sock) => {
            let c = &ctx.cfg;
            let relay = UdpRelay::new(
                sock,
                Framing::Socks5,
                c.method,
                c.key.clone(),
                Rc::clone(&ctx.pool),
                Rc::clone(&ctx.upstream),
                c.timeout,
                c.limits.udp_assocs,
                Rc::clone(&ctx.ex),
            )
            .map_err(|e| format!("cannot start the UDP relay: {e}"))?;
            Some(relay)
        }
        None => None,
    };
    let udp_port = match &udp {
        Some(r) => Some(r.local_addr().map_err(|e| e.to_string())?.port()),
        None => None,
    };
    let udp = async {
        match udp {
            Some(relay) => relay
                .serve()
                .await
                .map_err(|e| format!("UDP relay stopped: {e}")),
            None => future::pending().await,
        }
    };
    let tcp = async {
        match listeners.tcp {
            Some(l) => {
                accept_loop(ctx.clone(), l, move |ctx, s, peer, permit| {
                    handle(ctx, s, peer, udp_port, permit)
                })
                .await
            }
            None => future::pending().await,
        }
    };
    future::or(tcp, udp).await
}

/// What the SOCKS5 exchange asked for. The target is kept only in its encoded form, boxed:
/// whatever a connection's future holds by value it holds for its whole life.
enum Asked {
    Connect {
        target: Box<Address>,
        prefix: Box<[u8]>,
    },
    UdpAssociate,
}

#[derive(Debug)]
enum HandshakeError {
    Io(io::Error),
    Socks(ParseError),
    NoAcceptableMethod,
    TimedOut,
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// One SOCKS5 connection. The task keeps only what the relay needs: the handshake (its
/// 600-byte buffer) and the connection to the server run in an allocation of their own that
/// is freed once the relay starts.
#[allow(clippy::manual_async_fn)] // see MANUAL_ASYNC in relay/tcp.rs
fn handle(
    ctx: Rc<Context>,
    client: Async<TcpStream>,
    peer: SocketAddr,
    udp_port: Option<u16>,
    permit: Permit,
) -> impl std::future::Future<Output = ()> {
    async move {
        // Matched by reference: moving the fields out would keep them and the enum both in
        // the future.
        let opened = Box::pin(open(&ctx, &client, peer, udp_port)).await;
        match &opened {
            Opened::Connect {
                server,
                prefix,
                who,
            } => relay_client(&ctx, &client, server, prefix, who).await,
            Opened::UdpAssociate => associate(&client, peer, udp_port).await,
            Opened::Ended => {}
        }
        // Held until the connection ends: it counts against the connection cap.
        drop(permit);
    }
}

/// How the SOCKS5 exchange ended.
enum Opened {
    /// CONNECT, with the server connected and the client told so.
    Connect {
        server: Async<TcpStream>,
        /// The target address, encoded: it leaves with the salt.
        prefix: Box<[u8]>,
        who: String,
    },
    UdpAssociate,
    /// Failed or refused (logged, and the client answered where SOCKS5 has an answer).
    Ended,
}

/// The handshake, then for CONNECT the connection to the server and the reply.
async fn open(
    ctx: &Context,
    client: &Async<TcpStream>,
    peer: SocketAddr,
    udp_port: Option<u16>,
) -> Opened {
    let asked = future::or(handshake(client, udp_port.is_some()), async {
        Timer::after(ctx.cfg.timeout).await;
        Err(HandshakeError::TimedOut)
    })
    .await;
    match asked {
        Ok(Asked::Connect { target, prefix }) => {
            let who = format!("{peer} -> {target}");
            drop(target);
            match connect(ctx, client, &who).await {
                Some(server) => Opened::Connect {
                    server,
                    prefix,
                    who,
                },
                None => Opened::Ended,
            }
        }
        Ok(Asked::UdpAssociate) => Opened::UdpAssociate,
        Err(e) => {
            match e {
                HandshakeError::Io(e) => log::debug!("{peer}: SOCKS5 handshake: {e}"),
                HandshakeError::TimedOut => log::debug!("{peer}: SOCKS5 handshake timed out"),
                HandshakeError::NoAcceptableMethod => log::warn!(
                    "{peer}: SOCKS5 client offers no usable method (only no-auth is supported)"
                ),
                HandshakeError::Socks(e) => log::warn!("{peer}: bad SOCKS5 request: {e}"),
            }
            Opened::Ended
        }
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
                target: Box::new(req.address),
                prefix: prefix.into_boxed_slice(),
            })
        }
        Command::UdpAssociate if udp => Ok(Asked::UdpAssociate),
        other => {
            reply(client, socks5::REP_COMMAND_NOT_SUPPORTED, None).await?;
            log::debug!("SOCKS5 command {other:?} not supported");
            Err(HandshakeError::Io(io::Error::other("unsupported command")))
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

/// Connects to the server and tells the client how that went.
async fn connect(ctx: &Context, client: &Async<TcpStream>, who: &str) -> Option<Async<TcpStream>> {
    let server = match ctx.connect_server(who).await {
        Ok(server) => server,
        Err(e) => {
            let _ = reply(client, failure_code(&e), None).await;
            return None;
        }
    };
    if let Err(e) = reply(client, socks5::REP_SUCCEEDED, None).await {
        log::debug!("{who}: {e}");
        return None;
    }
    Some(server)
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
    log::debug!("{peer}: UDP associate via {bound:?}");
    let mut sink = [0u8; 64];
    while let Ok(n) = (&*client).read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}
