//! Composition: each program is its front doors (`ingress`) on the shared flows (`serve`),
//! with its plugin (`plugin`) in front when one is configured. Start-up (resolve, bind, start
//! the plugins, drop privileges) happens before the event loop, so every failure is one clear
//! line and a non-zero exit.

mod local;
mod redir;
mod server;
mod tunnel;

use crate::config::server_list::read_server_list;
use crate::config::{Config, Mode};
use crate::plugin;
use crate::relay::upstream::Upstream;
use crate::rt::LocalExecutor;
use crate::serve::startup::{self, bind, listen_address, Bind};
use crate::serve::{Context, Far};
use std::path::Path;
use std::rc::Rc;

/// Runs a mode until SIGTERM/SIGINT. Errors are start-up failures, already worded for users.
pub fn run(mut cfg: Config) -> Result<(), String> {
    startup::raise_nofile(&cfg)?;
    if let Some(warning) = startup::check_clock(cfg.method, crate::rt::unix_now()) {
        log::warn!("{warning}");
    }
    let opts = startup::outbound_opts(&cfg);
    let resolver = startup::resolver(&cfg, &opts)?;
    let fixed = cfg.servers.len();
    if let Some(path) = &cfg.server_list {
        match read_server_list(path) {
            Ok((listed, warnings)) => {
                warnings.iter().for_each(|w| log::warn!("{w}"));
                cfg.servers.extend(listed);
            }
            // Without servers of its own the program cannot start; with them it goes on, and a
            // SIGHUP reads the list again.
            Err(e) if fixed == 0 => return Err(e),
            Err(e) => log::warn!("{e}; using the other servers"),
        }
        if cfg.servers.is_empty() {
            return Err(format!("server list {}: no usable server", path.display()));
        }
    }
    let mut servers = None;
    let (binds, far, launches) = match cfg.mode {
        Mode::Local | Mode::Tunnel | Mode::Redir => {
            let listen = listen_address(&resolver, &cfg.local_addr, cfg.local_port)?;
            let (upstream, launches) = plugin::client_side(&cfg, opts)?;
            let upstream = Rc::new(upstream);
            servers = Some(Rc::clone(&upstream));
            (
                vec![Bind::of(&cfg, listen)],
                Far::Server(upstream),
                launches,
            )
        }
        Mode::Server => {
            let addrs = startup::server_listen_addresses(&cfg, &resolver)?;
            let (binds, launches) = plugin::server_side(&cfg, &addrs)?;
            (
                binds,
                Far::Targets(server::targets(&cfg, Rc::clone(&resolver))),
                launches,
            )
        }
    };
    let mut listeners = Vec::with_capacity(binds.len());
    for b in &binds {
        listeners.push(bind(&cfg, b)?);
    }
    startup::write_pid_file(&cfg)?;
    let signals = startup::take_signals()?;
    // Before dropping privileges, as libev does: a server-side plugin may bind port 443.
    let plugins = match plugin::start(&cfg, &launches, &signals)? {
        plugin::Started::Running(p) => p,
        plugin::Started::Stopped => {
            startup::remove_pid_file(&cfg);
            return Ok(());
        }
    };
    startup::drop_privileges(&cfg, &binds)?;
    let ex = Rc::new(LocalExecutor::new());
    if let Some(up) = &servers {
        up.set_fixed(fixed);
        up.resolve_names(&ex, &resolver);
    }
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
    let watched = plugin::watch(&ex, plugins.clone())?;
    let pool = Rc::clone(&ctx.pool);
    let list = cfg.server_list.clone();
    let served = [cfg.transport.tcp(), cfg.transport.udp()];
    let on_signal = move |name: &str| match (&servers, name, &list) {
        (Some(up), "SIGUSR1", _) => up.report(),
        (Some(up), "SIGHUP", Some(path)) => reload_list(served, up, path),
        _ => log::info!("received {name}: nothing to do in this program"),
    };
    let outcome = startup::run_until_signal(&ex, serving, signals, watched, on_signal, move || {
        pool.trim();
    });
    if let Some(p) = &plugins {
        p.stop();
    }
    startup::remove_pid_file(&cfg);
    outcome
}

/// SIGHUP: the server list read again; on any error the servers stay as they were.
fn reload_list(served: [bool; 2], up: &Rc<Upstream>, path: &Path) {
    match read_server_list(path) {
        Ok((listed, warnings)) => {
            warnings.iter().for_each(|w| log::warn!("{w}"));
            let servers = plugin::listed_servers(served, &listed);
            let n = servers.len();
            let (added, gone) = up.replace_listed(servers);
            log::info!(
                "server list {} read again: {n} servers, {added} new, {gone} gone (their \
                 connections go on)",
                path.display()
            );
        }
        Err(e) => log::warn!("{e}; the servers stay as they were"),
    }
}
