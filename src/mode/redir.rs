//! ss-redir: connections and datagrams that nftables/iptables diverted to the local port
//! (REDIRECT or TPROXY) go through the server to where they were going.

use crate::config::Config;
use crate::ingress::redir::{Divert, Redir, RedirDatagrams};
use crate::serve::startup::Listeners;
use crate::serve::Context;
use crate::serve::{listener, Serving};
use std::net::SocketAddr;
use std::rc::Rc;

pub fn program(
    ctx: &Rc<Context>,
    cfg: &Config,
    addr: SocketAddr,
    l: Listeners,
) -> Result<Serving, String> {
    let divert = if cfg.tcp_tproxy {
        Divert::Tproxy
    } else {
        Divert::Redirect
    };
    let udp = l
        .udp
        .map(|socket| {
            RedirDatagrams::new(
                socket,
                cfg.limits.udp_assocs,
                cfg.timeout,
                Rc::clone(&ctx.ex),
            )
        })
        .transpose()
        .map_err(|e| format!("cannot start the UDP relay: {e}"))?
        .map(|front| Box::new(front) as _);
    let ingress = Rc::new(Redir::new(divert, addr.port()));
    Ok(listener(ctx, cfg, l.tcp, ingress, udp))
}
