//! ss-tunnel: every connection or datagram on the local port goes to one fixed destination
//! (`-L host:port`) through the server.

use super::{accept_loop, relay_client, Context, Listeners};
use crate::proto::address::{self, Address};
use crate::relay::limit::Permit;
use crate::relay::udp::{Framing, UdpRelay};
use crate::rt::Async;
use futures_lite::future;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;

pub async fn serve(ctx: Rc<Context>, listeners: Listeners) -> Result<(), String> {
    let target = ctx
        .cfg
        .tunnel_addr
        .clone()
        .ok_or("ss-tunnel needs a destination: -L host:port or \"tunnel_address\"")?;
    let udp = match listeners.udp {
        Some(sock) => {
            let c = &ctx.cfg;
            let relay = UdpRelay::new(
                sock,
                Framing::Tunnel(Box::new(target.clone())),
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
                let target = Rc::new(Target {
                    wire: target.to_wire(),
                    addr: target.clone(),
                });
                accept_loop(ctx.clone(), l, move |ctx, s, peer, permit| {
                    forward(ctx, s, peer, Rc::clone(&target), permit)
                })
                .await
            }
            None => future::pending().await,
        }
    };
    future::or(tcp, udp).await
}

/// The fixed destination, encoded once: every connection sends the same address bytes, and a
/// copy of them (up to 259 bytes) in each connection's future would cost more than the rest
/// of it.
struct Target {
    addr: Address,
    wire: heapless::Vec<u8, { address::MAX_LEN }>,
}

#[allow(clippy::manual_async_fn)] // see MANUAL_ASYNC in relay/tcp.rs
fn forward(
    ctx: Rc<Context>,
    client: Async<TcpStream>,
    peer: SocketAddr,
    target: Rc<Target>,
    permit: Permit,
) -> impl std::future::Future<Output = ()> {
    async move {
        // Held until the connection ends: it counts against the connection cap.
        let _permit = permit;
        let who = format!("{peer} -> {}", target.addr);
        let Ok(server) = ctx.connect_server(&who).await else {
            return;
        };
        relay_client(&ctx, &client, &server, &target.wire, &who).await;
    }
}
