//! ss-server's target policy through real connections: in a network namespace this test makes,
//! echo servers listen on private, link-local, CGNAT and unique-local addresses and on a
//! documentation address, and SOCKS5 CONNECTs through `ss-smol local` → `ss-smol server` show
//! which ones the server reaches, without and with `--allow-private-targets`.
//!
//! Every address lives on the namespace's own lo; nothing leaves the machine.
//! The namespace is deleted by a guard, also when the test fails.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Refused unless `--allow-private-targets`: one of each range the policy names.
const PRIVATE: [&str; 6] = [
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "169.254.0.1",
    "100.64.0.1",
    "fd00::1",
];
/// TEST-NET-1: not private, so reached by default.
const PUBLIC: &str = "192.0.2.1";
const ECHO_PORT: u16 = 7007;

/// TCP echo on every listener until dropped.
struct Echo {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Echo {
    fn start(listeners: Vec<TcpListener>) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = listeners
            .into_iter()
            .map(|l| {
                let stop = stop.clone();
                l.set_nonblocking(true).unwrap();
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            Ok((c, _)) => {
                                thread::spawn(move || echo(c));
                            }
                            Err(_) => thread::sleep(Duration::from_millis(10)),
                        }
                    }
                })
            })
            .collect();
        Echo { stop, threads }
    }
}

fn echo(mut c: TcpStream) {
    let _ = c.set_nonblocking(false);
    let _ = set_timeouts(&c);
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = c.read(&mut buf) {
        if c.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Waits for the "listening on" line of a just started ss-smol.
fn wait_listening(p: &mut Proc) {
    let deadline = Instant::now() + START_TIMEOUT;
    while !p.stderr().contains("listening on") {
        p.assert_running();
        assert!(Instant::now() < deadline, "{} not started", p.name());
        thread::sleep(Duration::from_millis(20));
    }
}

/// What became of a CONNECT to `target` through the SOCKS5 proxy at `proxy` (in `ns`).
#[derive(Debug, PartialEq)]
enum Outcome {
    Echoed,
    ClosedSilently,
    Other(String),
}

fn try_target(ns: &NetNs, proxy: SocketAddr, target: IpAddr) -> Outcome {
    let target = Target::Ip(SocketAddr::new(target, ECHO_PORT));
    let Ok(mut s) = ns.run(|| socks5_connect(proxy, &target)) else {
        // Refused at the SOCKS5 reply: nothing reached the target either.
        return Outcome::ClosedSilently;
    };
    if s.write_all(b"hello, target").is_err() {
        return Outcome::ClosedSilently;
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) if got.is_empty() => return Outcome::ClosedSilently,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got == b"hello, target" {
                    return Outcome::Echoed;
                }
                if got.len() >= 13 {
                    return Outcome::Other(format!("got {got:?}"));
                }
            }
            Err(e) => return Outcome::Other(format!("{e} after {got:?}")),
        }
    }
}

/// `ss-smol server` on 127.0.0.1:`port` and `ss-smol local` on 127.0.0.1:`port`+1 in front of
/// it, both inside `ns`.
fn pair(ns: &NetNs, port: u16, extra: &[&str]) -> (Proc, Proc) {
    let bin = ss_smol_bin();
    let mut server = ns.command(&bin);
    server
        .args(["server", "-s", "127.0.0.1", "-p", &port.to_string()])
        .args(["-k", PASSWORD, "-m", "aes-128-gcm", "-t", "60"])
        .args(extra);
    let mut server = Proc::spawn(&format!("server{}", extra.join("")), server);
    wait_listening(&mut server);
    let mut local = ns.command(&bin);
    local
        .args(["local", "-s", "127.0.0.1", "-p", &port.to_string()])
        .args(["-b", "127.0.0.1", "-l", &(port + 1).to_string()])
        .args(["-k", PASSWORD, "-m", "aes-128-gcm", "-t", "60"]);
    let mut local = Proc::spawn("local", local);
    wait_listening(&mut local);
    (server, local)
}

#[test]
#[ignore = "needs root and iproute2 (ip netns); bash tests/run-all.sh runs it"]
fn private_targets_are_refused_unless_allowed_and_public_ones_reached() {
    let _watchdog = Watchdog::new("private targets in a netns", Duration::from_secs(120));
    let mut addrs = PRIVATE.to_vec();
    addrs.push(PUBLIC);
    let ns = NetNs::new("priv", &addrs);
    let listeners = ns.run(|| {
        addrs
            .iter()
            .map(|a| TcpListener::bind((a.parse::<IpAddr>().unwrap(), ECHO_PORT)).unwrap())
            .collect::<Vec<_>>()
    });
    let _echo = Echo::start(listeners);
    let (mut strict, mut strict_local) = pair(&ns, 8388, &[]);
    let (mut open, mut open_local) = pair(&ns, 8488, &["--allow-private-targets"]);
    let strict_proxy = v4(8389);
    let open_proxy = v4(8489);

    let mut failures = Vec::new();
    for a in PRIVATE {
        let target: IpAddr = a.parse().unwrap();
        let mark = strict.stderr_mark();
        let got = try_target(&ns, strict_proxy, target);
        if got != Outcome::ClosedSilently {
            failures.push(format!("{a} by default: {got:?}, want refused"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !strict.stderr_since(mark).contains("private") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if !strict.stderr_since(mark).contains("private") {
            failures.push(format!("{a} by default: no log line saying \"private\""));
        }
        let got = try_target(&ns, open_proxy, target);
        if got != Outcome::Echoed {
            failures.push(format!(
                "{a} with --allow-private-targets: {got:?}, want echoed"
            ));
        }
    }
    let public: IpAddr = PUBLIC.parse().unwrap();
    for (proxy, what) in [(strict_proxy, "by default"), (open_proxy, "when allowed")] {
        let got = try_target(&ns, proxy, public);
        if got != Outcome::Echoed {
            failures.push(format!("{PUBLIC} {what}: {got:?}, want echoed"));
        }
    }
    for p in [&mut strict, &mut strict_local, &mut open, &mut open_local] {
        p.assert_running();
        p.assert_no_panic();
    }
    assert!(
        !open.stderr().contains("private"),
        "allowed server logged a refusal: {}",
        open.stderr()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
