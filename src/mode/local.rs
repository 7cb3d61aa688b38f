//! ss-local: a SOCKS5 proxy whose CONNECTs and UDP datagrams travel through the server.

use crate::config::Config;
use crate::ingress::socks5::{Socks5, Socks5Datagrams};
use crate::serve::startup::{udp_socket, Listeners};
use crate::serve::Context;
use crate::serve::{listener, Serving};
use std::rc::Rc;

pub fn program(ctx: &Rc<Context>, cfg: &Config, l: Listeners) -> Result<Serving, String> {
    // UDP ASSOCIATE points clients at the relay: same address, same port.
    let udp_port = match &l.udp {
        Some(u) => Some(u.local_addr().map_err(|e| e.to_string())?.port()),
        None => None,
    };
    let udp = udp_socket(l.udp)?.map(|socket| Box::new(Socks5Datagrams { socket }) as _);
    let socks = Socks5 {
        udp_port,
        timeout: cfg.handshake_timeout.min(cfg.timeout),
    };
    Ok(listener(ctx, cfg, l.tcp, Rc::new(socks), udp))
}
