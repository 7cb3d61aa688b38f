//! A four-namespace network for the ss-redir tests (tests/redir.rs), documentation addresses
//! only, nothing leaves the machine:
//!
//! ```text
//!  lan ──────────── router ──────────────── wan ───────────────── far
//!  192.0.2.2/24     192.0.2.1 | 198.51.100.1  198.51.100.2 | 203.0.113.1   203.0.113.2, .3 /24
//!  2001:db8:1::2    2001:db8:1::1 | 2001:db8:2::1  2001:db8:2::2 | 2001:db8:3::1  2001:db8:3::2, ::3
//!  (client)         (ss-redir + rules)     (Shadowsocks server)   (targets)
//! ```
//!
//! lan routes everything through router, router through wan, wan forwards to far and back, so
//! a destination the rules bypass still reaches far, with the lan client's own source address.
//! The far services ([`FarServices`]) tell the client which source address they saw: wan's
//! (203.0.113.1 / 2001:db8:3::1) when the traffic came through the Shadowsocks server, the lan
//! client's when it was routed past it.
//!
//! The namespaces are deleted when the [`Topology`] drops (their veths with them).

use super::*;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub const LAN4: &str = "192.0.2.2";
pub const LAN6: &str = "2001:db8:1::2";
pub const ROUTER_LAN4: &str = "192.0.2.1";
pub const ROUTER_LAN6: &str = "2001:db8:1::1";
pub const ROUTER_WAN4: &str = "198.51.100.1";
pub const ROUTER_WAN6: &str = "2001:db8:2::1";
pub const WAN4: &str = "198.51.100.2";
pub const WAN6: &str = "2001:db8:2::2";
pub const WAN_FAR4: &str = "203.0.113.1";
pub const WAN_FAR6: &str = "2001:db8:3::1";
/// The target the tests proxy to.
pub const FAR4: &str = "203.0.113.2";
pub const FAR6: &str = "2001:db8:3::2";
/// A second far address, which the tests put in the bypass set.
pub const FAR_BYPASS4: &str = "203.0.113.3";
pub const FAR_BYPASS6: &str = "2001:db8:3::3";

/// The router's interface towards lan (the one the rules divert from).
pub const ROUTER_LAN_IF: &str = "lan0";

/// TCP echo on every far address (records the peer of each connection).
pub const ECHO_PORT: u16 = 7000;
/// TCP: reads one line, answers the peer's IP address, closes.
pub const WHOAMI_PORT: u16 = 7001;
/// UDP "DNS-like" responder: answers each datagram with `REQUEST|from=PEER_IP:PORT`.
pub const UDP_PORT: u16 = 5300;

pub fn ip_of(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip_of(ip), port)
}

/// The four namespaces, wired and routed.
pub struct Topology {
    pub lan: NetNs,
    pub router: NetNs,
    pub wan: NetNs,
    pub far: NetNs,
}

/// Runs `ip -n NS ARGS` (through [`ip`], which fails the test on error).
fn ipn(ns: &NetNs, args: &[&str]) {
    let mut all = vec!["-n", ns.name.as_str()];
    all.extend_from_slice(args);
    ip(&all);
}

/// Writes `value` to /proc/sys/`key` (dots for slashes) inside `ns`.
pub fn sysctl(ns: &NetNs, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    // /proc/sys/net belongs to the network namespace of the thread that opens it.
    ns.run(|| fs::write(&path, value))
        .unwrap_or_else(|e| panic!("{}: {path} = {value}: {e}", ns.name));
}

