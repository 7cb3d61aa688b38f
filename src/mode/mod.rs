//! Composition of each program from the layers below: listeners → relays. Start-up (resolve,
//! bind, drop privileges) happens here, before the event loop, so every failure is one clear
//! line and a non-zero exit.

mod local;
mod server;
mod tunnel;

use crate::config::{Config, Mode};
use crate::dns::Resolver;
use crate::proto::cipher::MAX_SALT_LEN;
use crate::proto::tcp::{Decryptor, Encryptor};
use crate::relay::connect::Upstream;
use crate::relay::limit::{Limit, Permit};
use crate::relay::pool::Pool;
use crate::relay::tcp::{relay, Ciphers, FirstWrite};
use crate::relay::RelayError;
use crate::rt::{self, Async, Timer};
use crate::sys::random_salt;
use crate::sys::{self, OutboundOpts};
use async_executor::LocalExecutor;
use futures_lite::future;
use std::future::Future;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

/// Host names the server's resolver caches; a few hundred bytes each.
const DNS_CACHE_ENTRIES: usize = 512;

/// How long a client mode waits for the first payload so that it leaves with the address.
const FIRST_PAYLOAD_WAIT: Duration = Duration::from_millis(500);

/// Everything a running mode shares between its connections.
pub struct Context {
    pub cfg: Config,
    pub pool: Rc<Pool>,
    pub upstream: Rc<Upstream>,
    pub limit: Rc<Limit>,
    pub ex: Rc<LocalExecutor<'static>>,
}

impl Context {
    /// Connects to the server for the client connection `who`; the server used is logged at
    /// debug level, a failure at warn.
    async fn connect_server(&self, who: &str) -> std::io::Result<Async<std::net::TcpStream>> {
        match self.upstream.connect(self.cfg.timeout).await {
            Ok((server, via)) => {
                log::debug!("{who}: via {via}");
                Ok(server)
            }
            Err(e) => {
                log::warn!("{who}: cannot connect to server: {e}");
                Err(e)
            }
        }
    }

    /// Fresh cipher state for one connection to the server.
    fn session(&self) -> Result<Box<Ciphers>, RelayError> {
        let mut salt = [0u8; MAX_SALT_LEN];
        random_salt(&mut salt)
            .map_err(|e| RelayError::PlainIo(std::io::Error::other(e.to_string())))?;
        Ok(Box::new(Ciphers {
            enc: Encryptor::new(self.cfg.method, &self.cfg.key, &salt),
            dec: Decryptor::new(self.cfg.method, &self.cfg.key),
        }))
    }
}

/// Logs how a relayed connection ended: problems a user must see at `warn`, routine ends at
/// `debug`. `sealed` names the AEAD side ("server" for client modes, "client" for ss-server).
fn log_end(who: &str, sealed: &str, result: Result<(), RelayError>) {
    match result {
        Ok(()) => log::debug!("{who}: closed"),
        Err(e @ (RelayError::Sealed(_) | RelayError::Truncated)) => {
            log::warn!("{who}: {sealed}: {e}")
        }
        Err(e @ RelayError::SealedIo(_)) => log::debug!("{who}: {sealed}: {e}"),
        Err(e) => log::debug!("{who}: {e}"),
    }
}

/// The established part of a client-mode connection: the target address (`prefix`) leaves
/// with the salt and the client's first data, then both directions are relayed until done.
async fn relay_client(
    ctx: &Context,
    client: &Async<std::net::TcpStream>,
    server: &Async<std::net::TcpStream>,
    prefix: &[u8],
    who: &str,
) {
    let result = match ctx.session() {
        Ok(mut ciphers) => {
            let first = FirstWrite {
                prefix,
                wait: FIRST_PAYLOAD_WAIT,
            };
            let (pool, timeout) = (&ctx.pool, ctx.cfg.timeout);
            relay(
                client,
                server,
                &mut ciphers,
                Some(first),
                None,
                pool,
                timeout,
            )
            .await
        }
        Err(e) => Err(e),
    };
    log_end(who, "server", result);
}

/// Sockets bound at start-up.
struct Listeners {
    tcp: Option<TcpListener>,
    udp: Option<UdpSocket>,
}

