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
use crate::proto::address::Address;
use crate::proto::cipher::{random_salt, MAX_SALT_LEN};
use crate::proto::replay::ReplayFilter;
use crate::proto::tcp::{Decryptor, Encryptor};
use crate::relay::ban::Ban;
use crate::relay::connect::connect_tcp;
use crate::relay::limit::Permit;
use crate::relay::server::{discard_until_idle, read_first, FirstError, ServerState};
use crate::relay::tcp::{relay, Ciphers};
use crate::relay::udp_server::UdpServer;
use crate::rt::{Async, Timer};
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

async fn handle(
    ctx: Rc<Context>,
    srv: Rc<ServerState>,
    client: Async<TcpStream>,
    peer: SocketAddr,
    _permit: Permit,
) {
    if srv.banned(peer.ip()) {
        log::debug!("{peer}: refused (banned)");
        return;
    }
    let mut ciphers = match ciphers(&ctx) {
        Some(c) => c,
        None => return,
    };
    let first = future::or(
        Box::pin(read_first(&ctx.pool, &srv, &client, &mut ciphers.dec)),
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
            Box::pin(discard_until_idle(&client, ctx.cfg.timeout)).await;
            return;
        }
        Err(FirstError::Request(e)) => {
            log::warn!("{peer}: bad request header: {e}");
            return;
        }
        Err(FirstError::Io(e)) => return log::debug!("{peer}: {e}"),
        Err(FirstError::Closed) => return log::debug!("{peer}: closed before a request"),
        Err(FirstError::TimedOut) => return log::debug!("{peer}: no request before the timeout"),
    };
    let (dest, parked) = first.park(&ctx.pool);
    let who = format!("{peer} -> {dest}");
    let target = match Box::pin(connect_target(&ctx, &srv, &dest)).await {
        Ok(t) => t,
        Err(e) => return log::warn!("{who}: {e}"),
    };
    drop(dest);
    log::debug!("{who}: connected");
    if !parked.early().is_empty() {
        if let Err(e) = target.write_all(parked.early()).await {
            return log::debug!("{who}: target: {e}");
        }
    }
    let pending = parked.into_pending(&ctx.pool).await;
    let result = relay(
        &target,
        &client,
        &mut ciphers,
        None,
        pending,
        &ctx.pool,
        ctx.cfg.timeout,
    )
    .await;
    log_end(&who, "client", result);
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
