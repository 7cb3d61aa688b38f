//! Non-blocking DNS resolver for the server side: target host names → addresses, without ever
//! blocking the event loop (no `getaddrinfo`, no thread per lookup).
//!
//! A lookup asks for A and AAAA at the same time, each over a fresh UDP socket (random source
//! port, connected to the nameserver so the kernel drops datagrams from anyone else) with a
//! random 16-bit ID. A response counts only if it comes from that server with our ID and our
//! question; anything else is ignored and the wait goes on. An attempt lasts
//! [`ATTEMPT_TIMEOUT`]; every nameserver is tried in turn, [`ROUNDS`] times. At most
//! [`MAX_IN_FLIGHT`] queries are outstanding at once (further lookups wait for a slot), and
//! concurrent lookups of one name share a single pair of queries.
//!
//! Before any query: IP literals are returned as they are, then `/etc/hosts` (read once, at
//! start-up, like c-ares in shadowsocks-libev) is consulted, then the cache. The cache holds at
//! most `cache_capacity` names; an answer lives for its smallest TTL clamped to
//! [`MIN_TTL`]..=[`MAX_TTL`], a name that does not exist for [`NEGATIVE_TTL`]. When full, the
//! entry that expires soonest makes room. Search domains and `ndots` from resolv.conf are not
//! applied: a proxy's targets are fully qualified names. No EDNS and no TCP: an answer cut short
//! (TC) is used for the addresses it does hold, and one holding none is an error.
//!
//! # What goes over the wire ([`wire`], RFC 1035 §4)
//!
//! ```text
//! Header (12 bytes), all fields big-endian:
//!                                 1  1  1  1  1  1
//!   0  1  2  3  4  5  6  7  8  9  0  1  2  3  4  5
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//! |                      ID                       |  random per query; must come back equal
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//! |QR|  Opcode   |AA|TC|RD|RA| Z(3)   |  RCODE    |  we send RD=1; accept QR=1, Opcode=0;
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+  RCODE 0 = answers, 3 = NXDOMAIN
//! |                    QDCOUNT                    |  1 (checked)
//! |                    ANCOUNT                    |  records walked
//! |                    NSCOUNT                    |  ignored
//! |                    ARCOUNT                    |  ignored
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//!
//! Question (echoed by the server; compared with ours, case-insensitively):
//! +--------------------------------+-------+--------+
//! | QNAME: len label … 0           | QTYPE | QCLASS |   QTYPE A = 1 or AAAA = 28, QCLASS IN = 1
//! +--------------------------------+-------+--------+
//!   e.g. 07 'example' 03 'com' 00     2 B     2 B
//!
//! Answer record (ANCOUNT of them):
//! +-------------+------+-------+-----+----------+-------------------+
//! | NAME        | TYPE | CLASS | TTL | RDLENGTH | RDATA             |
//! +-------------+------+-------+-----+----------+-------------------+
//!   labels and/or   2 B    2 B    4 B    2 B       A: 4 B address
//!   a pointer                                      AAAA: 16 B address
//!   11pppppp pppppppp (14-bit offset,              CNAME: a NAME (may use pointers)
//!   must point backwards)
//! ```
//!
//! CNAMEs are followed inside the answer section from the question's name (at most
//! [`wire::MAX_CNAME_HOPS`]); the addresses kept are those owned by the end of the chain.

pub mod wire;

use crate::quote::{List, Quoted};
use crate::rt::{self, Async, Semaphore, Timer};
use crate::sys::{self, OutboundOpts};
use event_listener::Event;
use futures_lite::future;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Port of nameservers read from resolv.conf.
pub const DNS_PORT: u16 = 53;
/// How long one query to one nameserver may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times the list of nameservers is gone through.
pub const ROUNDS: usize = 2;
/// Queries outstanding at once, over all lookups (an A+AAAA lookup makes two).
pub const MAX_IN_FLIGHT: usize = 64;
/// Shortest time an answer is cached, whatever its TTL.
pub const MIN_TTL: Duration = Duration::from_secs(5);
/// Longest time an answer is cached, whatever its TTL.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// How long "no such name" / "no addresses" is remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Nameservers taken from resolv.conf (glibc's MAXNS).
pub const MAX_RESOLV_NAMESERVERS: usize = 3;
/// Names loaded from the hosts file; the rest are left out with a warning (memory stays
/// bounded even with a huge ad-blocking hosts file).
pub const MAX_HOSTS_NAMES: usize = 4096;

