//! The Shadowsocks servers a client mode relays through: where each is reached (its address,
//! kept resolved by `relay::names`, or the loopback port of its plugin), its keys, its health
//! for the circuit breaker (`policy::breaker`), and what it carried, written to the log on
//! SIGUSR1.
//!
//! Connections and associations hold the `Rc<Server>` they went through, so a server list
//! replaced while they run (SIGHUP) leaves them on their server and its counters.

use crate::dns::Resolver;
use crate::policy::breaker;
use crate::proto::cipher::{MasterKey, Method};
use crate::proto::ss2022::udp::UdpCipher;
use crate::proto::ss2022::Psk;
use crate::relay::names::{self, FirstRound};
use crate::relay::Traffic;
use crate::rt::LocalExecutor;
use crate::sys::{random_salt, OutboundOpts};
use event_listener::Event;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

/// Connections in a row a server may close without answering before that counts as a failure.
const SILENT_STREAK: u8 = 3;

/// A server's method and keys; servers configured alike share one.
pub struct Credentials {
    pub method: Method,
    pub key: MasterKey,
    /// A Shadowsocks 2022 client's identity keys (SIP023), before its user key.
    pub identities: Option<Rc<[Psk]>>,
    /// The packet cipher of a Shadowsocks 2022 method.
    pub udp: Option<UdpCipher>,
}

impl Credentials {
    /// `identity_keys` come before `key` in a SIP023 chain, outermost first; the config checked
    /// their lengths.
    pub fn new(method: Method, key: MasterKey, identity_keys: &[MasterKey]) -> Credentials {
        let psk = |k: &MasterKey| {
            method
                .ss2022()
                .and_then(|m| Psk::from_bytes(m, k.as_bytes()).ok())
        };
        let ids: Vec<Psk> = identity_keys.iter().filter_map(psk).collect();
        let identities: Option<Rc<[Psk]>> = (!ids.is_empty()).then(|| ids.into());
        let udp = psk(&key).map(|p| match &identities {
            Some(ids) => UdpCipher::with_identities(&p, ids),
            None => UdpCipher::new(&p),
        });
        Credentials {
            method,
            key,
            identities,
            udp,
        }
    }
}

/// One configured server and what is known about it.
pub struct Server {
    /// As configured (`host:port`), for the logs.
    pub label: Box<str>,
    pub(super) host: Box<str>,
    pub(super) port: u16,
    /// The loopback port of this server's plugin, when a plugin is configured.
    plugin_port: Option<u16>,
    /// Which transports go through the plugin, by [`TCP`] and [`UDP`].
    via_plugin: [bool; 2],
    /// Which transports this run relays.
    served: [bool; 2],
    /// The server's address: an IP literal's from the start, a name's once resolved.
    pub(super) addr: Cell<Option<SocketAddr>>,
    failures: Cell<u16>,
    /// Connections in a row it closed without answering.
    silent: Cell<u8>,
    /// Wakes the task keeping the name resolved: a failing server may have moved.
    pub(super) moved: Event,
    /// Connections relayed through it, and those open now.
    connections: Cell<u64>,
    open: Cell<u32>,
    pub traffic: Traffic,
    pub creds: Rc<Credentials>,
}

/// TCP and UDP, as indexes into per-transport settings.
pub const TCP: usize = 0;
pub const UDP: usize = 1;