impl Topology {
    /// `tag` keeps the names apart between the tests of one process (and the pid between
    /// processes).
    pub fn new(tag: &str) -> Topology {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mk = |role: &str| NetNs::new(&format!("{tag}{n}-{role}"), &[]);
        let t = Topology {
            lan: mk("lan"),
            router: mk("router"),
            wan: mk("wan"),
            far: mk("far"),
        };
        for ns in [&t.lan, &t.router, &t.wan, &t.far] {
            // Before any interface exists, so that the veths (link-local addresses included)
            // never run duplicate address detection.
            for conf in ["all", "default"] {
                sysctl(ns, &format!("net.ipv6.conf.{conf}.accept_dad"), "0");
                sysctl(ns, &format!("net.ipv6.conf.{conf}.dad_transmits"), "0");
            }
        }
        for ns in [&t.router, &t.wan] {
            sysctl(ns, "net.ipv4.ip_forward", "1");
            sysctl(ns, "net.ipv6.conf.all.forwarding", "1");
        }
        veth(&t.lan, "eth0", &t.router, ROUTER_LAN_IF);
        veth(&t.router, "wan0", &t.wan, "eth0");
        veth(&t.wan, "far0", &t.far, "eth0");
        addr(&t.lan, "eth0", &[(LAN4, 24), (LAN6, 64)]);
        addr(
            &t.router,
            ROUTER_LAN_IF,
            &[(ROUTER_LAN4, 24), (ROUTER_LAN6, 64)],
        );
        addr(&t.router, "wan0", &[(ROUTER_WAN4, 24), (ROUTER_WAN6, 64)]);
        addr(&t.wan, "eth0", &[(WAN4, 24), (WAN6, 64)]);
        addr(&t.wan, "far0", &[(WAN_FAR4, 24), (WAN_FAR6, 64)]);
        addr(
            &t.far,
            "eth0",
            &[(FAR4, 24), (FAR_BYPASS4, 24), (FAR6, 64), (FAR_BYPASS6, 64)],
        );
        for (ns, via4, via6) in [
            (&t.lan, ROUTER_LAN4, ROUTER_LAN6),
            (&t.router, WAN4, WAN6),
            (&t.far, WAN_FAR4, WAN_FAR6),
        ] {
            ipn(ns, &["route", "add", "default", "via", via4]);
            ipn(ns, &["-6", "route", "add", "default", "via", via6]);
        }
        ipn(
            &t.wan,
            &["route", "add", "192.0.2.0/24", "via", ROUTER_WAN4],
        );
        ipn(
            &t.wan,
            &["-6", "route", "add", "2001:db8:1::/64", "via", ROUTER_WAN6],
        );
        for ns in [&t.lan, &t.router, &t.wan, &t.far] {
            wait_addresses_usable(ns);
        }
        t
    }

    /// Every namespace, for loops.
    pub fn all(&self) -> [&NetNs; 4] {
        [&self.lan, &self.router, &self.wan, &self.far]
    }
}

/// A veth pair with one end in each namespace, both up.
fn veth(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) {
    ipn(
        a,
        &[
            "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
        ],
    );
    ipn(a, &["link", "set", a_if, "up"]);
    ipn(b, &["link", "set", b_if, "up"]);
}

fn addr(ns: &NetNs, dev: &str, addrs: &[(&str, u8)]) {
    for (a, len) in addrs {
        let cidr = format!("{a}/{len}");
        if ip_of(a).is_ipv6() {
            ipn(ns, &["addr", "add", &cidr, "dev", dev, "nodad"]);
        } else {
            ipn(ns, &["addr", "add", &cidr, "dev", dev]);
        }
    }
}

/// Waits until no address in `ns` is tentative and every veth is up with carrier.
fn wait_addresses_usable(ns: &NetNs) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["-n", &ns.name, "addr", "show"])
            .output()
            .expect("ip addr show");
        let text = String::from_utf8_lossy(&out.stdout);
        let busy = text.contains("tentative") || text.contains("NO-CARRIER");
        if !busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: addresses not usable within 10 s:\n{text}",
            ns.name
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `program ARGS` run to completion inside `ns` (`ip netns exec`), failing the test if it
/// fails or takes more than 30 s.
pub fn run_in(ns: &NetNs, program: &str, args: &[&str]) -> Finished {
    let mut cmd = ns.command(Path::new(program));
    cmd.args(args);
    let what = format!("{} in {}", program, ns.name);
    let done = run_to_end(&what, cmd, Duration::from_secs(30));
    assert!(
        done.status.success(),
        "{program} {} in {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        ns.name,
        done.status,
        done.stdout,
        done.stderr
    );
    done
}

// ---------------------------------------------------------------------------------------------
// The far services

