//! Composition: each program is its front doors (`ingress`) on the shared flows (`serve`).
//! Start-up (resolve, bind, drop privileges) happens here, before the event loop, so every
//! failure is one clear line and a non-zero exit.

mod local;
mod server;
mod tunnel;

use crate::config::{Config, Mode};
use crate::dns::Resolver;
use crate::ingress::{DatagramFront, Ingress};
use crate::relay::connect::Upstream;
use crate::relay::pool::Pool;
use crate::rt::{self, Async, Semaphore};
use crate::serve::udp::UdpRelay;
use crate::serve::{Context, Far};
use crate::sys::{self, OutboundOpts};
use async_executor::LocalExecutor;
use futures_lite::future;
use std::cell::Cell;
use std::future::Future;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

/// Host names the resolver caches; a few hundred bytes each.
const DNS_CACHE_ENTRIES: usize = 512;

/// Sockets bound at start-up for one listen address.
pub struct Listeners {
    tcp: Option<TcpListener>,
    udp: Option<UdpSocket>,
}

/// A program's serving future for one listen address.
type Serving = Pin<Box<dyn Future<Output = Result<(), String>>>>;

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
    // Every mode's start-up names (listen and server addresses) go through the resolver, so
    // the binary needs no getaddrinfo; ss-server also resolves its targets with it.
    let opts = OutboundOpts {
        fwmark: cfg.fwmark,
        interface: cfg.interface.clone(),
        bind_addr: None,
        no_delay: cfg.no_delay,
        fast_open: cfg.fast_open,
    };
    let resolver = Resolver::new(
        cfg.nameservers.clone(),
        cfg.ipv6_first,
        DNS_CACHE_ENTRIES,
        opts.clone(),
    )
    .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
    let (binds, far) = match cfg.mode {
        Mode::Local | Mode::Tunnel => {
            let servers = resolve_servers(&cfg, &resolver)?;
            let listen = listen_address(&resolver, &cfg.local_addr, cfg.local_port)?;
            (
                vec![listen],
                Far::Server(Rc::new(Upstream::new(servers, opts))),
            )
        }
        Mode::Server => (
            server::listen_addresses(&cfg, &resolver)?,
            Far::Targets(server::targets(&cfg, resolver)),
        ),
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
        sys::run_as(user).map_err(|e| format!("cannot run as user '{user}': {e}"))?;
    }
    let ex = Rc::new(LocalExecutor::new());
    let ctx = Rc::new(Context {
        method: cfg.method,
        key: cfg.key.clone(),
        pool: Pool::new(cfg.limits.pool_blocks),
        limit: Rc::new(Semaphore::new(cfg.limits.max_conns.max(1))),
        ex: Rc::clone(&ex),
        far,
        timeout: cfg.timeout,
        no_delay: cfg.no_delay,
        hinted: Cell::new(false),
    });
    let signals = sys::term_signals()
        .and_then(Async::new_nonblocking)
        .map_err(|e| format!("cannot receive SIGTERM and SIGINT: {e}"))?;
    let what = match (cfg.transport.tcp(), cfg.transport.udp()) {
        (true, true) => "TCP and UDP",
        (false, true) => "UDP",
        _ => "TCP",
    };
    // One replay filter and ban list for every listener of ss-server.
    let guard = (cfg.mode == Mode::Server).then(|| server::guard(&cfg));
    let mut serving = Vec::new();
    for (addr, l) in binds.iter().zip(listeners) {
        log::info!(
            "{} listening on {addr} ({what}), method {}",
            cfg.mode.program(),
            cfg.method.name()
        );
        let program = match (&guard, cfg.mode) {
            (Some(guard), _) => server::program(&ctx, &cfg, Rc::clone(guard), l)?,
            (None, Mode::Tunnel) => tunnel::program(&ctx, &cfg, l)?,
            (None, _) => local::program(&ctx, &cfg, l)?,
        };
        serving.push(ex.spawn(program));
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
    if let Some(path) = &cfg.pid_file {
        let _ = std::fs::remove_file(path);
    }
    outcome
}

/// One listen address served by a program's front doors: TCP and UDP, whichever is bound.
fn serve<I, F>(
    ctx: &Rc<Context>,
    cfg: &Config,
    tcp: Option<(TcpListener, I)>,
    udp: Option<F>,
) -> Serving
where
    I: Ingress + 'static,
    F: DatagramFront + 'static,
{
    let udp = udp.map(|front| {
        UdpRelay::new(
            front,
            ctx.far.clone(),
            ctx.method,
            ctx.key.clone(),
            Rc::clone(&ctx.pool),
            cfg.timeout,
            cfg.limits.udp_assocs,
            Rc::clone(&ctx.ex),
        )
    });
    let ctx = Rc::clone(ctx);
    Box::pin(async move {
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
                Some((l, ingress)) => crate::serve::tcp::serve(ctx, l, Rc::new(ingress)).await,
                None => future::pending().await,
            }
        };
        future::or(tcp, udp).await
    })
}

/// The UDP listener, registered with the event loop.
fn udp_socket(l: Option<UdpSocket>) -> Result<Option<Async<UdpSocket>>, String> {
    l.map(Async::new)
        .transpose()
        .map_err(|e| format!("cannot start the UDP relay: {e}"))
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
