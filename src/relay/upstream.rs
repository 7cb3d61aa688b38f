//! The Shadowsocks servers a client mode relays through: where each is reached (its address,
//! kept resolved, or the loopback port of its plugin), its health for the circuit breaker
//! (`policy::breaker`), and what it carried, written to the log on SIGUSR1.
//!
//! A server named by a host name is resolved by a task of its own: at start (every name at
//! once, before the first connection), again when the answer's TTL runs out, and soon after
//! the server starts failing, as its address may have moved. A name that does not resolve is
//! retried with a growing pause (1 s doubling to 60 s) and logged once per episode; the last
//! address that worked stays in use meanwhile, and a server never resolved is skipped, so
//! connections fail at once instead of waiting.

use crate::dns::Resolver;
use crate::policy::breaker;
use crate::relay::Traffic;
use crate::rt::LocalExecutor;
use crate::rt::{self, Timer};
use crate::sys::{random_salt, OutboundOpts};
use event_listener::Event;
use futures_lite::future;
use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often a name with no TTL (from the hosts file) is looked up again, unless its server
/// fails first.
const NO_TTL: Duration = Duration::from_secs(3600);

/// The first pause before a name that did not resolve is tried again, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Connections in a row a server may close without answering before that counts as a failure.
const SILENT_STREAK: u8 = 3;

/// One configured server and what is known about it.
pub struct Server {
    /// As configured (`host:port`), for the logs.
    pub label: Box<str>,
    host: Box<str>,
    port: u16,
    /// The loopback port of this server's plugin, when a plugin is configured.
    plugin_port: Option<u16>,
    /// The server's address: an IP literal's from the start, a name's once resolved.
    addr: Cell<Option<SocketAddr>>,
    failures: Cell<u16>,
    /// Connections in a row it closed without answering.
    silent: Cell<u8>,
    /// Wakes the task keeping the name resolved: a failing server may have moved.
    moved: Event,
    /// Connections relayed through it, and those open now.
    connections: Cell<u64>,
    open: Cell<u32>,
    pub traffic: Traffic,
}

impl Server {
    pub fn new(host: &str, port: u16, plugin_port: Option<u16>) -> Server {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let literal = bare.parse::<IpAddr>().ok();
        let label = match literal {
            Some(IpAddr::V6(_)) => format!("[{bare}]:{port}"),
            _ => format!("{bare}:{port}"),
        };
        Server {
            label: label.into(),
            host: bare.into(),
            port,
            plugin_port,
            addr: Cell::new(literal.map(|ip| SocketAddr::new(ip, port))),
            failures: Cell::new(0),
            silent: Cell::new(0),
            moved: Event::new(),
            connections: Cell::new(0),
            open: Cell::new(0),
            traffic: Traffic::default(),
        }
    }

    fn named(&self) -> bool {
        self.host.parse::<IpAddr>().is_err()
    }

    /// An IP address, or a name DNS can carry.
    pub fn valid_name(&self) -> bool {
        !self.named() || crate::dns::wire::check_name(&self.host).is_ok()
    }
}

/// How one transport reaches the servers: straight, or through each server's plugin.
pub struct Way {
    pub opts: OutboundOpts,
    pub via_plugin: bool,
}

/// The servers of a client mode, and how TCP and UDP reach them (they differ when a plugin
/// carries only one of them).
pub struct Upstream {
    servers: Vec<Server>,
    pub tcp: Way,
    pub udp: Way,
    /// Whether some transport goes straight to the servers, so their names must be resolved
    /// here (a plugin resolves the name itself).
    direct: bool,
    /// Where the next connection starts, so load spreads over the servers as libev's random
    /// pick does.
    cursor: Cell<usize>,
    first: FirstRound,
}

impl Upstream {
    pub fn new(servers: Vec<Server>, tcp: Way, udp: Way, direct: bool) -> Upstream {
        Upstream {
            servers,
            tcp,
            udp,
            direct,
            cursor: Cell::new(0),
            first: FirstRound {
                left: Cell::new(0),
                done: Event::new(),
            },
        }
    }

    pub fn count(&self) -> usize {
        self.servers.len()
    }

