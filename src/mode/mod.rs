//! Composition: each program is its front doors (`ingress`) on the shared flows (`serve`).
//! Start-up (resolve, bind, drop privileges) happens before the event loop, so every failure
//! is one clear line and a non-zero exit.

mod local;
mod server;
mod tunnel;

use crate::config::{Config, Mode};
use crate::dns::Resolver;
use crate::relay::connect::Upstream;
use crate::relay::pool::Pool;
use crate::rt::Semaphore;
use crate::serve::startup::{self, bind, listen_address, resolve_servers};
use crate::serve::{Context, Far};
use crate::sys::{self, OutboundOpts};
use async_executor::LocalExecutor;
use std::cell::Cell;
use std::rc::Rc;

/// Host names the resolver caches; a few hundred bytes each.
const DNS_CACHE_ENTRIES: usize = 512;

/// Runs a mode until SIGTERM/SIGINT. Errors are start-up failures, already worded for users.
pub fn run(cfg: Config) -> Result<(), String> {
    startup::raise_nofile(&cfg)?;
    if let Some(plugin) = &cfg.plugin {
        return Err(format!(
            "plugin '{plugin}' is configured, but this build cannot launch SIP003 plugins yet; \
             remove \"plugin\" to connect to the server directly"
        ));
    }
    let opts = OutboundOpts {
        fwmark: cfg.fwmark,
        interface: cfg.interface.clone(),
        bind_addr: None,
        no_delay: cfg.no_delay,
        fast_open: cfg.fast_open,
    };
    // Start-up names (listen and server addresses) go through the resolver too, so the binary
    // needs no getaddrinfo.
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
            startup::server_listen_addresses(&cfg, &resolver)?,
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
        .map(|a| bind(&cfg, *a))
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
    let what = match (cfg.transport.tcp(), cfg.transport.udp()) {
        (true, true) => "TCP and UDP",
        (false, true) => "UDP",
        _ => "TCP",
    };
    // One replay filter and ban list for every listener of ss-server.
    let guard = (cfg.mode == Mode::Server).then(|| server::guard(&cfg));
    let mut serving = Vec::new();
    for (addr, l) in binds.iter().zip(listeners) {
        let (program, method) = (cfg.mode.program(), cfg.method.name());
        log::info!("{program} listening on {addr} ({what}), method {method}");
        let program = match (&guard, cfg.mode) {
            (Some(guard), _) => server::program(&ctx, &cfg, Rc::clone(guard), l)?,
            (None, Mode::Tunnel) => tunnel::program(&ctx, &cfg, l)?,
            (None, _) => local::program(&ctx, &cfg, l)?,
        };
        serving.push(ex.spawn(program));
    }
    let outcome = startup::run_until_signal(&ex, serving);
    if let Some(path) = &cfg.pid_file {
        let _ = std::fs::remove_file(path);
    }
    outcome
}
