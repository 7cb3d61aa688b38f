//! ss-server: accepts Shadowsocks connections and datagrams, and relays them to the targets
//! they name.
//!
//! Probe resistance: a connection whose first chunk does not authenticate (wrong key, random
//! bytes, a replayed salt) gets no answer and no early close; it is read and discarded until
//! the idle timeout, with one log line. Sources that fail too often are refused for a while,
//! and targets on private ranges are refused unless configured.

use super::{accept_loop, log_end, Context, Listeners};
use crate::config::Config;
use crate::dns::Resolver;
use crate::policy::ban::Ban;
use crate::proto::address::Address;
use crate::proto::cipher::MAX_SALT_LEN;
use crate::proto::replay::ReplayFilter;
use crate::proto::tcp::{Decryptor, Encryptor};
use crate::relay::connect::connect_tcp;
use crate::relay::limit::Permit;
use crate::relay::server::{discard_until_idle, read_first, FirstError, ServerState};
use crate::relay::tcp::{relay, Ciphers, Pending};
use crate::relay::udp_server::UdpServer;
use crate::rt::{Async, Timer};
use crate::sys::random_salt;
use crate::sys::OutboundOpts;
use futures_lite::future;
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::rc::Rc;

pub async fn serve(
    ctx: Rc<Context>,
    srv: Rc<ServerState>,
    listeners: Listeners,
) -> Result<(), String> {
    let udp = match listeners.udp {
        Some(sock) => Some(
            UdpServer::new(
                sock,
                ctx.cfg.method,
                ctx.cfg.key.clone(),
                Rc::clone(&ctx.pool),
                Rc::clone(&srv),
                ctx.cfg.timeout,
                ctx.cfg.limits.udp_assocs,
                Rc::clone(&ctx.ex),
            )
            .map_err(|e| format!("cannot start the UDP relay: {e}"))?,
        ),
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
                    handle(ctx, Rc::clone(&srv), s, peer, permit)
                })
                .await
            }
            None => future::pending().await,
        }
    };
    future::or(tcp, udp).await
}

/// One client connection. The task keeps only what the relay needs: the request phase (the
/// first chunk with its block and target address, about 700 bytes of future) runs in an
/// allocation of its own that is freed before relaying starts, so an idle connection's task
/// fits the router allocator's 512-byte class instead of 2 KiB.
#[allow(clippy::manual_async_fn)] // see MANUAL_ASYNC in relay/tcp.rs
fn handle(
    ctx: Rc<Context>,
    srv: Rc<ServerState>,
    client: Async<TcpStream>,
    peer: SocketAddr,
    permit: Permit,
) -> impl std::future::Future<Output = ()> {
    async move {
        // Held until the connection ends: it counts against the connection cap.
        let _permit = permit;
        if srv.banned(peer.ip()) {
            log::debug!("{peer}: refused (banned)");
            return;
        }
        let Some(mut ciphers) = ciphers(&ctx) else {
            return;
        };
        let open = match Box::pin(open_request(&ctx, &srv, &client, peer, &mut ciphers)).await {
            Request::Opened(open) => open,
            Request::Probe => {
                return Box::pin(discard_until_idle(&client, ctx.cfg.timeout)).await;
            }
            Request::Ended => return,
        };
        let result = relay(
            &open.target,
            &client,
            &mut ciphers,
            None,
            open.pending,
            &ctx.pool,
            ctx.cfg.timeout,
        )
        .await;
        log_end(&open.who, "client", result);
    }
}

/// How the request phase ended.
enum Request {
    Opened(Opened),
    /// The first chunk did not authenticate: hold the connection open, reading nothing back.
    Probe,
    /// Closed, timed out, refused or failed (logged).
    Ended,
}

/// A request that authenticated and whose target answered.
struct Opened {
    target: Async<TcpStream>,
    /// Ciphertext the client sent past the first chunk.
    pending: Option<Pending>,
    /// "client -> target", for the log lines.
    who: String,
}

