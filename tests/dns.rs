//! The library's DNS resolver (`ss_smol::dns::Resolver`) against a real dnsmasq on 127.0.0.1
//! with fixed records, and against scripted fake servers for what dnsmasq will not do (spoofed
//! answers, truncation, SERVFAIL, garbage, counting queries). Loopback only: every resolver
//! here is given explicit 127.0.0.1 nameservers and no hosts file.

mod support;

use ss_smol::dns::{Options, Resolver};
use ss_smol::rt::LocalExecutor;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use support::{v4, Proc, Watchdog};

const LIMIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// dnsmasq

/// dnsmasq on 127.0.0.1 with only these records (everything else under `.test` is NXDOMAIN):
///
/// ```text
/// a.test      A     198.51.100.7
/// v6.test     AAAA  2001:db8::7
/// both.test   A     198.51.100.8   AAAA 2001:db8::8
/// alias.test  CNAME both.test
/// chain.test  CNAME alias.test
/// txt.test    TXT   "hello"        (a name with neither A nor AAAA)
/// ```
fn start_dnsmasq() -> Option<(Proc, SocketAddr)> {
    let (proc, port) = support::start_dnsmasq(&[
        "--local-ttl=300",
        "--host-record=a.test,198.51.100.7",
        "--host-record=v6.test,2001:db8::7",
        "--host-record=both.test,198.51.100.8,2001:db8::8",
        "--cname=alias.test,both.test",
        "--cname=chain.test,alias.test",
        "--txt-record=txt.test,hello",
    ])?;
    Some((proc, v4(port)))
}

/// A resolver for `servers` only (no hosts file), with the default 2 s attempts: servers that
/// answer do so long before that, even on a loaded machine, so query counts are exact.
fn resolver(servers: &[SocketAddr], prefer_v6: bool) -> Rc<Resolver> {
    resolver_with_timeout(servers, prefer_v6, ss_smol::dns::ATTEMPT_TIMEOUT)
}

fn resolver_with_timeout(
    servers: &[SocketAddr],
    prefer_v6: bool,
    attempt_timeout: Duration,
) -> Rc<Resolver> {
    let mut o = Options::new(servers.to_vec(), prefer_v6, 64);
    o.hosts_file = None;
    o.attempt_timeout = attempt_timeout;
    Resolver::with_options(o).expect("resolver")
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    ss_smol::rt::block_on(f).expect("event loop")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn a_record() {
    let _w = Watchdog::new("a_record", LIMIT);
    let Some((_dnsmasq, ns)) = start_dnsmasq() else {
        return;
    };
    let r = resolver(&[ns], false);
    assert_eq!(
        run(r.resolve("a.test", 443)).unwrap(),
        vec![sa("198.51.100.7:443")]
    );
    // Case and a trailing dot do not matter.
    assert_eq!(
        run(r.resolve("A.Test.", 80)).unwrap(),
        vec![sa("198.51.100.7:80")]
    );
}

#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn aaaa_record() {
    let _w = Watchdog::new("aaaa_record", LIMIT);
    let Some((_dnsmasq, ns)) = start_dnsmasq() else {
        return;
    };
    for prefer_v6 in [false, true] {
        let r = resolver(&[ns], prefer_v6);
        assert_eq!(
            run(r.resolve("v6.test", 443)).unwrap(),
            vec![sa("[2001:db8::7]:443")]
        );
    }
}

#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn both_families_in_preferred_order() {
    let _w = Watchdog::new("both_families_in_preferred_order", LIMIT);
    let Some((_dnsmasq, ns)) = start_dnsmasq() else {
        return;
    };
    let v4_first = resolver(&[ns], false);
    assert_eq!(
        run(v4_first.resolve("both.test", 8388)).unwrap(),
        vec![sa("198.51.100.8:8388"), sa("[2001:db8::8]:8388")]
    );
    let v6_first = resolver(&[ns], true);
    assert_eq!(
        run(v6_first.resolve("both.test", 8388)).unwrap(),
        vec![sa("[2001:db8::8]:8388"), sa("198.51.100.8:8388")]
    );
}

