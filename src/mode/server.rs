//! ss-server: Shadowsocks streams and packets in, their targets reached directly. Targets on
//! private ranges are refused unless configured; see `ingress::shadowsocks` for probes and bans.

use crate::config::Config;
use crate::dns::Resolver;
use crate::ingress::shadowsocks::{Guard, Shadowsocks, ShadowsocksDatagrams};
use crate::relay::direct::Targets;
use crate::serve::startup::{udp_socket, Listeners};
use crate::serve::Context;
use crate::serve::{listener, Serving};
use crate::sys::OutboundOpts;
use std::net::IpAddr;
use std::rc::Rc;

pub fn program(
    ctx: &Rc<Context>,
    cfg: &Config,
    guard: Rc<Guard>,
    l: Listeners,
) -> Result<Serving, String> {
    let udp = udp_socket(l.udp)?.map(|socket| {
        Box::new(ShadowsocksDatagrams::new(
            socket,
            cfg.method,
            cfg.key.clone(),
            Rc::clone(&guard),
            cfg.limits.udp_assocs,
            cfg.timeout,
            ctx.users.clone(),
        )) as _
    });
    let tcp = Shadowsocks {
        method: cfg.method,
        key: cfg.key.clone(),
        pool: Rc::clone(&ctx.pool),
        guard,
        timeout: cfg.timeout,
        handshake_timeout: cfg.handshake_timeout.min(cfg.timeout),
        users: ctx.users.clone(),
    };
    Ok(listener(ctx, cfg, l.tcp, Rc::new(tcp), udp))
}

/// The replay filters and ban list, shared by every listener.
pub fn guard(cfg: &Config) -> Rc<Guard> {
    Rc::new(Guard::new(cfg.server.replay_capacity, cfg.server.ban))
}

/// How targets are reached: the resolver, the policy and per-family outbound options.
pub fn targets(cfg: &Config, resolver: Rc<Resolver>) -> Rc<Targets> {
    let out = |bind_addr: Option<IpAddr>| OutboundOpts {
        fwmark: cfg.fwmark,
        interface: cfg.interface.clone(),
        bind_addr,
        no_delay: cfg.no_delay,
        fast_open: cfg.fast_open,
    };
    Rc::new(Targets {
        resolver,
        allow_private: cfg.server.allow_private_targets,
        out_v4: out(cfg.outbound_bind_v4.map(IpAddr::V4)),
        out_v6: out(cfg.outbound_bind_v6.map(IpAddr::V6)),
    })
}
