//! Start-up, before the event loop and around it: resolving the configured names, binding the
//! listeners, raising the descriptor limit, and running until SIGTERM/SIGINT. Every failure is
//! one line worded for users.

use crate::config::{Config, Mode};
use crate::dns::Resolver;
use crate::logger;
use crate::proto::cipher::Method;
use crate::rt::{self, Async, Timer};
use crate::rt::{LocalExecutor, Task};
use crate::sys::{self, OutboundOpts};
use futures_lite::future;
use nix::sys::signalfd::SignalFd;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

/// Sockets bound at start-up for one listen address.
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub udp: Option<UdpSocket>,
}

/// Host names the resolver caches; a few hundred bytes each.
const DNS_CACHE_ENTRIES: usize = 512;

/// Options for every socket to the server, to targets and to nameservers.
pub fn outbound_opts(cfg: &Config) -> OutboundOpts {
    OutboundOpts {
        fwmark: cfg.fwmark,
        interface: cfg.interface.clone(),
        bind_addr: None,
        no_delay: cfg.no_delay,
        fast_open: cfg.fast_open,
    }
}

/// The resolver. Start-up names (listen and server addresses) go through it too, so the binary
/// needs no getaddrinfo.
pub fn resolver(cfg: &Config, opts: &OutboundOpts) -> Result<Rc<Resolver>, String> {
    Resolver::new(
        cfg.nameservers.clone(),
        cfg.ipv6_first,
        DNS_CACHE_ENTRIES,
        opts.clone(),
    )
    .map_err(|e| format!("cannot set up the DNS resolver: {e}"))
}

/// `-a USER`: switches to the user, keeping the capabilities the mode still needs.
pub fn drop_privileges(cfg: &Config, binds: &[Bind]) -> Result<(), String> {
    let Some(user) = &cfg.user else {
        return Ok(());
    };
    // Transparent reply sockets (ss-redir's UDP) and SO_MARK both need CAP_NET_ADMIN.
    let net_admin = (cfg.mode == Mode::Redir && cfg.transport.udp()) || cfg.fwmark.is_some();
    let ports = binds.iter().flat_map(|b| [b.tcp, b.udp]).flatten();
    let keep = sys::kept_capabilities(ports.map(|a| a.port()), net_admin);
    sys::run_as(user, &keep).map_err(|e| format!("cannot run as user '{user}': {e}"))
}

pub fn write_pid_file(cfg: &Config) -> Result<(), String> {
    match &cfg.pid_file {
        Some(path) => std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write pid file {}: {e}", path.display())),
        None => Ok(()),
    }
}

pub fn remove_pid_file(cfg: &Config) {
    if let Some(path) = &cfg.pid_file {
        let _ = std::fs::remove_file(path);
    }
}

pub fn log_listening(cfg: &Config, b: &Bind) {
    // A side bound elsewhere than the configured address is behind the plugin (ss-server).
    let side = |name: &str, at: Option<SocketAddr>| match at {
        Some(a) if a == b.addr => Some(name.to_string()),
        Some(a) => Some(format!("{name} through the plugin, to {a}")),
        None => None,
    };
    let what: Vec<String> = [side("TCP", b.tcp), side("UDP", b.udp)]
        .into_iter()
        .flatten()
        .collect();
    let (program, method) = (cfg.mode.program(), cfg.method.name());
    log::info!(
        "{program} listening on {} ({}), method {method}",
        b.addr,
        what.join(" and ")
    );
}

/// When this binary was built, in unix seconds (build.rs).
fn built_at() -> u64 {
    env!("SS_SMOL_BUILT").parse().unwrap_or(0)
}

/// Shadowsocks 2022 stamps every header and refuses those more than 30 s off, so a router that
/// booted without a real-time clock and has not synced it yet cannot connect: says so at start
/// when the clock reads earlier than the build. Only warns, as NTP may set it any moment.
pub fn check_clock(method: Method, now: u64) -> Option<String> {
    let built = built_at();
    if method.ss2022().is_none() || now >= built {
        return None;
    }
    let date = |secs: u64| {
        let (y, m, d) = crate::logger::civil_from_days(secs / 86_400);
        format!("{y}-{m:02}-{d:02}")
    };
    Some(format!(
        "the system clock reads {}, before this program was built ({}): {} needs the time \
         within 30 s of the server's, so connections fail until the clock is set (NTP)",
        date(now),
        date(built),
        method.name()
    ))
}