const RESOLV_CONF: &str = "/etc/resolv.conf";
const HOSTS: &str = "/etc/hosts";
/// Receive buffer per attempt. We send no EDNS, so answers are at most 512 bytes; the rest is
/// margin for servers that ignore that.
const RECV_BUF: usize = 1500;

/// Everything [`Resolver::with_options`] can be told; [`Options::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// Empty: the `nameserver` lines of /etc/resolv.conf, or 127.0.0.1:53 if there are none.
    pub nameservers: Vec<SocketAddr>,
    /// Order IPv6 addresses before IPv4 ones (`-6`).
    pub prefer_v6: bool,
    /// Names cached at most; 0 disables the cache.
    pub cache_capacity: usize,
    /// Hosts file read once at start-up; `None` for none.
    pub hosts_file: Option<PathBuf>,
    pub attempt_timeout: Duration,
    pub rounds: usize,
    pub max_in_flight: usize,
    /// Socket options for queries, as for every other outbound socket (SO_MARK keeps them out
    /// of a router's redirect rules, SO_BINDTODEVICE on the right uplink).
    pub outbound: OutboundOpts,
}

impl Options {
    pub fn new(nameservers: Vec<SocketAddr>, prefer_v6: bool, cache_capacity: usize) -> Options {
        Options {
            nameservers,
            prefer_v6,
            cache_capacity,
            hosts_file: Some(PathBuf::from(HOSTS)),
            attempt_timeout: ATTEMPT_TIMEOUT,
            rounds: ROUNDS,
            max_in_flight: MAX_IN_FLIGHT,
            outbound: OutboundOpts::default(),
        }
    }
}

/// The resolver. One per process, shared as `Rc` by everything on the executor's thread.
pub struct Resolver {
    nameservers: Vec<SocketAddr>,
    prefer_v6: bool,
    attempt_timeout: Duration,
    rounds: usize,
    outbound: OutboundOpts,
    hosts: Names,
    cache: RefCell<Cache>,
    /// Lookups on the wire, by name: later callers for the same name wait for the first. A
    /// list: it holds only the names being looked up right now.
    pending: RefCell<Vec<(Box<str>, Rc<Pending>)>>,
    slots: Semaphore,
    queries_sent: Cell<u64>,
}

/// What a lookup came to, as callers waiting on it receive it (io::Error is not Clone).
type Shared = Result<Rc<[IpAddr]>, (io::ErrorKind, Rc<str>)>;

struct Pending {
    result: RefCell<Option<Shared>>,
    done: Event,
}

impl Resolver {
    /// `nameservers` empty → /etc/resolv.conf's (IPv4 and IPv6, port 53), falling back to
    /// 127.0.0.1:53 if none. Also loads /etc/hosts once.
    pub fn new(
        nameservers: Vec<SocketAddr>,
        prefer_v6: bool,
        cache_capacity: usize,
        outbound: OutboundOpts,
    ) -> io::Result<Rc<Resolver>> {
        let mut opts = Options::new(nameservers, prefer_v6, cache_capacity);
        opts.outbound = outbound;
        Resolver::with_options(opts)
    }

