//! The TCP connection flow every program runs: accept, let the ingress read the request,
//! reach the far side, relay until both directions end.
//!
//! ```text
//! accept → ingress.open ─ ViaServer → connect to the server → ingress.answer → relay (plain client, sealed server)
//!                       └ Direct    → connect to the target → early payload → relay (plain target, sealed client)
//! ```
//!
//! A connection's task keeps only what the relay needs: the request phase (an ingress's
//! buffers, the target address, the connect) runs in an allocation of its own that is freed
//! when relaying starts, so an idle connection costs a few hundred bytes of future.

use super::{Context, Far, HANDSHAKES_PER_SOURCE};
use crate::ingress::{Handshake, Inbound, Ingress, Prefix, Request};
use crate::policy::handshakes::{Evicted, Ripe};
use crate::proto::cipher::MAX_SALT_LEN;
use crate::proto::stream::{Opening, Sealing};
use crate::relay::tcp::{relay, Ciphers, FirstWrite, Pending};
use crate::relay::upstream::{Credentials, Server, Upstream};
use crate::relay::RelayError;
use crate::rt::{self, Async, OwnedPermit, Timer};
use crate::sys::random_salt;
use futures_lite::future;
use std::cell::Cell;
use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// How long a client mode waits for the first payload so that it leaves with the address.
const FIRST_PAYLOAD_WAIT: Duration = Duration::from_millis(500);

/// How long accepting pauses after it failed (out of descriptors or memory); the warning
/// says it in words.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);

/// Accepts connections for ever, one task each, each holding a unit of the connection cap.
/// A new connection enters the handshake budget; when the cap is reached, the oldest
/// connection still in its handshake is dropped before the new one waits.
pub async fn serve(
    ctx: Rc<Context>,
    listener: TcpListener,
    ingress: Rc<dyn Ingress>,
) -> Result<(), String> {
    let listener = Async::new(listener).map_err(|e| format!("cannot register listener: {e}"))?;
    let mut pausing = false;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning on the error, and
                // say so once per episode.
                if !pausing {
                    log::warn!("accept: {e}; trying again every 0.2 s meanwhile");
                    pausing = true;
                }
                Timer::after(ACCEPT_PAUSE).await;
                continue;
            }
        };
        if pausing {
            log::info!("accepting connections again");
            pausing = false;
        }
        // The next connection is accepted only once this one has its permit: at most one
        // waits beyond the cap.
        let permit = match ctx.limit.try_acquire_owned() {
            Some(p) => p,
            None => wait_for_room(&ctx).await,
        };
        if ctx.no_delay {
            let _ = stream.get_ref().set_nodelay(true);
        }
        let cancel = Rc::new(Cancel::default());
        let (id, evicted) =
            ctx.handshakes
                .borrow_mut()
                .admit(peer.ip(), Rc::clone(&cancel), rt::now());
        match evicted {
            // Repeats are summarised by the logger.
            Some(Evicted::SameSource(victim)) => {
                log::warn!(
                    "{}: more than {HANDSHAKES_PER_SOURCE} connections in their handshake; \
                     dropping its oldest",
                    peer.ip()
                );
                victim.cancel();
            }
            Some(Evicted::Oldest(victim)) => {
                log::warn!(
                    "too many connections in their handshake (half of --max-conns); dropping \
                     the oldest"
                );
                victim.cancel();
            }
            None => {}
        }
        ctx.ex.spawn_detached(connection(
            Rc::clone(&ctx),
            Rc::clone(&ingress),
            stream,
            peer,
            permit,
            Ticket { id, cancel },
        ));
    }
}

/// At the connection cap, with a connection waiting: the oldest unfinished handshake gives
/// way once it is past its grace; with none, the connection waits for one to end.
async fn wait_for_room(ctx: &Rc<Context>) -> OwnedPermit {
    log::warn!(
        "connection cap (--max-conns {}) reached; the oldest connection still in its handshake \
         gives way, or new ones wait",
        ctx.max_conns
    );
    loop {
        let ripe = ctx.handshakes.borrow_mut().evict_ripe(rt::now());
        let at = match ripe {
            Ripe::Evicted(victim) => {
                log::debug!("dropped the oldest connection in its handshake to make room");
                victim.cancel();
                return ctx.limit.acquire_owned().await;
            }
            Ripe::Nothing => return ctx.limit.acquire_owned().await,
            Ripe::At(at) => at,
        };
        let permit = future::or(async { Some(ctx.limit.acquire_owned().await) }, async {
            Timer::at(at).await;
            None
        })
        .await;
        if let Some(p) = permit {
            return p;
        }
    }
}

