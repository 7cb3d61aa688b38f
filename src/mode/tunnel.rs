//! ss-tunnel: every connection or datagram on the local port goes to one fixed destination
//! (`-L host:port`) through the server.

use crate::config::Config;
use crate::ingress::tunnel::{Tunnel, TunnelDatagrams};
use crate::serve::startup::{udp_socket, Listeners};
use crate::serve::Context;
use crate::serve::{listener, Serving};
use std::rc::Rc;

pub fn program(ctx: &Rc<Context>, cfg: &Config, l: Listeners) -> Result<Serving, String> {
    let target = cfg
        .tunnel_addr
        .clone()
        .ok_or("ss-tunnel needs a destination: -L host:port or \"tunnel_address\"")?;
    let udp = udp_socket(l.udp)?.map(|socket| {
        let target = target.clone();
        Box::new(TunnelDatagrams { socket, target }) as _
    });
    Ok(listener(ctx, cfg, l.tcp, Rc::new(Tunnel::new(target)), udp))
}