/// Reads and checks the first chunk, connects to the target it names and forwards the
/// client's first payload. Each way of ending here is logged once.
async fn open_request(
    ctx: &Context,
    srv: &ServerState,
    client: &Async<TcpStream>,
    peer: SocketAddr,
    ciphers: &mut Ciphers,
) -> Request {
    let first = future::or(
        read_first(&ctx.pool, srv, client, &mut ciphers.dec),
        async {
            Timer::after(ctx.cfg.timeout).await;
            Err(FirstError::TimedOut)
        },
    )
    .await;
    let first = match first {
        Ok(f) => f,
        Err(FirstError::Auth(why)) => {
            srv.failed(peer.ip());
            log::warn!("{peer}: {why}; holding the connection until it goes idle");
            return Request::Probe;
        }
        Err(FirstError::Request(e)) => {
            log::warn!("{peer}: bad request header: {e}");
            return Request::Ended;
        }
        Err(FirstError::Io(e)) => {
            log::debug!("{peer}: {e}");
            return Request::Ended;
        }
        Err(FirstError::Closed) => {
            log::debug!("{peer}: closed before a request");
            return Request::Ended;
        }
        Err(FirstError::TimedOut) => {
            log::debug!("{peer}: no request before the timeout");
            return Request::Ended;
        }
    };
    let (dest, parked) = first.park(&ctx.pool);
    let who = format!("{peer} -> {dest}");
    let target = match Box::pin(connect_target(ctx, srv, &dest)).await {
        Ok(t) => t,
        Err(e) => {
            log::warn!("{who}: {e}");
            return Request::Ended;
        }
    };
    drop(dest);
    log::debug!("{who}: connected");
    if !parked.early().is_empty() {
        if let Err(e) = target.write_all(parked.early()).await {
            log::debug!("{who}: target: {e}");
            return Request::Ended;
        }
    }
    let pending = parked.into_pending(&ctx.pool).await;
    Request::Opened(Opened {
        target,
        pending,
        who,
    })
}

fn ciphers(ctx: &Context) -> Option<Box<Ciphers>> {
    let mut salt = [0u8; MAX_SALT_LEN];
    if let Err(e) = random_salt(&mut salt) {
        log::error!("the system random number generator failed: {e}");
        return None;
    }
    Some(Box::new(Ciphers {
        enc: Encryptor::new(ctx.cfg.method, &ctx.cfg.key, &salt),
        dec: Decryptor::new(ctx.cfg.method, &ctx.cfg.key),
    }))
}

async fn connect_target(
    ctx: &Context,
    srv: &ServerState,
    target: &Address,
) -> Result<Async<TcpStream>, String> {
    let addr = srv.resolve(target).await?;
    connect_tcp(addr, srv.outbound(&addr), ctx.cfg.timeout)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// Builds the server's shared state from the config and its resolver: replay filter, ban
/// list, policy and per-family outbound options.
pub fn state(cfg: &Config, resolver: Rc<Resolver>) -> Rc<ServerState> {
    let out = |bind_addr: Option<IpAddr>| OutboundOpts {
        fwmark: cfg.fwmark,
        interface: cfg.interface.clone(),
        bind_addr,
        no_delay: cfg.no_delay,
        fast_open: cfg.fast_open,
    };
    Rc::new(ServerState {
        resolver,
        replay: RefCell::new(ReplayFilter::new(cfg.server.replay_capacity)),
        replay_udp: RefCell::new(ReplayFilter::new(cfg.server.replay_capacity / 4)),
        ban: RefCell::new(Ban::new(cfg.server.ban)),
        allow_private: cfg.server.allow_private_targets,
        out_v4: out(cfg.outbound_bind_v4.map(IpAddr::V4)),
        out_v6: out(cfg.outbound_bind_v6.map(IpAddr::V6)),
    })
}