    pub fn server(&self, i: usize) -> Option<&Server> {
        self.servers.get(i)
    }

    /// Where server `i` is reached by `way`, if it can be now.
    pub fn addr(&self, i: usize, way: &Way) -> Option<SocketAddr> {
        let s = self.servers.get(i)?;
        match (way.via_plugin, s.plugin_port) {
            (true, Some(port)) => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            _ => s.addr.get(),
        }
    }

    /// The start of a new connection's walk over the servers.
    pub fn start_at(&self) -> usize {
        let i = self.cursor.get();
        self.cursor
            .set(i.wrapping_add(1) % self.servers.len().max(1));
        i
    }

    /// The next server to try after `tried`, by the circuit breaker.
    pub fn next(&self, start: usize, tried: &[usize]) -> Option<usize> {
        let failures = |i: usize| self.servers.get(i).map_or(0, |s| s.failures.get());
        breaker::next(self.servers.len(), start, tried, failures, draw)
    }

    /// A server for a new UDP association, other than `not` (the one that just failed).
    pub fn pick_udp(&self, not: Option<usize>) -> Option<(usize, SocketAddr)> {
        let start = self.start_at();
        let mut tried: Vec<usize> = not.into_iter().collect();
        while let Some(i) = self.next(start, &tried) {
            if let Some(addr) = self.addr(i, &self.udp) {
                return Some((i, addr));
            }
            tried.push(i);
        }
        None
    }

    /// A connection to server `i` was accepted: that clears its failures, unless it went to
    /// the server's plugin, which accepts whatever the server does.
    pub fn connected(&self, i: usize) {
        if !self.tcp.via_plugin {
            self.succeeded(i);
        }
    }

    /// Server `i` answered a connection.
    pub fn answered(&self, i: usize) {
        if let Some(s) = self.servers.get(i) {
            s.silent.set(0);
        }
        self.succeeded(i);
    }

    /// Server `i` closed a connection that had sent data, without answering. A target that
    /// refused looks the same, so only a streak of them counts as a failure.
    pub fn closed_unanswered(&self, i: usize) {
        let Some(s) = self.servers.get(i) else { return };
        let streak = s.silent.get() + 1;
        if streak < SILENT_STREAK {
            s.silent.set(streak);
            return;
        }
        s.silent.set(0);
        self.failed(
            i,
            &format_args!("closed {SILENT_STREAK} connections in a row without answering"),
        );
    }

    /// Server `i` works: its failures are forgotten.
    fn succeeded(&self, i: usize) {
        if let Some(s) = self.servers.get(i) {
            if s.failures.replace(0) > 0 {
                log::info!("server {} is back", s.label);
            }
        }
    }

    /// Server `i` failed (`why`): one more failure, and the first of an episode is logged.
    pub fn failed(&self, i: usize, why: &dyn std::fmt::Display) {
        let Some(s) = self.servers.get(i) else { return };
        let before = s.failures.get();
        s.failures.set(breaker::failed(before));
        if before == 0 {
            log::warn!("server {} is down: {why}", s.label);
            s.moved.notify(1);
        } else {
            log::debug!("server {}: {why}", s.label);
        }
    }

    /// A connection through server `i` starts relaying; its bytes count in what this gives.
    pub fn opened(&self, i: usize) -> Option<&Traffic> {
        let s = self.servers.get(i)?;
        s.connections.set(s.connections.get() + 1);
        s.open.set(s.open.get() + 1);
        Some(&s.traffic)
    }

    pub fn closed(&self, i: usize) {
        if let Some(s) = self.servers.get(i) {
            s.open.set(s.open.get().saturating_sub(1));
        }
    }

    /// One line per server, at info level: its state and what it carried (SIGUSR1).
    pub fn report(&self) {
        for (i, s) in self.servers.iter().enumerate() {
            let state = match (
                self.addr(i, &self.tcp).or(self.addr(i, &self.udp)),
                s.failures.get(),
            ) {
                (None, _) => "unresolved",
                (Some(_), 0) => "up",
                (Some(_), _) => "down",
            };
            log::info!(
                "server {}: {state}, failures {}, connections {} ({} open), sent {} B, \
                 received {} B",
                s.label,
                s.failures.get(),
                s.connections.get(),
                s.open.get(),
                s.traffic.sent.get(),
                s.traffic.received.get()
            );
        }
    }

