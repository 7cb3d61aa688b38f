//! Composition: each program is its front doors (`ingress`) on the shared flows (`serve`),
//! with its plugin (`plugin`) in front when one is configured. Start-up (resolve, bind, start
//! the plugins, drop privileges) happens before the event loop, so every failure is one clear
//! line and a non-zero exit.

mod local;
mod redir;
mod server;
mod tunnel;

use crate::config::{Config, Mode};
use crate::plugin;
use crate::serve::startup::{self, bind, listen_address, Bind};
use crate::serve::{Context, Far};
use crate::sys;
use async_executor::LocalExecutor;
use std::rc::Rc;

/// Runs a mode until SIGTERM/SIGINT. Errors are start-up failures, already worded for users.
pub fn run(cfg: Config) -> Result<(), String> {
    startup::raise_nofile(&cfg)?;
    let opts = startup::outbound_opts(&cfg);
    let resolver = startup::resolver(&cfg, &opts)?;
    let (binds, far, launches) = match cfg.mode {
        Mode::Local | Mode::Tunnel | Mode::Redir => {
            let listen = listen_address(&resolver, &cfg.local_addr, cfg.local_port)?;
            let (upstream, launches) = plugin::client_side(&cfg, &resolver, opts)?;
            let far = Far::Server(Rc::new(upstream));
            (vec![Bind::of(&cfg, listen)], far, launches)
        }
        Mode::Server => {
            let addrs = startup::server_listen_addresses(&cfg, &resolver)?;
            let (binds, launches) = plugin::server_side(&cfg, &addrs)?;
            (
                binds,
                Far::Targets(server::targets(&cfg, resolver)),
                launches,
            )
        }
    };
    let listeners = binds
        .iter()
        .map(|b| bind(&cfg, b))
        .collect::<Result<Vec<_>, _>>()?;
    startup::write_pid_file(&cfg)?;
    // Before dropping privileges, as libev does: a server-side plugin may bind port 443.
    let plugins = plugin::start(&cfg, &launches)?;
    if let Some(user) = &cfg.user {
        // Transparent reply sockets (ss-redir's UDP) and SO_MARK both need CAP_NET_ADMIN.
        let net_admin = (cfg.mode == Mode::Redir && cfg.transport.udp()) || cfg.fwmark.is_some();
        let ports = binds.iter().flat_map(|b| [b.tcp, b.udp]).flatten();
        let keep = sys::kept_capabilities(ports.map(|a| a.port()), net_admin);
        sys::run_as(user, &keep).map_err(|e| format!("cannot run as user '{user}': {e}"))?;
    }
    let ex = Rc::new(LocalExecutor::new());
    let ctx = Rc::new(Context::new(&cfg, far, Rc::clone(&ex))?);
    // One replay filter and ban list for every listener of ss-server.
    let guard = (cfg.mode == Mode::Server).then(|| server::guard(&cfg));
    let mut serving = Vec::new();
    for (b, l) in binds.iter().zip(listeners) {
        startup::log_listening(&cfg, b);
        let program = match (&guard, cfg.mode) {
            (Some(guard), _) => server::program(&ctx, &cfg, Rc::clone(guard), l)?,
            (None, Mode::Tunnel) => tunnel::program(&ctx, &cfg, l)?,
            (None, Mode::Redir) => redir::program(&ctx, &cfg, b.addr, l)?,
            (None, _) => local::program(&ctx, &cfg, l)?,
        };
        serving.push(ex.spawn(program));
    }
    if let Some(p) = &plugins {
        p.log_output(&ex)
            .map_err(|e| format!("cannot read the plugin's output: {e}"))?;
    }
    let watched = plugins.clone();
    let outcome = startup::run_until_signal(&ex, serving, move || {
        watched.as_ref().and_then(|p| p.exited())
    });
    if let Some(p) = &plugins {
        p.stop();
    }
    startup::remove_pid_file(&cfg);
    outcome
}