    pub fn with_options(opts: Options) -> io::Result<Rc<Resolver>> {
        let mut nameservers = opts.nameservers;
        if nameservers.is_empty() {
            nameservers = match std::fs::read_to_string(RESOLV_CONF) {
                Ok(text) => parse_resolv_conf(&text),
                Err(e) => {
                    log::debug!("dns: cannot read {RESOLV_CONF}: {e}");
                    Vec::new()
                }
            };
            if nameservers.is_empty() {
                log::warn!("dns: no nameserver in {RESOLV_CONF}; using 127.0.0.1:53");
                nameservers.push(SocketAddr::from((Ipv4Addr::LOCALHOST, DNS_PORT)));
            }
        }
        let hosts = match &opts.hosts_file {
            None => HashMap::new(),
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => {
                    let (hosts, left_out) =
                        parse_hosts(&String::from_utf8_lossy(&bytes), MAX_HOSTS_NAMES);
                    if left_out > 0 {
                        log::warn!(
                            "dns: {}: only the first {MAX_HOSTS_NAMES} names are used, \
                             {left_out} left out",
                            path.display()
                        );
                    }
                    hosts
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
                Err(e) => {
                    log::warn!("dns: cannot read {}: {e}", path.display());
                    HashMap::new()
                }
            },
        };
        log::debug!(
            "dns: nameservers {}, {} names from the hosts file",
            List(&nameservers),
            hosts.len()
        );
        Ok(Rc::new(Resolver {
            nameservers,
            prefer_v6: opts.prefer_v6,
            attempt_timeout: opts.attempt_timeout,
            rounds: opts.rounds.max(1),
            outbound: opts.outbound,
            hosts,
            cache: RefCell::new(Cache::new(opts.cache_capacity)),
            pending: RefCell::new(Vec::new()),
            slots: Semaphore::new(opts.max_in_flight.max(1)),
            queries_sent: Cell::new(0),
        }))
    }

    /// The nameservers queried, in order.
    pub fn nameservers(&self) -> &[SocketAddr] {
        &self.nameservers
    }

    /// Queries sent so far (each attempt of each A or AAAA query counts one).
    pub fn queries_sent(&self) -> u64 {
        self.queries_sent.get()
    }

    /// When the cached answer for `host` expires; `None` for a name not cached (an IP literal,
    /// a hosts-file name, or one not looked up).
    pub fn cached_until(&self, host: &str) -> Option<Instant> {
        let cache = self.cache.borrow();
        cache
            .map
            .get(host.to_ascii_lowercase().as_str())
            .map(|e| e.expires)
    }

    /// Drops `host`'s cached answer, so the next lookup asks the nameservers.
    pub fn forget(&self, host: &str) {
        let key = host.to_ascii_lowercase();
        self.cache.borrow_mut().map.remove(key.as_str());
    }

    /// A and AAAA (both queried concurrently); IP literals returned directly; the preferred
    /// family first. Errors name the host: NotFound for NXDOMAIN or no records, TimedOut when
    /// no server answered, InvalidInput for a name that cannot be a DNS name, …
    pub async fn resolve(self: &Rc<Self>, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let ips = self.resolve_ips(host).await?;
        Ok(ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect())
    }

