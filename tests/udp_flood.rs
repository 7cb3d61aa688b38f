//! A UDP flood from new sources must not evict a live flow: `ss-smol tunnel -u` and
//! `ss-smol server`, both with a table of 256 associations (the default), in front of a UDP
//! echo on loopback that answers after a second, like a resolver with a cold cache. One
//! legitimate client, with one socket and so one association on each hop, asks a question
//! and gets its answer; then a flooder sends one datagram from each of thousands of new source
//! addresses (127.1.x.y, 400 a second) while the client asks nine more questions, waiting up
//! to 2 s for each answer.
//!
//! At 400 new sources a second a table of 256 turns over in 0.64 s, sooner than the echo
//! answers: evicting the least recently active entry throws out the client's association
//! while its question is on the way, on both hops, and its answer arrives at a closed socket.
//! An association that has had a reply is assured and kept ahead of the flood, whose
//! associations are evicted among themselves (they are answered too, but only after they are
//! gone). A flow that starts during such a flood has no such protection: hence the first
//! question is asked before it.

mod support;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const METHOD: &str = "chacha20-ietf-poly1305";
/// Associations on each hop: the default, set explicitly so the test does not follow it.
const ASSOCS: usize = 256;
/// New flood sources a second: more than a table's worth each second.
const FLOOD_RATE: u64 = 400;
/// Below this rate a table outlives the echo's delay, and LRU eviction would not lose answers
/// either: a slower flood (a starved test machine) proves nothing, and fails the test as such.
const MIN_FLOOD_RATE: f64 = 300.0;
/// Legitimate questions, and the gap between them.
const QUESTIONS: usize = 10;
const GAP: Duration = Duration::from_millis(1200);
/// How long the echo takes to answer: longer than the flood takes to turn a table over.
const ECHO_DELAY: Duration = Duration::from_secs(1);
/// How long each legitimate question waits for its answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Answers that must arrive: one may be lost (a datagram dropped on a busy loopback).
const MUST_ANSWER: usize = 9;

/// A UDP echo on 127.0.0.1 that sends each datagram back `ECHO_DELAY` after it arrived.
struct SlowEcho {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SlowEcho {
    fn start() -> SlowEcho {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the echo");
        let port = sock.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut due: VecDeque<(Instant, SocketAddr, Vec<u8>)> = VecDeque::new();
            let mut buf = [0u8; 2048];
            while !stopped.load(Ordering::SeqCst) {
                let now = Instant::now();
                while due.front().is_some_and(|(at, _, _)| *at <= now) {
                    let (_, to, data) = due.pop_front().unwrap();
                    let _ = sock.send_to(&data, to);
                }
                let wait = due.front().map_or(Duration::from_millis(50), |(at, _, _)| {
                    at.saturating_duration_since(now)
                        .clamp(Duration::from_millis(1), Duration::from_millis(50))
                });
                sock.set_read_timeout(Some(wait)).unwrap();
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    due.push_back((Instant::now() + ECHO_DELAY, from, buf[..n].to_vec()));
                }
            }
        });
        SlowEcho {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SlowEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn server(extra: &[&str]) -> (Proc, u16) {
    spawn_listening("ss-smol-server", |port| {
        let mut cmd = Command::new(ss_smol_bin());
        cmd.arg("server")
            .args(["-s", "127.0.0.1", "-p", &port.to_string()])
            .args(["-k", PASSWORD, "-m", METHOD, "-u", "-t", "60"])
            // Every target here is loopback.
            .arg("--allow-private-targets")
            .args(extra);
        cmd
    })
}

fn tunnel(server_port: u16, target: SocketAddr, extra: &[&str]) -> (Proc, u16) {
    spawn_listening("ss-smol-tunnel", |port| {
        let mut cmd = Command::new(ss_smol_bin());
        cmd.arg("tunnel")
            .args(["-s", "127.0.0.1", "-p", &server_port.to_string()])
            .args(["-b", "127.0.0.1", "-l", &port.to_string()])
            .args(["-k", PASSWORD, "-m", METHOD, "-u", "-t", "60"])
            .args(["-L", &target.to_string()])
            .args(extra);
        cmd
    })
}

/// The `i`-th flood source: a new loopback address for every datagram (127.1.0.1 onwards), so
/// each is a new association whatever port the kernel picks.
fn flood_source(i: u64) -> IpAddr {
    let n = 0x7f01_0001 + (i % 0x00fe_0000) as u32; // 127.1.0.1 up to 127.255.0.0: all loopback
    IpAddr::V4(Ipv4Addr::from(n))
}

/// Sends one datagram from each new source at `FLOOD_RATE` until `stop`, counting them in
/// `sent`.
fn flood(to: SocketAddr, stop: Arc<AtomicBool>, sent: Arc<AtomicUsize>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            // On schedule, catching up after a slow moment rather than falling behind it.
            let due = start + Duration::from_micros(i * 1_000_000 / FLOOD_RATE);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            if let Ok(s) = UdpSocket::bind(SocketAddr::new(flood_source(i), 0)) {
                if s.send_to(format!("flood {i}").as_bytes(), to).is_ok() {
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            }
            i += 1;
        }
    })
}