/// Raises RLIMIT_NOFILE to `nofile`, or to the hard limit when the connection cap needs it.
pub fn raise_nofile(cfg: &Config) -> Result<(), String> {
    if let Some(n) = cfg.nofile {
        sys::set_nofile(n).map_err(|e| format!("cannot set the open file limit to {n}: {e}"))?;
    } else if let Ok(n) = sys::nofile() {
        // Each connection needs two descriptors.
        if (n as usize) < cfg.limits.max_conns * 2 + 32 {
            let _ = sys::raise_nofile_to_hard();
        }
    }
    Ok(())
}

/// What one listen address binds: TCP and UDP each on `addr` unless a plugin takes that side
/// (then on a loopback port behind it). `addr` is what users configured, for the logs.
#[derive(Clone, Copy, Debug)]
pub struct Bind {
    pub addr: SocketAddr,
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
}

impl Bind {
    /// `addr` for every transport the config serves.
    pub fn of(cfg: &Config, addr: SocketAddr) -> Bind {
        Bind {
            addr,
            tcp: cfg.transport.tcp().then_some(addr),
            udp: cfg.transport.udp().then_some(addr),
        }
    }
}

pub fn bind(cfg: &Config, b: &Bind) -> Result<Listeners, String> {
    let hint = "is another instance running? pick another address or port";
    let redir = cfg.mode == Mode::Redir;
    let tproxy_tcp = redir && cfg.tcp_tproxy;
    let tcp = match b.tcp {
        Some(addr) => {
            let listener = if tproxy_tcp {
                sys::tcp_tproxy_listener(addr, cfg.reuse_port, cfg.fast_open)
            } else {
                sys::tcp_listener(addr, cfg.reuse_port, cfg.fast_open)
            };
            Some(listener.map_err(|e| {
                let kind = if tproxy_tcp { "TCP TPROXY" } else { "TCP" };
                bind_error(addr, kind, &e, hint)
            })?)
        }
        None => None,
    };
    let udp = match b.udp {
        Some(addr) => {
            let socket = if redir {
                sys::udp_tproxy_listener(addr, cfg.reuse_port)
            } else {
                sys::udp_listener(addr, cfg.reuse_port)
            };
            let kind = if redir { "UDP TPROXY" } else { "UDP" };
            Some(socket.map_err(|e| bind_error(addr, kind, &e, hint))?)
        }
        None => None,
    };
    Ok(Listeners { tcp, udp })
}

/// A listener that could not be made, worded for the cause: a transparent socket without
/// CAP_NET_ADMIN says what to do instead.
fn bind_error(addr: SocketAddr, kind: &str, e: &io::Error, hint: &str) -> String {
    if e.kind() == io::ErrorKind::PermissionDenied && kind.ends_with("TPROXY") {
        return format!(
            "cannot listen on {addr} ({kind}): {e}; start ss-redir as root (with -a USER it \
             keeps only CAP_NET_ADMIN) or grant it with `setcap cap_net_admin+ep`; a \
             REDIRECT-only TCP setup needs neither: drop -u/-U and -T"
        );
    }
    format!("cannot listen on {addr} ({kind}): {e}; {hint}")
}

/// Resolves a start-up name to completion before the event loop starts.
fn resolve_now(resolver: &Rc<Resolver>, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    rt::block_on(resolver.resolve(host, port))?
}

/// A listen address: an IP, or a name of this host.
pub fn listen_address(
    resolver: &Rc<Resolver>,
    host: &str,
    port: u16,
) -> Result<SocketAddr, String> {
    resolve_now(resolver, host, port)
        .ok()
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| format!("cannot use local address '{host}': not an address of this host"))
}