    async fn resolve_ips(&self, host: &str) -> io::Result<Rc<[IpAddr]>> {
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(Rc::from([ip]));
        }
        let name = wire::check_name(host).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot resolve {}: not a valid host name", Quoted(host)),
            )
        })?;
        let key = name.to_ascii_lowercase();
        if let Some(ips) = self.hosts_lookup(&key) {
            return Ok(ips);
        }
        loop {
            if let Some(hit) = self.cache.borrow_mut().get(&key, rt::now()) {
                return hit.map_err(|why| not_found(name, why));
            }
            let waiting = self
                .pending
                .borrow()
                .iter()
                .find(|(k, _)| **k == *key.as_str())
                .map(|(_, p)| Rc::clone(p));
            let Some(pending) = waiting else { break };
            let listener = pending.done.listen();
            if pending.result.borrow().is_none() {
                listener.await;
            }
            let result = pending.result.borrow().clone();
            if let Some(r) = result {
                return r.map_err(|(kind, msg)| io::Error::new(kind, msg.to_string()));
            }
            // The lookup we waited for was abandoned (its caller went away): start over.
        }

        // We lead this lookup; `lead` publishes the outcome (or the abandonment) on drop.
        let pending = Rc::new(Pending {
            result: RefCell::new(None),
            done: Event::new(),
        });
        self.pending
            .borrow_mut()
            .push((key.as_str().into(), Rc::clone(&pending)));
        let lead = Lead {
            resolver: self,
            pending,
        };
        let result = self.lookup(name, &key).await;
        *lead.pending.result.borrow_mut() = Some(match &result {
            Ok(ips) => Ok(Rc::clone(ips)),
            Err(e) => Err((e.kind(), e.to_string().into())),
        });
        drop(lead);
        result
    }

    fn hosts_lookup(&self, key: &str) -> Option<Rc<[IpAddr]>> {
        let ips = match self.hosts.get(key).map(|e| &e.answer) {
            Some(Ok(ips)) => ips.to_vec(),
            Some(Err(_)) => return None,
            // RFC 6761 §6.3: localhost names are loopback, whatever the servers say.
            None if key == "localhost" || key.ends_with(".localhost") => {
                vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
            }
            None => return None,
        };
        let (v4, v6) = ips.into_iter().partition(IpAddr::is_ipv4);
        Some(self.ordered(v4, v6))
    }

    fn ordered(&self, v4: Vec<IpAddr>, v6: Vec<IpAddr>) -> Rc<[IpAddr]> {
        let (first, second) = if self.prefer_v6 { (v6, v4) } else { (v4, v6) };
        first.into_iter().chain(second).collect()
    }

    /// Both queries, combined and cached.
    async fn lookup(&self, name: &str, key: &str) -> io::Result<Rc<[IpAddr]>> {
        let (a, aaaa) = future::zip(
            self.query(name, wire::TYPE_A),
            self.query(name, wire::TYPE_AAAA),
        )
        .await;
        // Addresses of either family win; then NXDOMAIN; then a failure (not cached: the
        // next lookup asks again); then "exists, but has neither A nor AAAA".
        let (mut v4, mut v6, mut ttl) = (Vec::new(), Vec::new(), u32::MAX);
        let (mut nxdomain, mut failure) = (false, None);
        for (outcome, family) in [(a, &mut v4), (aaaa, &mut v6)] {
            match outcome {
                Ok(Outcome::Addrs(ips, t)) => {
                    *family = ips;
                    ttl = ttl.min(t);
                }
                Ok(Outcome::NoData) => {}
                Ok(Outcome::NxDomain) => nxdomain = true,
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let now = rt::now();
        if !v4.is_empty() || !v6.is_empty() {
            let ips = self.ordered(v4, v6);
            let ttl = Duration::from_secs(ttl.into()).clamp(MIN_TTL, MAX_TTL);
            self.cache
                .borrow_mut()
                .insert(key, Ok(Rc::clone(&ips)), ttl, now);
            log::debug!("dns: {name} -> {}", List(&ips));
            return Ok(ips);
        }
        let negative = match failure {
            _ if nxdomain => "no such host (NXDOMAIN)",
            Some(e) => return Err(e),
            None => "no A or AAAA records",
        };
        self.cache
            .borrow_mut()
            .insert(key, Err(negative), NEGATIVE_TTL, now);
        log::debug!("dns: {name}: {negative}");
        Err(not_found(name, negative))
    }

    /// One question, asked of each nameserver in turn until one answers, for `rounds` rounds.
    async fn query(&self, name: &str, qtype: u16) -> io::Result<Outcome> {
        let _slot = self.slots.acquire().await;
        let mut last = None;
        for _ in 0..self.rounds {
            for &server in &self.nameservers {
                match self.attempt(server, name, qtype).await {
                    Ok(outcome) => return Ok(outcome),
                    Err(e) => {
                        log::debug!("dns: {e}");
                        last = Some(e);
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot resolve {name}: no nameserver"),
            )
        }))
    }

    async fn attempt(&self, server: SocketAddr, name: &str, qtype: u16) -> io::Result<Outcome> {
        let kind = if qtype == wire::TYPE_A { "A" } else { "AAAA" };
        let fail = |k: io::ErrorKind, why: &dyn std::fmt::Display| {
            io::Error::new(
                k,
                format!("cannot resolve {name}: {kind} query to {server}: {why}"),
            )
        };
        let mut id = [0u8; 2];
        getrandom::fill(&mut id).map_err(|e| fail(io::ErrorKind::Other, &e))?;
        let query = wire::encode_query(u16::from_be_bytes(id), name, qtype)
            .map_err(|e| fail(io::ErrorKind::InvalidInput, &e))?;
        let socket = sys::outbound_udp_socket(server, &self.outbound)
            .and_then(Async::new_nonblocking)
            .map_err(|e| fail(e.kind(), &e))?;
        // Connected: the kernel drops datagrams from other sources and reports ICMP errors.
        socket
            .get_ref()
            .connect(server)
            .map_err(|e| fail(e.kind(), &e))?;
        self.queries_sent.set(self.queries_sent.get() + 1);
        let deadline = rt::now() + self.attempt_timeout;
        let exchange = async {
            socket.send(&query).await?;
            let mut buf = vec![0u8; RECV_BUF];
            loop {
                let (n, from) = socket.recv_from(&mut buf).await?;
                if from.ip() != server.ip() || from.port() != server.port() {
                    continue;
                }
                match wire::decode_response(buf.get(..n).unwrap_or_default(), &query) {
                    Err(e) if e.is_foreign() => continue,
                    other => return Ok(other),
                }
            }
        };
        let timeout = async {
            Timer::at(deadline).await;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        };
        let response = match future::or(exchange, timeout).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(fail(io::ErrorKind::InvalidData, &e)),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                // Whole milliseconds as u64: formatting a u128 links 1.3 KB more.
                let ms = self.attempt_timeout.as_secs() * 1000
                    + u64::from(self.attempt_timeout.subsec_millis());
                let why = format!("no answer within {ms} ms");
                return Err(fail(io::ErrorKind::TimedOut, &why));
            }
            Err(e) => return Err(fail(e.kind(), &e)),
        };
        match (response.rcode, response.ttl) {
            (wire::RCODE_NOERROR, Some(ttl)) => Ok(Outcome::Addrs(response.addrs, ttl)),
            (wire::RCODE_NOERROR, None) if response.truncated => Err(fail(
                io::ErrorKind::InvalidData,
                &"answer truncated (TC) with no usable address",
            )),
            (wire::RCODE_NOERROR, None) => Ok(Outcome::NoData),
            (wire::RCODE_NXDOMAIN, _) => Ok(Outcome::NxDomain),
            (rcode, _) => Err(fail(
                io::ErrorKind::Other,
                &format_args!("server answered {} ({rcode})", wire::rcode_name(rcode)),
            )),
        }
    }
}