fn bind(cfg: &Config, addr: SocketAddr) -> Result<Listeners, String> {
    let hint = "is another instance running? pick another address or port";
    let tcp = if cfg.transport.tcp() {
        Some(
            sys::tcp_listener(addr, cfg.reuse_port, cfg.fast_open)
                .map_err(|e| format!("cannot listen on {addr} (TCP): {e}; {hint}"))?,
        )
    } else {
        None
    };
    let udp = if cfg.transport.udp() {
        Some(
            sys::udp_listener(addr, cfg.reuse_port)
                .map_err(|e| format!("cannot listen on {addr} (UDP): {e}; {hint}"))?,
        )
    } else {
        None
    };
    Ok(Listeners { tcp, udp })
}

fn resolve_servers(cfg: &Config, resolver: &Rc<Resolver>) -> Result<Vec<SocketAddr>, String> {
    let mut all = Vec::new();
    for s in &cfg.servers {
        let addrs = resolve_now(resolver, &s.host, s.port).map_err(|e| {
            format!(
                "cannot resolve server '{}': {e}; check the server address and DNS",
                s.host
            )
        })?;
        // One address per configured server, the preferred family first, like libev.
        all.extend(addrs.into_iter().take(1));
    }
    Ok(all)
}

/// Runs a mode until SIGTERM/SIGINT. Errors are start-up failures, already worded for users.
pub fn run(cfg: Config) -> Result<(), String> {
    if let Some(n) = cfg.nofile {
        sys::set_nofile(n).map_err(|e| format!("cannot set the open file limit to {n}: {e}"))?;
    } else if let Ok(n) = sys::nofile() {
        // Each connection needs two descriptors; raise the soft limit when the cap needs it.
        if (n as usize) < cfg.limits.max_conns * 2 + 32 {
            let _ = sys::raise_nofile_to_hard();
        }
    }
    if let Some(plugin) = &cfg.plugin {
        return Err(format!(
            "plugin '{plugin}' is configured, but this build cannot launch SIP003 plugins yet; \
             remove \"plugin\" to connect to the server directly"
        ));
    }
    // The server's resolver for its targets; every mode's start-up names (listen and server
    // addresses) go through it too, so the binary needs no getaddrinfo.
    let resolver = Resolver::new(cfg.nameservers.clone(), cfg.ipv6_first, DNS_CACHE_ENTRIES)
        .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
    let (binds, servers) = match cfg.mode {
        Mode::Local | Mode::Tunnel => (
            vec![listen_address(&resolver, &cfg.local_addr, cfg.local_port)?],
            resolve_servers(&cfg, &resolver)?,
        ),
        Mode::Server => (server_listen_addresses(&cfg, &resolver)?, Vec::new()),
        Mode::Redir => {
            return Err(format!(
                "{} is not available in this build yet",
                cfg.mode.program()
            ))
        }
    };
    let listeners = binds
        .iter()
        .map(|addr| bind(&cfg, *addr))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = &cfg.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write pid file {}: {e}", path.display()))?;
    }
    if let Some(user) = &cfg.user {
        let keep = sys::kept_capabilities(binds.iter().map(|a| a.port()), false);
        sys::run_as(user, &keep).map_err(|e| format!("cannot run as user '{user}': {e}"))?;
    }
    let opts = OutboundOpts {
        fwmark: cfg.fwmark,
        interface: cfg.interface.clone(),
        bind_addr: None,
        no_delay: cfg.no_delay,
        fast_open: cfg.fast_open,
    };
    let ex = Rc::new(LocalExecutor::new());
    let ctx = Rc::new(Context {
        pool: Pool::new(cfg.limits.pool_blocks)?,
        upstream: Rc::new(Upstream::new(servers, opts)),
        limit: Limit::new(cfg.limits.max_conns),
        ex: Rc::clone(&ex),
        cfg,
    });
    let signals = sys::term_signals()
        .and_then(Async::new_nonblocking)
        .map_err(|e| format!("cannot receive SIGTERM and SIGINT: {e}"))?;
    let what = match (ctx.cfg.transport.tcp(), ctx.cfg.transport.udp()) {
        (true, true) => "TCP and UDP",
        (false, true) => "UDP",
        _ => "TCP",
    };
    // One replay filter, ban list and resolver for every listener.
    let srv = match ctx.cfg.mode {
        Mode::Server => Some(server::state(&ctx.cfg, resolver)),
        _ => None,
    };
    let mut serving = Vec::new();
    for (addr, l) in binds.iter().zip(listeners) {
        log::info!(
            "{} listening on {addr} ({what}), method {}",
            ctx.cfg.mode.program(),
            ctx.cfg.method.name()
        );
        serving.push(match (&srv, ctx.cfg.mode) {
            (Some(srv), _) => ex.spawn(server::serve(Rc::clone(&ctx), Rc::clone(srv), l)),
            (None, Mode::Tunnel) => ex.spawn(tunnel::serve(Rc::clone(&ctx), l)),
            (None, _) => ex.spawn(local::serve(Rc::clone(&ctx), l)),
        });
    }
    // Listeners serve until a fatal error; the first one ends the process.
    let serving = future::poll_fn(|cx| {
        for task in serving.iter_mut() {
            if let Poll::Ready(r) = Pin::new(task).poll(cx) {
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    });
    // A task of its own: the future given to `ex.run` is polled every time any task wakes; a
    // task is polled only when a signal arrives.
    let signalled = ex.spawn(async move {
        let name = signals
            .read_with(sys::read_term_signal)
            .await
            .unwrap_or("SIGTERM");
        log::info!("received {name}, exiting");
        Ok(())
    });
    let outcome = rt::block_on(ex.run(future::or(signalled, serving)))
        .map_err(|e| format!("event loop failed: {e}"))
        .and_then(|r| r);
    if let Some(path) = &ctx.cfg.pid_file {
        let _ = std::fs::remove_file(path);
    }
    outcome
}

/// Resolves a start-up name to completion before the event loop starts.
fn resolve_now(resolver: &Rc<Resolver>, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    rt::block_on(resolver.resolve(host, port))?
}

/// A listen address: an IP, or a name of this host.
fn listen_address(resolver: &Rc<Resolver>, host: &str, port: u16) -> Result<SocketAddr, String> {
    resolve_now(resolver, host, port)
        .ok()
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| format!("cannot use local address '{host}': not an address of this host"))
}