#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn cname_chains_are_followed() {
    let _w = Watchdog::new("cname_chains_are_followed", LIMIT);
    let Some((_dnsmasq, ns)) = start_dnsmasq() else {
        return;
    };
    let r = resolver(&[ns], false);
    for name in ["alias.test", "chain.test"] {
        assert_eq!(
            run(r.resolve(name, 1)).unwrap(),
            vec![sa("198.51.100.8:1"), sa("[2001:db8::8]:1")],
            "{name}"
        );
    }
}

#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn nxdomain_is_not_found_and_cached_briefly() {
    let _w = Watchdog::new("nxdomain_is_not_found_and_cached_briefly", LIMIT);
    let Some((_dnsmasq, ns)) = start_dnsmasq() else {
        return;
    };
    let r = resolver(&[ns], false);
    let e = run(r.resolve("nope.test", 80)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("nope.test") && msg.contains("NXDOMAIN"),
        "{msg}"
    );
    let sent = r.queries_sent();
    assert_eq!(sent, 2, "one A and one AAAA query");
    // Negative cache: the second lookup asks no one.
    let e = run(r.resolve("NOPE.test", 80)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("NOPE.test"), "{e}");
    assert_eq!(r.queries_sent(), sent);
}

#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn name_without_addresses_is_not_found() {
    let _w = Watchdog::new("name_without_addresses_is_not_found", LIMIT);
    let Some((_dnsmasq, ns)) = start_dnsmasq() else {
        return;
    };
    let r = resolver(&[ns], true);
    let e = run(r.resolve("txt.test", 80)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    assert!(
        e.to_string().contains("txt.test") && e.to_string().contains("no A or AAAA"),
        "{e}"
    );
    // Remembered, with its reason.
    let sent = r.queries_sent();
    let again = run(r.resolve("txt.test", 80)).unwrap_err();
    assert_eq!(again.to_string(), e.to_string());
    assert_eq!(r.queries_sent(), sent);
    // A name with only A records is fine when IPv6 is preferred (AAAA is NODATA).
    assert_eq!(
        run(r.resolve("a.test", 80)).unwrap(),
        vec![sa("198.51.100.7:80")]
    );
}

#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn cache_answers_after_the_server_is_gone() {
    let _w = Watchdog::new("cache_answers_after_the_server_is_gone", LIMIT);
    let Some((mut dnsmasq, ns)) = start_dnsmasq() else {
        return;
    };
    let r = resolver(&[ns], false);
    let first = run(r.resolve("both.test", 443)).unwrap();
    let sent = r.queries_sent();
    dnsmasq.signal(support::SIGKILL);
    assert!(dnsmasq.wait_exit(Duration::from_secs(10)).is_some());
    // TTL 300 s: served from the cache, no query, and the port does not matter.
    assert_eq!(
        run(r.resolve("both.test", 80)).unwrap()[0].ip(),
        first[0].ip()
    );
    assert_eq!(run(r.resolve("both.test", 443)).unwrap(), first);
    assert_eq!(r.queries_sent(), sent);
    // Anything else now fails, quickly and clearly (ICMP port unreachable → refused).
    let e = run(r.resolve("a.test", 80)).unwrap_err();
    assert!(e.to_string().contains("a.test"), "{e}");
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut
        ),
        "{e}"
    );
}

#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn second_nameserver_answers_when_the_first_is_silent() {
    let _w = Watchdog::new("second_nameserver_answers_when_the_first_is_silent", LIMIT);
    let Some((_dnsmasq, ns)) = start_dnsmasq() else {
        return;
    };
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = resolver_with_timeout(
        &[silent.local_addr().unwrap(), ns],
        false,
        Duration::from_millis(300),
    );
    assert_eq!(
        run(r.resolve("a.test", 80)).unwrap(),
        vec![sa("198.51.100.7:80")]
    );
    assert!(r.queries_sent() >= 4, "A and AAAA to each server");
}

// ---------------------------------------------------------------------------------------------
// No server at all

