//! SIP003 plugins: where traffic goes when a plugin is configured, and the plugin processes.
//!
//! ```text
//! client:  app ─▶ ss-local ─TCP─▶ 127.0.0.1:P plugin ─▶ … ─▶ server:port
//!                          └─UDP──────────────────────────▶ server:port   (unless plugin_mode)
//! server:  … ─▶ plugin on HOST:PORT ─▶ 127.0.0.1:P ss-server ─▶ targets
//!               ss-server's UDP stays on HOST:PORT                         (unless plugin_mode)
//! ```
//!
//! SIP003 plugins carry TCP; `plugin_mode` (SIP003u) says whether the plugin also, or only,
//! carries UDP. Each configured server (client side) or listen address (server side) gets a
//! plugin process of its own, each on its own loopback port.

mod launch;
mod lines;

pub use launch::Plugins;

use crate::config::{Config, Mode, ServerAddr};
use crate::quote::Quoted;
use crate::relay::upstream::{Credentials, Server, Upstream, Ways};
use crate::rt::LocalExecutor;
use crate::serve::startup::Bind;
use crate::sys::ports::{self, Proto};
use crate::sys::{self, OutboundOpts};
use launch::Launch;
use nix::sys::signalfd::SignalFd;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;

/// What the plugin carries in this run: the transports that are both served and in
/// `plugin_mode`.
fn carries(cfg: &Config) -> (bool, bool) {
    match cfg.plugin {
        None => (false, false),
        Some(_) => (
            cfg.transport.tcp() && cfg.plugin_mode.tcp(),
            cfg.transport.udp() && cfg.plugin_mode.udp(),
        ),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn free_port(udp: bool) -> Result<u16, String> {
    ports::free_loopback_port(udp)
        .map_err(|e| format!("cannot find a free port for the plugin: {e}"))
}

/// Client modes: the servers, how TCP and UDP reach them, and the plugins to start for that
/// (one per server with a plugin: its own, or the config's). The servers' names are resolved
/// later, on the event loop (`Upstream::resolve_names`).
pub fn client_side(cfg: &Config, opts: OutboundOpts) -> Result<(Upstream, Vec<Launch>), String> {
    let (tcp, udp) = (
        cfg.transport.tcp() && cfg.plugin_mode.tcp(),
        cfg.transport.udp() && cfg.plugin_mode.udp(),
    );
    let mut launches = Vec::new();
    let mut servers = Vec::new();
    let shared = Rc::new(Credentials::new(
        cfg.method,
        cfg.key.clone(),
        &cfg.identity_keys,
    ));
    for (n, s) in cfg.servers.iter().enumerate() {
        let (creds, plugin, source) = match &s.own {
            Some(own) => (
                Rc::new(Credentials::new(
                    own.method,
                    own.key.clone(),
                    &own.identity_keys,
                )),
                own.plugin.clone(),
                format!("server {} of the list", n + 1),
            ),
            None => (
                Rc::clone(&shared),
                cfg.plugin.clone().map(|p| (p, cfg.plugin_opts.clone())),
                cfg.plugin_source.to_string(),
            ),
        };
        let mut plugin_port = None;
        if let Some((program, opts)) = plugin.filter(|_| tcp || udp) {
            let port = free_port(udp)?;
            launches.push(Launch {
                program,
                opts: opts.unwrap_or_default(),
                source,
                remote: (s.host.clone(), s.port),
                local: (Ipv4Addr::LOCALHOST.to_string(), port),
                ready: (port, if tcp { Proto::Tcp } else { Proto::Udp }),
            });
            plugin_port = Some(port);
        }
        let served = [cfg.transport.tcp(), cfg.transport.udp()];
        let plugin = plugin_port.map(|p| (p, [tcp, udp]));
        let server = Server::new(&s.host, s.port, plugin, served, creds);
        if !server.valid_name() {
            return Err(format!(
                "cannot use server {}: not an IP address or a valid host name",
                Quoted(&s.host)
            ));
        }
        servers.push(server);
    }
    let ways = Ways {
        direct: opts,
        // Loopback to the plugin: no mark, no interface; the plugin's own sockets leave the
        // host.
        to_plugin: OutboundOpts {
            fwmark: None,
            interface: None,
            bind_addr: None,
            no_delay: cfg.no_delay,
            fast_open: false,
        },
    };
    Ok((Upstream::new(servers, ways), launches))
}

/// Servers of a server list read again (SIGHUP): as [`client_side`] makes them, but without
/// plugins, which start only with the program; an entry with one is left out with a warning
/// (restart to use it).
/// `served`: whether TCP and UDP are relayed.
pub fn listed_servers(served: [bool; 2], listed: &[ServerAddr]) -> Vec<Server> {
    let mut servers = Vec::new();
    for a in listed {
        let Some(own) = &a.own else { continue };
        if own.plugin.is_some() {
            log::warn!(
                "server list: {}:{} has a plugin, which starts only with the program; left out \
                 until a restart",
                a.host,
                a.port
            );
            continue;
        }
        let creds = Rc::new(Credentials::new(
            own.method,
            own.key.clone(),
            &own.identity_keys,
        ));
        let server = Server::new(&a.host, a.port, None, served, creds);
        if server.valid_name() {
            servers.push(server);
        }
    }
    servers
}

/// ss-server: what to bind for each listen address, and the plugins that take the public
/// side of it.
pub fn server_side(cfg: &Config, addrs: &[SocketAddr]) -> Result<(Vec<Bind>, Vec<Launch>), String> {
    let (tcp, udp) = carries(cfg);
    let mut binds = Vec::new();
    let mut launches = Vec::new();
    for &addr in addrs {
        let mut bind = Bind::of(cfg, addr);
        if tcp || udp {
            let port = free_port(udp)?;
            if tcp {
                bind.tcp = Some(loopback(port));
            }
            if udp {
                bind.udp = Some(loopback(port));
            }
            launches.push(Launch {
                program: cfg.plugin.clone().unwrap_or_default(),
                opts: cfg.plugin_opts.clone().unwrap_or_default(),
                source: cfg.plugin_source.to_string(),
                remote: (addr.ip().to_string(), addr.port()),
                local: (Ipv4Addr::LOCALHOST.to_string(), port),
                ready: (addr.port(), if tcp { Proto::Tcp } else { Proto::Udp }),
            });
        }
        binds.push(bind);
    }
    Ok((binds, launches))
}

/// What [`start`] ended with.
pub enum Started {
    /// Up (or none configured).
    Running(Option<Rc<Plugins>>),
    /// SIGTERM or SIGINT came while waiting; the plugins were stopped.
    Stopped,
}

/// Starts the plugins (if any) and waits until they are up, or until `signals` brings SIGTERM
/// or SIGINT. Warns when a configured plugin carries nothing this run serves.
pub fn start(cfg: &Config, launches: &[Launch], signals: &SignalFd) -> Result<Started, String> {
    if launches.is_empty() {
        if let Some(plugin) = cfg
            .plugin
            .as_ref()
            .filter(|_| carries(cfg) == (false, false))
        {
            log::warn!(
                "plugin '{plugin}' not started: plugin_mode is {} and this runs {} only",
                cfg.plugin_mode.name(),
                if cfg.transport.tcp() { "TCP" } else { "UDP" }
            );
        }
        return Ok(Started::Running(None));
    }
    let plugins = Plugins::start(&cfg.plugin_args, launches)?;
    let stop = || match sys::read_term_signal(signals) {
        Ok("SIGCHLD" | "SIGUSR1" | "SIGHUP") | Err(_) => None,
        Ok(name) => Some(name),
    };
    if let Some(name) = plugins.wait_ready(stop)? {
        log::info!("received {name} while the plugin was starting, exiting");
        plugins.stop();
        return Ok(Started::Stopped);
    }
    if cfg.mode == Mode::Server && carries(cfg).0 {
        log::info!("bans are off: behind the plugin every connection comes from 127.0.0.1");
    }
    Ok(Started::Running(Some(Rc::new(plugins))))
}

/// Logs the plugins' output from the event loop, and gives what the loop calls on SIGCHLD: the
/// plugin that ended, as a message.
pub fn watch(
    ex: &LocalExecutor,
    plugins: Option<Rc<Plugins>>,
) -> Result<impl Fn() -> Option<String> + 'static, String> {
    if let Some(p) = &plugins {
        p.log_output(ex)
            .map_err(|e| format!("cannot read the plugin's output: {e}"))?;
    }
    Ok(move || plugins.as_ref().and_then(|p| p.exited()))
}