/// ss-server's listen addresses (`-s`, several allowed). A dual-stack `::` already covers
/// `0.0.0.0` on the same port, so that pair binds once.
pub fn server_listen_addresses(
    cfg: &Config,
    resolver: &Rc<Resolver>,
) -> Result<Vec<SocketAddr>, String> {
    let mut addrs = Vec::new();
    for s in &cfg.servers {
        addrs.push(listen_address(resolver, &s.host, s.port)?);
    }
    let dual: Vec<u16> = addrs
        .iter()
        .filter(|a| a.ip() == IpAddr::from(Ipv6Addr::UNSPECIFIED))
        .map(|a| a.port())
        .collect();
    addrs.retain(|a| !(a.ip() == IpAddr::from(Ipv4Addr::UNSPECIFIED) && dual.contains(&a.port())));
    addrs.dedup();
    Ok(addrs)
}

/// The UDP listener, registered with the event loop.
pub fn udp_socket(l: Option<UdpSocket>) -> Result<Option<Async<UdpSocket>>, String> {
    l.map(Async::new)
        .transpose()
        .map_err(|e| format!("cannot start the UDP relay: {e}"))
}

/// SIGTERM, SIGINT (and SIGCHLD, SIGUSR1) from here on arrive on a descriptor instead of
/// ending the process: taken before plugins start, so a stop during their start-up is an
/// orderly one.
pub fn take_signals() -> Result<SignalFd, String> {
    sys::term_signals().map_err(|e| format!("cannot receive SIGTERM and SIGINT: {e}"))
}

/// Runs the listeners' tasks until one fails (its error is the result), a signal asks the
/// process to stop (`Ok`), or on SIGCHLD `child_ended` reports a child (plugin) that ended
/// (an error). SIGUSR1 and SIGHUP go to `on_signal`; `housekeeping` runs every 10 s.
pub fn run_until_signal(
    ex: &LocalExecutor,
    mut serving: Vec<Task<Result<(), String>>>,
    signals: SignalFd,
    child_ended: impl Fn() -> Option<String> + 'static,
    on_signal: impl Fn(&str) + 'static,
    housekeeping: impl Fn() + 'static,
) -> Result<(), String> {
    let signals = Async::new_nonblocking(signals)
        .map_err(|e| format!("cannot receive SIGTERM and SIGINT: {e}"))?;
    let serving = future::poll_fn(move |cx| {
        for task in serving.iter_mut() {
            if let Poll::Ready(r) = Pin::new(task).poll(cx) {
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    });
    // A task of its own: the future given to `ex.run` is polled every time any task wakes; a
    // task is polled only when a signal arrives or its timer fires. Every 10 s: the count of a
    // flood that stopped is written, and `housekeeping` runs (memory a flood made resident
    // goes back).
    let signalled = ex.spawn(async move {
        loop {
            let signal = future::or(
                async { Some(signals.read_with(sys::read_term_signal).await) },
                async {
                    Timer::after(Duration::from_secs(10)).await;
                    None
                },
            )
            .await;
            let name = match signal {
                None => {
                    logger::flush_summaries();
                    housekeeping();
                    continue;
                }
                Some(name) => name.unwrap_or("SIGTERM"),
            };
            if name == "SIGUSR1" || name == "SIGHUP" {
                on_signal(name);
                continue;
            }
            if name == "SIGCHLD" {
                match child_ended() {
                    Some(why) => return Err(why),
                    None => continue,
                }
            }
            log::info!("received {name}, exiting");
            return Ok(());
        }
    });
    rt::block_on(ex.run(future::or(signalled, serving)))
        .map_err(|e| format!("event loop failed: {e}"))
        .and_then(|r| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_before_the_build_is_reported_for_2022_methods_only() {
        let m = Method::Ss2022Aes256Gcm;
        let w = check_clock(m, 946_684_800).unwrap();
        assert!(
            w.starts_with("the system clock reads 2000-01-01, before"),
            "{w}"
        );
        assert!(
            w.contains("2022-blake3-aes-256-gcm") && w.contains("NTP"),
            "{w}"
        );
        assert_eq!(check_clock(m, built_at()), None);
        assert_eq!(check_clock(Method::Aes256Gcm, 0), None);
        assert!(built_at() > 1_700_000_000, "build.rs sets SS_SMOL_BUILT");
    }
}