#[test]
fn timeout_when_nothing_answers() {
    let _w = Watchdog::new("timeout_when_nothing_answers", LIMIT);
    // A socket that receives and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ns = silent.local_addr().unwrap();
    let r = resolver_with_timeout(&[ns], false, Duration::from_millis(300));
    let e = run(r.resolve("slow.test", 80)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(
        e.to_string().contains("slow.test") && e.to_string().contains(&ns.to_string()),
        "{e}"
    );
    // Two rounds over one server, for A and AAAA.
    assert_eq!(r.queries_sent(), 4);
    // Failures are not cached: the next lookup asks again.
    let _ = run(r.resolve("slow.test", 80)).unwrap_err();
    assert_eq!(r.queries_sent(), 8);
}

#[test]
fn default_timeouts_are_bounded() {
    let _w = Watchdog::new("default_timeouts_are_bounded", LIMIT);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The public constructor: 2 s per attempt, 2 rounds, then TimedOut (the watchdog bounds it).
    let r = Resolver::new(
        vec![silent.local_addr().unwrap()],
        false,
        16,
        Default::default(),
    )
    .unwrap();
    let e = run(r.resolve("never.test", 80)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert_eq!(r.queries_sent(), 4);
}

#[test]
fn refused_port_fails_fast() {
    let _w = Watchdog::new("refused_port_fails_fast", LIMIT);
    let port = support::free_port();
    let r = resolver(&[v4(port)], false);
    let e = run(r.resolve("closed.test", 80)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    assert!(e.to_string().contains("closed.test"), "{e}");
}

#[test]
fn literals_need_no_server() {
    let r = resolver(&[v4(support::free_port())], false);
    assert_eq!(
        run(r.resolve("192.0.2.1", 53)).unwrap(),
        vec![sa("192.0.2.1:53")]
    );
    assert_eq!(
        run(r.resolve("2001:db8::1", 53)).unwrap(),
        vec![sa("[2001:db8::1]:53")]
    );
    assert_eq!(r.queries_sent(), 0);
}

// ---------------------------------------------------------------------------------------------
// Scripted servers

/// What a fake server does with one query.
enum Reply {
    /// Answer with these addresses (those of the queried family) and this RCODE / TC bit.
    Answer {
        rcode: u8,
        tc: bool,
        ips: Vec<IpAddr>,
    },
    /// Raw bytes, sent from the server's socket.
    Raw(Vec<u8>),
    /// Bytes sent from another socket (another source port).
    FromElsewhere(Vec<u8>),
}

/// A DNS server on 127.0.0.1 run by a script: for each query, `script(query, n)` (n counts
/// queries from 0) lists what to send back, in order, `delay` after the query (replies to
/// different queries are delayed in parallel, as a real server's would be).
struct FakeDns {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

type Script = Box<dyn FnMut(&[u8], usize) -> Vec<Reply> + Send>;

impl FakeDns {
    fn start(script: Script) -> FakeDns {
        FakeDns::start_delayed(Duration::ZERO, script)
    }

    fn start_delayed(delay: Duration, mut script: Script) -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (queries.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let other = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let n_query = q.fetch_add(1, Ordering::SeqCst);
                let query = buf[..n].to_vec();
                let replies = script(&query, n_query);
                let (sock, other) = (sock.try_clone().unwrap(), other.try_clone().unwrap());
                let send = move || {
                    thread::sleep(delay);
                    for reply in replies {
                        let _ = match reply {
                            Reply::Answer { rcode, tc, ips } => {
                                sock.send_to(&answer(&query, rcode, tc, &ips), from)
                            }
                            Reply::Raw(b) => sock.send_to(&b, from),
                            Reply::FromElsewhere(b) => other.send_to(&b, from),
                        };
                    }
                };
                if delay.is_zero() {
                    send();
                } else {
                    thread::spawn(send);
                }
            }
        });
        FakeDns {
            addr,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The query's type (A = 1, AAAA = 28).
fn qtype(query: &[u8]) -> u16 {
    u16::from_be_bytes([query[query.len() - 4], query[query.len() - 3]])
}

/// A response to `query`: its ID and question, then one record per address of the queried
/// family, owner compressed to the question's name, TTL 60.
fn answer(query: &[u8], rcode: u8, tc: bool, ips: &[IpAddr]) -> Vec<u8> {
    let mut r = query.to_vec();
    r[2] = 0x81 | if tc { 0x02 } else { 0 };
    r[3] = 0x80 | rcode;
    let mut count = 0u8;
    for ip in ips {
        let (ty, data) = match ip {
            IpAddr::V4(a) => (1u16, a.octets().to_vec()),
            IpAddr::V6(a) => (28u16, a.octets().to_vec()),
        };
        if ty != qtype(query) {
            continue;
        }
        r.extend_from_slice(&[0xc0, 12]);
        r.extend_from_slice(&ty.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, data.len() as u8]);
        r.extend_from_slice(&data);
        count += 1;
    }
    r[7] = count;
    r
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn spoofed_answers_are_ignored() {
    let _w = Watchdog::new("spoofed_answers_are_ignored", LIMIT);
    let evil = ip("192.0.2.66");
    let good = vec![ip("198.51.100.1"), ip("2001:db8::1")];
    let fake = FakeDns::start(Box::new(move |q, _| {
        let mut wrong_id = answer(q, 0, false, &[evil, ip("2001:db8::66")]);
        wrong_id[0] ^= 0x55;
        let mut wrong_name = answer(q, 0, false, &[evil, ip("2001:db8::66")]);
        wrong_name[13] ^= 0x01;
        let mut query_echo = q.to_vec();
        query_echo[7] = 0;
        vec![
            Reply::Raw(wrong_id),
            Reply::Raw(wrong_name),
            Reply::Raw(query_echo), // QR clear
            Reply::FromElsewhere(answer(q, 0, false, &[evil, ip("2001:db8::66")])),
            Reply::Answer {
                rcode: 0,
                tc: false,
                ips: good.clone(),
            },
        ]
    }));
    let r = resolver(&[fake.addr], false);
    assert_eq!(
        run(r.resolve("spoof.test", 1)).unwrap(),
        vec![sa("198.51.100.1:1"), sa("[2001:db8::1]:1")]
    );
    assert_eq!(fake.queries(), 2);
}

#[test]
fn truncated_answers() {
    let _w = Watchdog::new("truncated_answers", LIMIT);
    // TC with addresses: used. TC with none: an error for that family.
    let fake = FakeDns::start(Box::new(|q, _| {
        vec![Reply::Answer {
            rcode: 0,
            tc: true,
            ips: if q.windows(4).any(|w| w == b"some") {
                vec![ip("198.51.100.2")]
            } else {
                vec![]
            },
        }]
    }));
    let r = resolver(&[fake.addr], false);
    assert_eq!(
        run(r.resolve("some.test", 1)).unwrap(),
        vec![sa("198.51.100.2:1")]
    );
    let e = run(r.resolve("none.test", 1)).unwrap_err();
    assert!(
        e.to_string().contains("none.test") && e.to_string().contains("truncated"),
        "{e}"
    );
}

#[test]
fn servfail_moves_on_to_the_next_server() {
    let _w = Watchdog::new("servfail_moves_on_to_the_next_server", LIMIT);
    let failing = FakeDns::start(Box::new(|_, _| {
        vec![Reply::Answer {
            rcode: 2,
            tc: false,
            ips: vec![],
        }]
    }));
    let working = FakeDns::start(Box::new(|_, _| {
        vec![Reply::Answer {
            rcode: 0,
            tc: false,
            ips: vec![ip("198.51.100.3")],
        }]
    }));
    let r = resolver(&[failing.addr, working.addr], false);
    assert_eq!(
        run(r.resolve("sf.test", 1)).unwrap(),
        vec![sa("198.51.100.3:1")]
    );
    // Only SERVFAIL everywhere: the error says so.
    let r = resolver(&[failing.addr], false);
    let e = run(r.resolve("sf.test", 1)).unwrap_err();
    assert!(
        e.to_string().contains("SERVFAIL") && e.to_string().contains("sf.test"),
        "{e}"
    );
}

#[test]
fn garbage_from_the_server_is_an_error_not_a_panic() {
    let _w = Watchdog::new("garbage_from_the_server_is_an_error_not_a_panic", LIMIT);
    let fake = FakeDns::start(Box::new(|q, n| {
        // ID and question right, then a record cut short / a pointer loop / noise.
        let mut r = answer(q, 0, false, &[]);
        r[7] = 3;
        match n % 3 {
            0 => r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0]),
            1 => {
                let at = r.len() as u8;
                r.extend_from_slice(&[0xc0, at, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4])
            }
            _ => r.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)),
        }
        vec![Reply::Raw(r)]
    }));
    let r = resolver(&[fake.addr], false);
    let e = run(r.resolve("junk.test", 1)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    assert!(e.to_string().contains("junk.test"), "{e}");
}

#[test]
fn concurrent_lookups_of_one_name_share_the_queries() {
    let _w = Watchdog::new("concurrent_lookups_of_one_name_share_the_queries", LIMIT);
    let fake = FakeDns::start_delayed(
        Duration::from_millis(100),
        Box::new(|_, _| {
            vec![Reply::Answer {
                rcode: 0,
                tc: false,
                ips: vec![ip("198.51.100.4"), ip("2001:db8::4")],
            }]
        }),
    );
    let r = resolver(&[fake.addr], false);
    let ex = LocalExecutor::new();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let r = r.clone();
            ex.spawn(async move { r.resolve("shared.test", i).await })
        })
        .collect();
    let results = run(ex.run(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    }));
    for (i, res) in results.into_iter().enumerate() {
        assert_eq!(
            res.unwrap(),
            vec![
                SocketAddr::new(ip("198.51.100.4"), i as u16),
                SocketAddr::new(ip("2001:db8::4"), i as u16)
            ]
        );
    }
    assert_eq!(fake.queries(), 2, "one A and one AAAA for all 20 callers");
}