impl Server {
    /// `plugin` is the loopback port of the server's plugin and which transports it carries;
    /// `served` which transports this run relays.
    pub fn new(
        host: &str,
        port: u16,
        plugin: Option<(u16, [bool; 2])>,
        served: [bool; 2],
        creds: Rc<Credentials>,
    ) -> Server {
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
            plugin_port: plugin.map(|(p, _)| p),
            via_plugin: plugin.map_or([false; 2], |(_, carries)| carries),
            served,
            addr: Cell::new(literal.map(|ip| SocketAddr::new(ip, port))),
            failures: Cell::new(0),
            silent: Cell::new(0),
            moved: Event::new(),
            connections: Cell::new(0),
            open: Cell::new(0),
            traffic: Traffic::default(),
            creds,
        }
    }

    pub(super) fn named(&self) -> bool {
        self.host.parse::<IpAddr>().is_err()
    }

    /// An IP address, or a name DNS can carry.
    pub fn valid_name(&self) -> bool {
        !self.named() || crate::dns::wire::check_name(&self.host).is_ok()
    }

    /// Whether `transport` goes to this server through its plugin.
    pub fn through_plugin(&self, transport: usize) -> bool {
        self.via_plugin.get(transport) == Some(&true)
    }

    /// Where this server is reached for `transport`, if it can be now.
    pub fn addr(&self, transport: usize) -> Option<SocketAddr> {
        match self.plugin_port {
            Some(port) if self.through_plugin(transport) => {
                Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            }
            _ => self.addr.get(),
        }
    }

    /// Whether the name must be resolved here: some transport this run relays goes straight
    /// to the server (a plugin resolves the name itself).
    pub(super) fn needs_address(&self) -> bool {
        self.named()
            && [TCP, UDP]
                .into_iter()
                .any(|t| self.served.get(t) == Some(&true) && !self.through_plugin(t))
    }

    /// A connection to it was accepted: that clears its failures, unless it went to its
    /// plugin, which accepts whatever the server does.
    pub fn connected(&self) {
        if !self.through_plugin(TCP) {
            self.succeeded();
        }
    }

    /// It answered a connection.
    pub fn answered(&self) {
        self.silent.set(0);
        self.succeeded();
    }

    /// It closed a connection that had sent data, without answering. A target that refused
    /// looks the same, so only a streak of them counts as a failure.
    pub fn closed_unanswered(&self) {
        let streak = self.silent.get() + 1;
        if streak < SILENT_STREAK {
            self.silent.set(streak);
            return;
        }
        self.silent.set(0);
        self.failed(&format_args!(
            "closed {SILENT_STREAK} connections in a row without answering"
        ));
    }

    /// It works: its failures are forgotten.
    fn succeeded(&self) {
        if self.failures.replace(0) > 0 {
            log::info!("server {} is back", self.label);
        }
    }

    /// It failed (`why`): one more failure, and the first of an episode is logged.
    pub fn failed(&self, why: &dyn std::fmt::Display) {
        let before = self.failures.get();
        self.failures.set(breaker::failed(before));
        if before == 0 {
            log::warn!("server {} is down: {why}", self.label);
            self.moved.notify(1);
        } else {
            log::debug!("server {}: {why}", self.label);
        }
    }

    /// A connection through it starts relaying; its bytes count in what this gives.
    pub fn opened(&self) -> &Traffic {
        self.connections.set(self.connections.get() + 1);
        self.open.set(self.open.get() + 1);
        &self.traffic
    }

    pub fn closed(&self) {
        self.open.set(self.open.get().saturating_sub(1));
    }

    /// Its state and what it carried, one line at info level.
    fn report(&self) {
        let state = match (self.addr(TCP).or(self.addr(UDP)), self.failures.get()) {
            (None, _) => "unresolved",
            (Some(_), 0) => "up",
            (Some(_), _) => "down",
        };
        log::info!(
            "server {}: {state}, failures {}, connections {} ({} open), sent {} B, received {} B",
            self.label,
            self.failures.get(),
            self.connections.get(),
            self.open.get(),
            self.traffic.sent.get(),
            self.traffic.received.get()
        );
    }
}

/// The socket options to the servers: straight, or to a plugin on loopback.
pub struct Ways {
    pub direct: OutboundOpts,
    pub to_plugin: OutboundOpts,
}

/// The servers of a client mode, and how they are reached.
pub struct Upstream {
    servers: RefCell<Rc<[Rc<Server>]>>,
    ways: Ways,
    /// Where the next connection starts, so load spreads over the servers as libev's random
    /// pick does.
    cursor: Cell<usize>,
    pub(super) first: FirstRound,
    /// The first servers, from the config; those after them came from the server list.
    fixed: Cell<usize>,
    /// Where new names' tasks run, once `resolve_names` started them.
    resolving: RefCell<Option<(Rc<LocalExecutor>, Rc<Resolver>)>>,
}

impl Upstream {
    pub fn new(servers: Vec<Server>, ways: Ways) -> Upstream {
        Upstream {
            servers: RefCell::new(servers.into_iter().map(Rc::new).collect()),
            ways,
            cursor: Cell::new(0),
            first: FirstRound::default(),
            fixed: Cell::new(usize::MAX),
            resolving: RefCell::new(None),
        }
    }

    /// The first `n` servers are the config's; the rest came from the server list.
    pub fn set_fixed(&self, n: usize) {
        self.fixed.set(n);
    }