fn not_found(name: &str, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("cannot resolve {name}: {why}"),
    )
}

/// What one nameserver said to one question.
enum Outcome {
    /// Addresses and the smallest TTL on their chain.
    Addrs(Vec<IpAddr>, u32),
    /// The name exists, without records of this type.
    NoData,
    NxDomain,
}

/// The leader of a lookup. On drop (done or abandoned) it leaves the pending table and wakes
/// the waiters, who find the result or, if there is none, start over.
struct Lead<'a> {
    resolver: &'a Resolver,
    pending: Rc<Pending>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut table = self.resolver.pending.borrow_mut();
        if let Some(i) = table.iter().position(|(_, p)| Rc::ptr_eq(p, &self.pending)) {
            table.swap_remove(i);
        }
        self.pending.done.notify(usize::MAX);
    }
}

/// Names and their answers: the cache's map, and the hosts file's (whose entries never
/// expire). One type for both, so the binary has one copy of the hash map's code.
pub type Names = HashMap<Box<str>, CacheEntry>;

/// Name → addresses, or why there are none, until a deadline; at most `capacity` names.
struct Cache {
    capacity: usize,
    map: Names,
}

/// Addresses, or the reason a name has none (NXDOMAIN, no records).
type Answer = Result<Rc<[IpAddr]>, &'static str>;