/// ss-server's listen addresses (`-s`, several allowed). A dual-stack `::` already covers
/// `0.0.0.0` on the same port, so that pair binds once.
fn server_listen_addresses(
    cfg: &Config,
    resolver: &Rc<Resolver>,
) -> Result<Vec<SocketAddr>, String> {
    let mut addrs = Vec::new();
    for s in &cfg.servers {
        addrs.push(listen_address(resolver, &s.host, s.port)?);
    }
    let dual: Vec<u16> = addrs
        .iter()
        .filter(|a| a.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED))
        .map(|a| a.port())
        .collect();
    addrs.retain(|a| {
        !(a.ip() == std::net::IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED)
            && dual.contains(&a.port()))
    });
    addrs.dedup();
    Ok(addrs)
}

/// Wraps a std listener for the event loop.
fn async_listener(l: TcpListener) -> Result<Async<TcpListener>, String> {
    Async::new(l).map_err(|e| format!("cannot register listener: {e}"))
}

/// Accepts connections for ever, one task each, holding a connection permit per task.
async fn accept_loop<F, Fut>(
    ctx: Rc<Context>,
    listener: TcpListener,
    handle: F,
) -> Result<(), String>
where
    F: Fn(Rc<Context>, Async<std::net::TcpStream>, SocketAddr, Permit) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = async_listener(listener)?;
    loop {
        let permit = ctx.limit.acquire().await;
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning on the error.
                log::warn!("accept: {e}");
                Timer::after(Duration::from_millis(200)).await;
                continue;
            }
        };
        if ctx.cfg.no_delay {
            let _ = stream.get_ref().set_nodelay(true);
        }
        // The permit goes into the connection's own future: wrapping that future in another
        // async block would store it twice.
        ctx.ex
            .spawn(handle(Rc::clone(&ctx), stream, peer, permit))
            .detach();
    }
}
