//! What every program runs once its front door is chosen: the TCP connection flow
//! ([`tcp`]) and the one datagram relay ([`udp`]). Both are generic over the program's
//! ingress (`crate::ingress`); the far side is the Shadowsocks server for the client modes and
//! the targets for ss-server ([`Far`]).

pub mod startup;
pub mod tcp;
pub mod udp;

use crate::config::Config;
use crate::ingress::{DatagramFront, Ingress};
use crate::policy::handshakes::Handshakes;
use crate::proto::cipher::{MasterKey, Method};
use crate::proto::ss2022::identity::Users;
use crate::proto::ss2022::Psk;
use crate::relay::direct::Targets;
use crate::relay::pool::Pool;
use crate::relay::upstream::Upstream;
use crate::relay::Traffic;
use crate::rt::LocalExecutor;
use crate::rt::Semaphore;
use futures_lite::future;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;
use udp::UdpRelay;

/// Where a program's traffic goes after its front door.
#[derive(Clone)]
pub enum Far {
    /// Client modes: sealed, through the Shadowsocks server(s).
    Server(Rc<Upstream>),
    /// ss-server: plain, to the targets clients name.
    Targets(Rc<Targets>),
}

/// Everything a running program shares between its connections and datagrams.
pub struct Context {
    pub method: Method,
    pub key: MasterKey,
    pub pool: Rc<Pool>,
    /// The connection cap: a unit per relayed TCP connection.
    pub limit: Rc<Semaphore>,
    pub ex: Rc<LocalExecutor>,
    pub far: Far,
    /// Idle timeout of connections and associations (and of a client's request phase).
    pub timeout: Duration,
    pub no_delay: bool,
    /// A "no reply from the server" hint was logged and no reply has come since: one line per
    /// episode, not per connection.
    pub hinted: Cell<bool>,
    /// Connections still in their handshake, which give way under pressure.
    pub handshakes: RefCell<Handshakes<Rc<tcp::Cancel>>>,
    pub max_conns: usize,
    /// A multi-user Shadowsocks 2022 server's users.
    pub users: Option<Rc<Users>>,
    /// ss-server's connections' bytes, all together.
    pub traffic: Traffic,
}

/// Connections one source may have in their handshake at once. A browser opens a few dozen at
/// most; a host that opens more without finishing them only crowds out its own.
pub const HANDSHAKES_PER_SOURCE: usize = 32;

/// Connections that may be in their handshake at once, all sources together: half the
/// connection cap, so those that finished theirs always have the other half.
fn handshake_budget(max_conns: usize) -> usize {
    (max_conns / 2).max(1)
}

impl Context {
    /// Fails (one line for the user) when the pool cannot be allocated.
    pub fn new(cfg: &Config, far: Far, ex: Rc<LocalExecutor>) -> Result<Context, String> {
        Ok(Context {
            method: cfg.method,
            key: cfg.key.clone(),
            pool: Pool::new(cfg.limits.pool_blocks)?,
            limit: Rc::new(Semaphore::new(cfg.limits.max_conns.max(1))),
            ex,
            far,
            timeout: cfg.timeout,
            no_delay: cfg.no_delay,
            hinted: Cell::new(false),
            handshakes: RefCell::new(Handshakes::new(
                handshake_budget(cfg.limits.max_conns),
                HANDSHAKES_PER_SOURCE,
            )),
            max_conns: cfg.limits.max_conns,
            users: users(cfg),
            traffic: Traffic::default(),
        })
    }
}

/// A multi-user server's users, if it has any (the config checked their keys).
pub fn users(cfg: &Config) -> Option<Rc<Users>> {
    let m = cfg.method.ss2022()?;
    let mut users = Vec::with_capacity(cfg.users.len());
    for (name, key) in &cfg.users {
        if let Ok(psk) = Psk::from_bytes(m, key.as_bytes()) {
            users.push((Box::<str>::from(name.as_str()), psk));
        }
    }
    (!users.is_empty()).then(|| Rc::new(Users::new(users)))
}

/// A program's serving future for one listen address.
pub type Serving = Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// One listen address served by a program's front doors: TCP and UDP, whichever is bound.
pub fn listener(
    ctx: &Rc<Context>,
    cfg: &Config,
    tcp: Option<TcpListener>,
    ingress: Rc<dyn Ingress>,
    udp: Option<Box<dyn DatagramFront>>,
) -> Serving {
    let udp = udp.map(|front| {
        UdpRelay::new(
            front,
            ctx.far.clone(),
            Rc::clone(&ctx.pool),
            cfg.timeout,
            cfg.limits.udp_assocs,
            Rc::clone(&ctx.ex),
        )
    });
    let ctx = Rc::clone(ctx);
    Box::pin(async move {
        // Connections wait in the listen backlog until the servers' names were looked up.
        if let Far::Server(up) = &ctx.far {
            up.names_tried().await;
        }
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
            match tcp {
                Some(l) => tcp::serve(ctx, l, ingress).await,
                None => future::pending().await,
            }
        };
        future::or(tcp, udp).await
    })
}
