//! Composition: each program is its front doors (`ingress`) on the shared flows (`serve`).
//! Start-up (resolve, bind, drop privileges) happens before the event loop, so every failure
//! is one clear line and a non-zero exit.

mod local;
mod redir;
mod server;
mod tunnel;

use crate::config::{Config, Mode};
use crate::relay::connect::Upstream;
use crate::serve::startup::{self, bind, listen_address, resolve_servers};
use crate::serve::{Context, Far};
use crate::sys;
use async_executor::LocalExecutor;
use std::rc::Rc;

/// Runs a mode until SIGTERM/SIGINT. Errors are start-up failures, already worded for users.
pub fn run(cfg: Config) -> Result<(), String> {
    startup::raise_nofile(&cfg)?;
    if let Some(plugin) = &cfg.plugin {
        return Err(format!(
            "plugin '{plugin}' is configured, but this build cannot launch SIP003 plugins yet; \
             remove {} to connect to the server directly",
            cfg.plugin_source
        ));
    }
    let opts = startup::outbound_opts(&cfg);
    let resolver = startup::resolver(&cfg, &opts)?;
    let (binds, far) = match cfg.mode {
        Mode::Local | Mode::Tunnel | Mode::Redir => {
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
    };
    let listeners = binds
        .iter()
        .map(|a| bind(&cfg, *a))
        .collect::<Result<Vec<_>, _>>()?;
    startup::write_pid_file(&cfg)?;
    if let Some(user) = &cfg.user {
        // Transparent reply sockets (ss-redir's UDP) and SO_MARK both need CAP_NET_ADMIN.
        let net_admin = (cfg.mode == Mode::Redir && cfg.transport.udp()) || cfg.fwmark.is_some();
        let keep = sys::kept_capabilities(binds.iter().map(|a| a.port()), net_admin);
        sys::run_as(user, &keep).map_err(|e| format!("cannot run as user '{user}': {e}"))?;
    }
    let ex = Rc::new(LocalExecutor::new());
    let ctx = Rc::new(Context::new(&cfg, far, Rc::clone(&ex))?);
    // One replay filter and ban list for every listener of ss-server.
    let guard = (cfg.mode == Mode::Server).then(|| server::guard(&cfg));
    let mut serving = Vec::new();
    for (addr, l) in binds.iter().zip(listeners) {
        startup::log_listening(&cfg, addr);
        let program = match (&guard, cfg.mode) {
            (Some(guard), _) => server::program(&ctx, &cfg, Rc::clone(guard), l)?,
            (None, Mode::Tunnel) => tunnel::program(&ctx, &cfg, l)?,
            (None, Mode::Redir) => redir::program(&ctx, &cfg, *addr, l)?,
            (None, _) => local::program(&ctx, &cfg, l)?,
        };
        serving.push(ex.spawn(program));
    }
    let outcome = startup::run_until_signal(&ex, serving);
    startup::remove_pid_file(&cfg);
    outcome
}