/// The legitimate client: one socket, so one association on each hop, for every question.
struct Client {
    sock: UdpSocket,
    to: SocketAddr,
    asked: usize,
}

impl Client {
    fn new(to: SocketAddr) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the legitimate client");
        Client { sock, to, asked: 0 }
    }

    /// Asks the next question; whether its answer came within `ANSWER_WITHIN`. Late answers
    /// to earlier questions are skipped. Returns no sooner than `GAP` after asking.
    fn ask(&mut self) -> bool {
        let asked = Instant::now();
        let question = format!("question {}", self.asked);
        self.asked += 1;
        self.sock
            .send_to(question.as_bytes(), self.to)
            .expect("send a question");
        let deadline = asked + ANSWER_WITHIN;
        let mut buf = [0u8; 256];
        let mut got = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) if from == self.to && buf[..n] == *question.as_bytes() => {
                    got = true;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        if let Some(rest) = (asked + GAP).checked_duration_since(Instant::now()) {
            thread::sleep(rest);
        }
        got
    }
}

#[test]
fn a_flood_of_new_sources_does_not_evict_a_live_flow() {
    let _watchdog = Watchdog::new("udp flood", Duration::from_secs(90));
    let echo = SlowEcho::start();
    let assocs = ASSOCS.to_string();
    let (mut server, server_port) = server(&["--udp-assocs", &assocs]);
    let (mut tunnel, tunnel_port) = tunnel(server_port, v4(echo.port), &["--udp-assocs", &assocs]);
    let to = v4(tunnel_port);
    let mut client = Client::new(to);
    // The whole path works, and the client's flow is established, before the flood.
    let mut answered = vec![client.ask()];
    assert!(answered[0], "no answer through the tunnel before the flood");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flooder = flood(to, Arc::clone(&stop), Arc::clone(&sent));
    let flood_start = Instant::now();
    while answered.len() < QUESTIONS {
        answered.push(client.ask());
    }
    let flooded_for = flood_start.elapsed();
    let sources = sent.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    flooder.join().unwrap();

    let n = answered.iter().filter(|a| **a).count();
    eprintln!(
        "{n} of {QUESTIONS} answered within {ANSWER_WITHIN:?} ({answered:?}) while {sources} new \
         sources flooded for {flooded_for:.1?}"
    );
    let rate = sources as f64 / flooded_for.as_secs_f64();
    assert!(
        rate >= MIN_FLOOD_RATE,
        "the flood sent only {rate:.0} new sources a second ({sources} in {flooded_for:.1?}): \
         too slow to turn a table of {ASSOCS} over within the echo's {ECHO_DELAY:?}"
    );
    assert!(
        n >= MUST_ANSWER,
        "{n} of {QUESTIONS} questions answered within {ANSWER_WITHIN:?} ({answered:?}) while \
         {sources} new sources flooded {ASSOCS} associations for {flooded_for:.1?}"
    );
    for p in [&mut server, &mut tunnel] {
        p.assert_running();
        p.assert_no_panic();
    }
}