    /// Starts keeping the servers' names resolved (a task per name on `ex`).
    pub fn resolve_names(self: &Rc<Self>, ex: &LocalExecutor, resolver: &Rc<Resolver>) {
        if !self.direct {
            return;
        }
        for (i, s) in self.servers.iter().enumerate() {
            if s.named() {
                self.first.left.set(self.first.left.get() + 1);
                ex.spawn(keep_resolved(Rc::clone(self), i, Rc::clone(resolver)))
                    .detach();
            }
        }
    }

    /// Returns once every name was looked up once (the resolver bounds how long that takes),
    /// so the first connections find their servers.
    pub async fn names_tried(&self) {
        loop {
            let listener = self.first.done.listen();
            if self.first.left.get() == 0 {
                return;
            }
            listener.await;
        }
    }
}

/// Names not tried yet at start.
struct FirstRound {
    left: Cell<usize>,
    done: Event,
}

impl FirstRound {
    fn tried(&self) {
        if let Some(n) = self.left.get().checked_sub(1) {
            self.left.set(n);
            self.done.notify(usize::MAX);
        }
    }
}

/// Keeps server `i`'s name resolved for as long as the process runs.
async fn keep_resolved(up: Rc<Upstream>, i: usize, resolver: Rc<Resolver>) {
    let Some(s) = up.servers.get(i) else { return };
    let mut lookup = Lookup {
        first: true,
        pause: RETRY_FIRST,
        failing: false,
    };
    loop {
        let moved = s.moved.listen();
        let found = resolver.resolve(&s.host, s.port).await;
        if std::mem::take(&mut lookup.first) {
            up.first.tried();
        }
        // A name that resolved is looked up again when its answer expires or the server fails;
        // one that did not, after a pause (or sooner if the server fails).
        let until = lookup.found(s, found, &resolver);
        future::or(Timer::at(until), moved).await;
        resolver.forget(&s.host);
    }
}

/// Where a server's lookups stand.
struct Lookup {
    first: bool,
    pause: Duration,
    /// A failure was logged and no lookup has succeeded since.
    failing: bool,
}

impl Lookup {
    /// Takes in a lookup's result, logging what changed; gives when to look again.
    fn found(&mut self, s: &Server, found: io::Result<Vec<SocketAddr>>, r: &Resolver) -> Instant {
        match found.map(|addrs| addrs.first().copied()) {
            Ok(Some(addr)) => {
                if s.addr.replace(Some(addr)) != Some(addr) {
                    log::info!("server '{}' resolves to {}", s.host, addr.ip());
                }
                self.failing = false;
                self.pause = RETRY_FIRST;
                // Never in the past, which would make the task spin.
                let now = rt::now();
                r.cached_until(&s.host)
                    .unwrap_or(now + NO_TTL)
                    .max(now + RETRY_FIRST)
            }
            Ok(None) => self.failed(s, &"no address"),
            Err(e) => self.failed(s, &e),
        }
    }

    fn failed(&mut self, s: &Server, e: &dyn std::fmt::Display) -> Instant {
        if !self.failing {
            let still = match s.addr.get() {
                Some(_) => "the last address meanwhile",
                None => "none meanwhile",
            };
            log::warn!(
                "server '{}': {e}; retrying with a growing pause (up to {} s), using {still}",
                s.host,
                RETRY_MAX.as_secs()
            );
            self.failing = true;
        } else {
            log::debug!("server '{}': again: {e}", s.host);
        }
        let pause = self.pause;
        self.pause = (pause * 2).min(RETRY_MAX);
        rt::now() + pause
    }
}

/// A uniform random number for the breaker's draws; 0 (try the server) if the system's
/// generator fails.
fn draw() -> u32 {
    let mut b = [0u8; 4];
    let _ = random_salt(&mut b);
    u32::from_le_bytes(b)
}