/// Set when a connection's handshake was evicted from the budget.
#[derive(Default)]
pub struct Cancel {
    done: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Cancel {
    fn cancel(&self) {
        self.done.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    async fn cancelled(&self) {
        future::poll_fn(|cx| {
            if self.done.get() {
                return Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

/// A connection's entry in the handshake budget, left when the front door settles it or the
/// request phase ends.
struct Ticket {
    id: u64,
    cancel: Rc<Cancel>,
}

/// The ticket with the budget it belongs to, as front doors see it.
struct Settle<'a> {
    ctx: &'a Context,
    id: u64,
}

impl Handshake for Settle<'_> {
    fn settle(&self) {
        self.ctx.handshakes.borrow_mut().settle(self.id);
    }
}

/// A request whose far side answered.
struct Opened {
    far: Async<TcpStream>,
    ciphers: Box<Ciphers>,
    who: String,
    shape: Shape,
}

enum Shape {
    /// The client is plain, the server sealed: the prefix leaves with the salt; `server` is
    /// the index of the server in the upstream.
    ClientMode { prefix: Prefix, server: Rc<Server> },
    /// The client is sealed, the target plain; `pending` is ciphertext read past the first
    /// chunk.
    ServerMode { pending: Option<Pending> },
}

// Written as a function returning an `async move` block, not as an `async fn`: an `async fn`
// stores its arguments twice in its future (captured and again as locals).
#[allow(clippy::manual_async_fn)]
fn connection(
    ctx: Rc<Context>,
    ingress: Rc<dyn Ingress>,
    client: Async<TcpStream>,
    peer: SocketAddr,
    permit: OwnedPermit,
    ticket: Ticket,
) -> impl Future<Output = ()> {
    async move {
        // Held until the connection ends: it counts against the connection cap.
        let _permit = permit;
        let Some(mut open) = Box::pin(open(&ctx, &*ingress, &client, peer, ticket)).await else {
            return;
        };
        let (pool, timeout) = (&ctx.pool, ctx.timeout);
        let result = match (&mut open.shape, &ctx.far) {
            (Shape::ClientMode { prefix, server }, Far::Server(_)) => {
                let server = Rc::clone(server);
                let traffic = server.opened();
                let first = FirstWrite {
                    prefix,
                    wait: FIRST_PAYLOAD_WAIT,
                };
                let r = relay(
                    &client,
                    &open.far,
                    &mut open.ciphers,
                    Some(first),
                    None,
                    pool,
                    timeout,
                    traffic,
                )
                .await;
                client_relay_ended(&ctx, &server, &open, &r);
                r
            }
            (Shape::ServerMode { pending }, _) => {
                relay(
                    &open.far,
                    &client,
                    &mut open.ciphers,
                    None,
                    pending.take(),
                    pool,
                    timeout,
                    &ctx.traffic,
                )
                .await
            }
            (Shape::ClientMode { .. }, Far::Targets(_)) => return,
        };
        let sealed = match open.shape {
            Shape::ClientMode { .. } => "server",
            Shape::ServerMode { .. } => "client",
        };
        log_end(&open.who, sealed, result);
    }
}

/// The request phase: what the client asks for, and its far side reached.
async fn open(
    ctx: &Context,
    ingress: &dyn Ingress,
    client: &Async<TcpStream>,
    peer: SocketAddr,
    ticket: Ticket,
) -> Option<Opened> {
    let settle = Settle { ctx, id: ticket.id };
    let inbound = future::or(ingress.open(client, peer, &settle), async {
        ticket.cancel.cancelled().await;
        log::debug!("{peer}: dropped in its handshake to make room");
        None
    })
    .await;
    settle.settle();
    let Inbound { who, request } = inbound?;
    match (request, &ctx.far) {
        (Request::ViaServer { prefix }, Far::Server(upstream)) => {
            let (far, server) = match connect_server(upstream, ctx.timeout, &who).await {
                Ok(far) => far,
                Err(e) => {
                    let _ = ingress.answer(client, Err(&e)).await;
                    return None;
                }
            };
            if let Err(e) = ingress.answer(client, Ok(())).await {
                log::debug!("{who}: {e}");
                return None;
            }
            let ciphers = Box::new(client_ciphers(&server.creds, &who)?);
            Some(Opened {
                far,
                ciphers,
                who,
                shape: Shape::ClientMode { prefix, server },
            })
        }
        (Request::Direct { target, early, dec }, Far::Targets(targets)) => {
            let far = match Box::pin(targets.connect(&target, ctx.timeout)).await {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("{who}: {e}");
                    return None;
                }
            };
            drop(target);
            log::debug!("{who}: connected");
            if !early.early().is_empty() {
                if let Err(e) = far.write_all(early.early()).await {
                    log::debug!("{who}: target: {e}");
                    return None;
                }
            }
            let pending = early.into_pending(&ctx.pool).await;
            // Built only now: a peer that never authenticated costs no cipher state.
            let ciphers = Box::new(Ciphers {
                enc: sealing(
                    Sealing::server(ctx.method, &ctx.key, &salt(&who)?, &dec),
                    &who,
                )?,
                dec: *dec,
                sent: false,
            });
            Some(Opened {
                far,
                ciphers,
                who,
                shape: Shape::ServerMode { pending },
            })
        }
        _ => {
            log::error!("{who}: this program's far side cannot serve that request");
            None
        }
    }
}

/// Connects to a server for the client connection `who`; the server used is logged at
/// debug level, a failure at warn.
async fn connect_server(
    upstream: &Upstream,
    timeout: Duration,
    who: &str,
) -> std::io::Result<(Async<TcpStream>, Rc<Server>)> {
    match upstream.connect(timeout).await {
        Ok((stream, server)) => {
            log::debug!("{who}: via {}", server.label);
            Ok((stream, server))
        }
        Err(e) => {
            log::warn!("{who}: cannot connect to server: {e}");
            Err(e)
        }
    }
}

/// A fresh salt for the connection `who`.
fn salt(who: &str) -> Option<[u8; MAX_SALT_LEN]> {
    let mut salt = [0u8; MAX_SALT_LEN];
    if let Err(e) = random_salt(&mut salt) {
        log::error!("{who}: the system random number generator failed: {e}");
        return None;
    }
    Some(salt)
}

/// A sealing half that could be made (only a key of the wrong length, which the config
/// refuses, cannot).
fn sealing(enc: Option<Sealing>, who: &str) -> Option<Sealing> {
    if enc.is_none() {
        log::error!("{who}: no cipher state for this method and key");
    }
    enc
}

/// A client mode's cipher state for one connection to a server with `creds`, under a fresh
/// salt.
fn client_ciphers(creds: &Credentials, who: &str) -> Option<Ciphers> {
    let salt = salt(who)?;
    // The length of a Shadowsocks 2022 request's padding, if it has no data to carry.
    let mut padding = [0u8; 2];
    if let Err(e) = random_salt(&mut padding) {
        log::error!("{who}: the system random number generator failed: {e}");
        return None;
    }
    let padding = u16::from_le_bytes(padding);
    let enc = Sealing::client(
        creds.method,
        &creds.key,
        &salt,
        padding,
        creds.identities.clone(),
    );
    let enc = sealing(enc, who)?;
    let dec = Opening::client(creds.method, &creds.key, &enc)?;
    Some(Ciphers {
        enc,
        dec,
        sent: false,
    })
}

/// A client mode's connection through server `server` ended: what the server did goes to the
/// circuit breaker, and a server that takes a client's data and never answers (closes or goes
/// quiet) is most often one with another password or method: say so once, until a server
/// answers again.
#[inline(never)]
fn client_relay_ended(
    ctx: &Context,
    server: &Server,
    open: &Opened,
    result: &Result<(), RelayError>,
) {
    server.closed();
    let answered = open.ciphers.dec.answered();
    if answered {
        server.answered();
        ctx.hinted.set(false);
        return;
    }
    if open.ciphers.sent && matches!(result, Ok(()) | Err(RelayError::SealedIo(_))) {
        server.closed_unanswered();
    }
    let silent = matches!(result, Ok(()) | Err(RelayError::Idle));
    if silent && open.ciphers.sent && !ctx.hinted.replace(true) {
        log::warn!(
            "{}: no reply from the server: wrong password or method? (or the target is \
             down; said once until a server answers)",
            open.who
        );
    }
}

/// Logs how a relayed connection ended: problems a user must see at `warn`, routine ends at
/// `debug`. `sealed` names the AEAD side ("server" for client modes, "client" for ss-server).
fn log_end(who: &str, sealed: &str, result: Result<(), RelayError>) {
    match result {
        Ok(()) => log::debug!("{who}: closed"),
        Err(e @ (RelayError::Sealed(_) | RelayError::Truncated | RelayError::Seal(_))) => {
            log::warn!("{who}: {sealed}: {e}")
        }
        Err(e @ RelayError::SealedIo(_)) => log::debug!("{who}: {sealed}: {e}"),
        Err(e) => log::debug!("{who}: {e}"),
    }
}