pub struct CacheEntry {
    answer: Answer,
    expires: Instant,
}

impl Cache {
    fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            map: HashMap::new(),
        }
    }

    /// `Some(answer)` on a hit, positive or negative; `None` on a miss (expired entries go).
    fn get(&mut self, key: &str, now: Instant) -> Option<Answer> {
        let entry = self.map.get(key)?;
        if entry.expires <= now {
            self.map.remove(key);
            return None;
        }
        Some(entry.answer.clone())
    }

    fn insert(&mut self, key: &str, answer: Answer, ttl: Duration, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if !self.map.contains_key(key) && self.map.len() >= self.capacity {
            self.map.retain(|_, e| e.expires > now);
            if self.map.len() >= self.capacity {
                let soonest = self
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.map.remove(&k);
                }
            }
        }
        let expires = now + ttl;
        self.map.insert(key.into(), CacheEntry { answer, expires });
    }
}

/// The `nameserver` lines of a resolv.conf (at most [`MAX_RESOLV_NAMESERVERS`]), port 53.
/// IPv6 addresses may carry a numeric zone (`fe80::1%2`); named zones are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(word) = words.next() else { continue };
        let addr = match word.split_once('%') {
            None => word
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, DNS_PORT)),
            Some((ip, zone)) => match (ip.parse::<Ipv6Addr>(), zone.parse::<u32>()) {
                (Ok(ip), Ok(zone)) => Some(SocketAddrV6::new(ip, DNS_PORT, 0, zone).into()),
                _ => None,
            },
        };
        match addr {
            Some(a) if out.len() < MAX_RESOLV_NAMESERVERS => out.push(a),
            Some(_) => {}
            None => log::warn!("dns: {RESOLV_CONF}: ignoring `nameserver {word}`"),
        }
    }
    out
}

