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
use crate::rt::LocalExecutor;
use crate::serve::startup::{self, bind, listen_address, Bind};
use crate::serve::{Context, Far};
use std::rc::Rc;

/// Runs a mode until SIGTERM/SIGINT. Errors are start-up failures, already worded for users.
pub fn run(cfg: Config) -> Result<(), String> {
    startup::raise_nofile(&cfg)?;
    if let Some(warning) = startup::check_clock(cfg.method, crate::rt::unix_now()) {
        log::warn!("{warning}");
    }
    let opts = startup::outbound_opts(&cfg);
    let resolver = startup::resolver(&cfg, &opts)?;
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
    let on_signal = move |name: &str| match (&servers, name) {
        (Some(up), "SIGUSR1") => up.report(),
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