#[test]
fn abandoned_lookup_does_not_strand_waiters() {
    let _w = Watchdog::new("abandoned_lookup_does_not_strand_waiters", LIMIT);
    let fake = FakeDns::start_delayed(
        Duration::from_millis(200),
        Box::new(|_, _| {
            vec![Reply::Answer {
                rcode: 0,
                tc: false,
                ips: vec![ip("198.51.100.5")],
            }]
        }),
    );
    let r = resolver(&[fake.addr], false);
    let ex = LocalExecutor::new();
    let (r1, r2) = (r.clone(), r.clone());
    let leader = ex.spawn(async move { r1.resolve("gone.test", 1).await });
    let follower = ex.spawn(async move { r2.resolve("gone.test", 2).await });
    let got = run(ex.run(async {
        // Let both start, then cancel the one that sent the queries.
        ss_smol::rt::Timer::after(Duration::from_millis(50)).await;
        drop(leader);
        follower.await
    }));
    assert_eq!(got.unwrap(), vec![sa("198.51.100.5:2")]);
}

#[test]
fn in_flight_queries_are_bounded() {
    let _w = Watchdog::new("in_flight_queries_are_bounded", LIMIT);
    const MAX: usize = 4;
    // The server holds queries until none has come for 300 ms, then answers them all: the
    // largest batch is the most that were outstanding at once.
    let max_batch = Arc::new(AtomicUsize::new(0));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (max_batch, stop) = (max_batch.clone(), stop.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let mut held: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => held.push((buf[..n].to_vec(), from)),
                    Err(_) => {
                        max_batch.fetch_max(held.len(), Ordering::SeqCst);
                        for (q, from) in held.drain(..) {
                            let a = answer(&q, 0, false, &[ip("198.51.100.6")]);
                            let _ = sock.send_to(&a, from);
                        }
                    }
                }
            }
        })
    };
    let mut o = Options::new(vec![addr], false, 64);
    o.hosts_file = None;
    o.max_in_flight = MAX;
    let r = Resolver::with_options(o).unwrap();
    let ex = LocalExecutor::new();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let r = r.clone();
            ex.spawn(async move { r.resolve(&format!("n{i}.test"), 1).await })
        })
        .collect();
    let results = run(ex.run(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    }));
    stop.store(true, Ordering::SeqCst);
    let _ = server.join();
    for res in results {
        assert_eq!(res.unwrap(), vec![sa("198.51.100.6:1")]);
    }
    let max = max_batch.load(Ordering::SeqCst);
    assert!(
        (1..=MAX).contains(&max),
        "{max} queries outstanding at once"
    );
    assert_eq!(r.queries_sent(), 24);
}