    /// Replaces the servers that came from the server list with `listed`. A server that is
    /// still listed (same address, method and key) keeps its state; connections on servers
    /// that left go on. Gives how many servers are new and how many left.
    pub fn replace_listed(self: &Rc<Self>, listed: Vec<Server>) -> (usize, usize) {
        let old = self.servers();
        let fixed = self.fixed.get().min(old.len());
        let (kept, before) = old.split_at(fixed);
        let mut next: Vec<Rc<Server>> = kept.to_vec();
        let mut added = Vec::new();
        for s in listed {
            let same = |o: &&Rc<Server>| {
                o.label == s.label
                    && o.creds.method == s.creds.method
                    && o.creds.key == s.creds.key
                    && o.plugin_port.is_none()
            };
            match before.iter().find(same) {
                Some(o) => next.push(Rc::clone(o)),
                None => {
                    let s = Rc::new(s);
                    added.push(Rc::clone(&s));
                    next.push(s);
                }
            }
        }
        let gone = before
            .iter()
            .filter(|o| !next.iter().any(|n| Rc::ptr_eq(n, o)))
            .count();
        *self.servers.borrow_mut() = next.into();
        if let Some((ex, resolver)) = self.resolving.borrow().as_ref() {
            for s in added.iter().filter(|s| s.needs_address()) {
                let task =
                    names::keep_resolved(Rc::downgrade(s), Rc::clone(self), Rc::clone(resolver));
                ex.spawn_detached(task);
            }
        }
        (added.len(), gone)
    }

    /// The servers now; a connection keeps its snapshot while it walks them.
    pub fn servers(&self) -> Rc<[Rc<Server>]> {
        Rc::clone(&self.servers.borrow())
    }

    /// The socket options for `transport` to `server`.
    pub fn opts(&self, server: &Server, transport: usize) -> &OutboundOpts {
        match server.through_plugin(transport) {
            true => &self.ways.to_plugin,
            false => &self.ways.direct,
        }
    }

    /// The start of a new connection's walk over `n` servers.
    pub fn start_at(&self, n: usize) -> usize {
        let i = self.cursor.get();
        self.cursor.set(i.wrapping_add(1));
        i % n.max(1)
    }

    /// The next of `servers` to try after `tried`, by the circuit breaker.
    pub fn next(servers: &[Rc<Server>], start: usize, tried: &[usize]) -> Option<usize> {
        let failures = |i: usize| servers.get(i).map_or(0, |s| s.failures.get());
        breaker::next(servers.len(), start, tried, failures, draw)
    }

    /// A server for a new UDP association, other than `not` (the one that just failed).
    pub fn pick_udp(&self, not: Option<&Rc<Server>>) -> Option<(Rc<Server>, SocketAddr)> {
        let servers = self.servers();
        let start = self.start_at(servers.len());
        let mut tried: Vec<usize> = servers
            .iter()
            .position(|s| not.is_some_and(|n| Rc::ptr_eq(s, n)))
            .into_iter()
            .collect();
        while let Some(i) = Upstream::next(&servers, start, &tried) {
            let s = servers.get(i)?;
            if let Some(addr) = s.addr(UDP) {
                return Some((Rc::clone(s), addr));
            }
            tried.push(i);
        }
        None
    }

    /// One line per server, at info level (SIGUSR1).
    pub fn report(&self) {
        for s in self.servers().iter() {
            s.report();
        }
    }

    /// Starts keeping the servers' names resolved (a task per name on `ex`).
    pub fn resolve_names(self: &Rc<Self>, ex: &Rc<LocalExecutor>, resolver: &Rc<Resolver>) {
        *self.resolving.borrow_mut() = Some((Rc::clone(ex), Rc::clone(resolver)));
        for s in self.servers().iter() {
            if s.needs_address() {
                self.first.expect();
                let task =
                    names::keep_resolved(Rc::downgrade(s), Rc::clone(self), Rc::clone(resolver));
                ex.spawn_detached(task);
            }
        }
    }

    /// Returns once every name was looked up once (the resolver bounds how long that takes),
    /// so the first connections find their servers.
    pub async fn names_tried(&self) {
        self.first.all_tried().await
    }
}

/// A uniform random number for the breaker's draws; 0 (try the server) if the system's
/// generator fails.
fn draw() -> u32 {
    let mut b = [0u8; 4];
    let _ = random_salt(&mut b);
    u32::from_le_bytes(b)
}