/// A hosts file: `address name [aliases…]` lines, `#` comments. Names are lowercased; an
/// address appears once per name. At most `max_names` names are kept; returns the map and how
/// many (address, name) entries were left out.
pub fn parse_hosts(text: &str, max_names: usize) -> (Names, usize) {
    let mut map = Names::new();
    let now = Instant::now();
    let mut left_out = 0;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        for name in words {
            let Ok(name) = wire::check_name(name) else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            let full = map.len() >= max_names;
            match map.get_mut(name.as_str()).map(|e| &mut e.answer) {
                Some(Ok(ips)) if !ips.contains(&ip) => {
                    *ips = ips.iter().copied().chain([ip]).collect();
                }
                Some(_) => {}
                None if full => left_out += 1,
                None => {
                    let entry = CacheEntry {
                        answer: Ok(Rc::from([ip])),
                        expires: now,
                    };
                    map.insert(name.into(), entry);
                }
            }
        }
    }
    (map, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Rc<[IpAddr]> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn resolv_conf() {
        let text = "# comment\n; other\nsearch lan\nnameserver 192.0.2.53\n\
                    nameserver   2001:db8::53 # trailing\nnameserver fe80::1%3\n\
                    nameserver fe80::1%eth0\nnameserver bogus\nnameserver 192.0.2.54\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 3)),
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn hosts_file() {
        let text = "127.0.0.1 localhost\n::1 localhost ip6-localhost # c\n\
                    198.51.100.1  Router.LAN router\n198.51.100.1 router\n\
                    not-an-ip foo\n# 192.0.2.9 commented\n2001:db8::1 router.lan\n";
        let (map, left_out) = parse_hosts(text, 10);
        assert_eq!(left_out, 0);
        let of = |k: &str| map[k].answer.clone().unwrap();
        assert_eq!(of("localhost"), ips(&["127.0.0.1", "::1"]));
        assert_eq!(of("router.lan"), ips(&["198.51.100.1", "2001:db8::1"]));
        assert_eq!(of("router"), ips(&["198.51.100.1"]));
        assert!(!map.contains_key("foo"));
        assert_eq!(map.len(), 4);
        let (map, left_out) = parse_hosts(text, 2);
        assert_eq!((map.len(), left_out), (2, 4)); // router.lan ×2, router ×2
    }

    #[test]
    fn cache_ttl_negative_and_eviction() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = Cache::new(2);
        c.insert("a", Ok(ips(&["192.0.2.1"])), s(30), t0);
        c.insert("b", Err("nx"), s(10), t0);
        assert_eq!(c.get("a", t0), Some(Ok(ips(&["192.0.2.1"]))));
        assert_eq!(c.get("b", t0), Some(Err("nx")));
        assert_eq!(c.get("b", t0 + s(10)), None, "expired");
        assert_eq!(c.map.len(), 1, "expired entries are dropped on lookup");
        c.insert("b", Err("nx"), s(10), t0);
        // Full: the entry expiring soonest ("b") goes.
        c.insert("c", Ok(ips(&["192.0.2.3"])), s(60), t0);
        assert_eq!(c.map.len(), 2);
        assert_eq!(c.get("b", t0), None);
        assert!(c.get("a", t0).is_some() && c.get("c", t0).is_some());
        // Full, but something has expired: that goes first.
        c.insert("d", Err("nx"), s(10), t0 + s(40));
        assert_eq!(c.get("a", t0 + s(40)), None);
        assert!(c.get("c", t0 + s(40)).is_some());
        // Replacing a name never evicts another.
        c.insert("c", Err("nx"), s(10), t0 + s(40));
        assert_eq!(c.map.len(), 2);
        // Capacity 0: nothing is kept.
        let mut none = Cache::new(0);
        none.insert("a", Err("nx"), s(10), t0);
        assert!(none.get("a", t0).is_none());
    }

    #[test]
    fn literals_hosts_and_bad_names_need_no_server() {
        let dir = std::env::temp_dir().join(format!("ss-smol-dns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "198.51.100.9 box.test\n2001:db8::9 box.test\n").unwrap();
        let mk = |prefer_v6| {
            let mut o = Options::new(vec!["127.0.0.1:9".parse().unwrap()], prefer_v6, 8);
            o.hosts_file = Some(hosts.clone());
            Resolver::with_options(o).unwrap()
        };
        let (v4, v6) = (mk(false), mk(true));
        future::block_on(async {
            let got = v4.resolve("BOX.test.", 80).await.unwrap();
            assert_eq!(
                got,
                vec![
                    "198.51.100.9:80".parse().unwrap(),
                    "[2001:db8::9]:80".parse().unwrap()
                ]
            );
            let got = v6.resolve("box.test", 80).await.unwrap();
            assert_eq!(got[0], "[2001:db8::9]:80".parse().unwrap());
            assert_eq!(
                v4.resolve("192.0.2.1", 1).await.unwrap(),
                vec!["192.0.2.1:1".parse().unwrap()]
            );
            assert_eq!(
                v4.resolve("[2001:db8::1]", 2).await.unwrap(),
                vec!["[2001:db8::1]:2".parse().unwrap()]
            );
            assert_eq!(
                v6.resolve("localhost", 3).await.unwrap()[0].ip(),
                Ipv6Addr::LOCALHOST
            );
            for bad in ["", "a..b", "a b", "ünï.test", &"x".repeat(64)] {
                let e = v4.resolve(bad, 1).await.unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
                assert!(e.to_string().contains("cannot resolve"), "{e}");
            }
        });
        assert_eq!(v4.queries_sent() + v6.queries_sent(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