/// TCP echo, TCP who-am-I and the UDP responder on every far address, until dropped.
pub struct FarServices {
    /// Peer address of every echo connection, in accept order.
    pub echo_peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FarServices {
    pub fn start(far: &NetNs) -> FarServices {
        let addrs = [FAR4, FAR_BYPASS4, FAR6, FAR_BYPASS6];
        let (echo, whoami, udp) = far.run(|| {
            let tcp = |port| {
                addrs
                    .iter()
                    .map(|a| {
                        TcpListener::bind(sa(a, port))
                            .unwrap_or_else(|e| panic!("far: bind {a}:{port}: {e}"))
                    })
                    .collect::<Vec<_>>()
            };
            let udp = addrs
                .iter()
                .map(|a| {
                    UdpSocket::bind(sa(a, UDP_PORT))
                        .unwrap_or_else(|e| panic!("far: bind udp {a}: {e}"))
                })
                .collect::<Vec<_>>();
            (tcp(ECHO_PORT), tcp(WHOAMI_PORT), udp)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let echo_peers = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for l in echo {
            let peers = echo_peers.clone();
            threads.push(accept_loop(l, stop.clone(), move |c, peer| {
                peers.lock().unwrap().push(peer);
                far_echo(c);
            }));
        }
        for l in whoami {
            threads.push(accept_loop(l, stop.clone(), far_whoami));
        }
        for s in udp {
            let stop = stop.clone();
            threads.push(thread::spawn(move || far_udp(s, stop)));
        }
        FarServices {
            echo_peers,
            stop,
            threads,
        }
    }
}

impl Drop for FarServices {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    l: TcpListener,
    stop: Arc<AtomicBool>,
    serve: impl Fn(TcpStream, SocketAddr) + Send + Clone + 'static,
) -> JoinHandle<()> {
    l.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((c, peer)) => {
                    let serve = serve.clone();
                    thread::spawn(move || {
                        let _ = c.set_nonblocking(false);
                        let _ = set_timeouts(&c);
                        serve(c, peer)
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

fn far_echo(mut c: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => {
                let _ = c.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

fn far_whoami(mut c: TcpStream, peer: SocketAddr) {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 256 {
        match c.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            _ => return,
        }
    }
    let _ = c.write_all(format!("{}\n", peer.ip()).as_bytes());
    let _ = c.shutdown(Shutdown::Write);
    // Wait for the client to close, so the answer is never cut short by a reset.
    let _ = read_to_close(&mut c, Duration::from_secs(10));
}

fn far_udp(s: UdpSocket, stop: Arc<AtomicBool>) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let mut reply = buf[..n].to_vec();
            reply.extend_from_slice(format!("|from={from}").as_bytes());
            let _ = s.send_to(&reply, from);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client side (in lan)

/// The address far saw for a who-am-I connection to `target` (a far address, [`WHOAMI_PORT`])
/// made from `lan`.
pub fn whoami(lan: &NetNs, target: SocketAddr) -> Result<IpAddr, String> {
    let mut s = lan
        .run(|| connect(target))
        .map_err(|e| format!("connect {target}: {e}"))?;
    s.write_all(b"who\n")
        .map_err(|e| format!("write to {target}: {e}"))?;
    let mut got = String::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_to_string(&mut got)
        .map_err(|e| format!("read from {target}: {e} after {got:?}"))?;
    got.trim()
        .parse()
        .map_err(|_| format!("{target} answered {got:?}, not an address"))
}

/// One UDP request from `lan` (bound to `source`, or the unspecified address of the target's
/// family) to `target` (a far address, [`UDP_PORT`]); returns the source address the responder
/// saw. The reply must come from `target` itself. Three tries, 2 s apart.
pub fn udp_request(
    lan: &NetNs,
    source: Option<IpAddr>,
    target: SocketAddr,
    payload: &[u8],
) -> Result<SocketAddr, String> {
    let bind = source.unwrap_or(match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let sock = lan
        .run(|| UdpSocket::bind(SocketAddr::new(bind, 0)))
        .map_err(|e| format!("bind {bind}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut last = String::from("no reply");
    for _ in 0..3 {
        sock.send_to(payload, target)
            .map_err(|e| format!("send to {target}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => break,
            };
            if from != target {
                last = format!("a reply from {from}, not {target}");
                continue;
            }
            let reply = &buf[..n];
            let Some(rest) = reply.strip_prefix(payload) else {
                last = format!("a reply of {n} bytes not starting with the request");
                continue;
            };
            let seen = String::from_utf8_lossy(rest);
            return seen
                .strip_prefix("|from=")
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("reply tail {seen:?}"));
        }
    }
    Err(format!("UDP to {target}: {last}"))
}

/// `count` requests in turn over one UDP socket of `lan` (one flow), of sizes cycling up to
/// `max_len` bytes; each must be answered, from `target`, with its own payload. Returns the
/// source address the responder saw for the last one.
pub fn udp_flow(
    lan: &NetNs,
    target: SocketAddr,
    count: usize,
    max_len: usize,
) -> Result<SocketAddr, String> {
    let bind = match target {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let sock = lan
        .run(|| UdpSocket::bind(bind))
        .map_err(|e| format!("bind {bind}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut seen = None;
    for i in 0..count {
        let len = 16 + (i * 997) % max_len.saturating_sub(16).max(1);
        let mut payload = format!("flow-{i}-").into_bytes();
        payload.extend(data(i as u64, len.saturating_sub(payload.len())));
        let mut answered = false;
        'tries: for _ in 0..3 {
            sock.send_to(&payload, target)
                .map_err(|e| format!("datagram {i}: send: {e}"))?;
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let Some(rest) = buf[..n].strip_prefix(&payload[..]) else {
                    continue; // a late answer to an earlier try
                };
                if from != target {
                    return Err(format!("datagram {i}: answered from {from}, not {target}"));
                }
                seen = String::from_utf8_lossy(rest)
                    .strip_prefix("|from=")
                    .and_then(|a| a.parse().ok());
                answered = true;
                break 'tries;
            }
        }
        if !answered {
            return Err(format!(
                "datagram {i} of {count} ({} bytes) not answered",
                payload.len()
            ));
        }
    }
    seen.ok_or_else(|| "no source in the answers".to_owned())
}

/// [`echo_transfer`] for the namespace tests: `len` generated bytes sent on `stream` while the
/// echo is read back and hashed, then a half-close and the peer's close. A read interrupted by
/// a signal (EINTR, which sockets with a receive timeout return even for restartable signals)
/// is retried instead of failing the transfer. Returns Err naming what differed.
pub fn echo_check(stream: TcpStream, seed: u64, len: usize) -> Result<(), String> {
    use sha1::{Digest, Sha1};
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sender = thread::spawn(move || -> io::Result<String> {
        let mut gen = DataGen::new(seed);
        let mut sizes = DataGen::new(seed ^ 0x5A5A);
        let mut buf = vec![0u8; 64 * 1024];
        let mut hasher = Sha1::new();
        let mut left = len;
        while left > 0 {
            let n = sizes.range(1, buf.len()).min(left);
            gen.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            writer.write_all(&buf[..n])?; // write_all retries EINTR itself
            left -= n;
        }
        Ok(hex(&hasher.finalize()))
    });
    let mut reader = stream;
    let mut hasher = Sha1::new();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let read_result = loop {
        if got >= len {
            break Ok(());
        }
        let want = buf.len().min(len - got);
        match reader.read(&mut buf[..want]) {
            Ok(0) => break Err(format!("early EOF after {got} of {len} bytes")),
            Ok(n) => {
                hasher.update(&buf[..n]);
                got += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(format!("after {got} of {len} bytes: {e}")),
        }
    };
    if read_result.is_err() {
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender.join().map_err(|_| "sender thread panicked")?;
    read_result?;
    let sent = sent.map_err(|e| format!("sending: {e}"))?;
    let received = hex(&hasher.finalize());
    if sent != received {
        return Err(format!("SHA-1 of the echo {received}, sent {sent}"));
    }
    reader
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("half-close: {e}"))?;
    reader
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut extra = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => extra += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err("not closed within 10 s of the client's FIN".into())
            }
            Err(_) => break, // reset: closed all the same
        }
    }
    if extra > 0 {
        return Err(format!("{extra} unexpected bytes after the echo"));
    }
    Ok(())
}
