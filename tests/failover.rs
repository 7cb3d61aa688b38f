//! Server failover in the client modes (`ss-smol local`; tunnel and redir share the code):
//! what a client with several servers, or with servers that are down, unresolvable or out of
//! reach for want of file descriptors, does about it.
//!
//! What is tested, and why:
//!
//! * **A server killed mid-transfer** (`a_server_killed_mid_transfer_fails_over_and_is_found_again`):
//!   with two servers, a server that dies ends the connections it carried (the client sees EOF
//!   or a reset, not a hang), new connections fail over to the other server so the SOCKS client
//!   sees success, the dead server is logged `down` once, and once it is back it is probed
//!   again (probability 1/(failures+20) per connection) and logged `back`.
//! * **All servers down, then one back** (`all_servers_down_answers_promptly_then_one_comes_back`):
//!   every SOCKS request gets a failure reply at once (no hang), the client does not spin while
//!   nothing works, and a server that comes up is found and then used for ~every connection.
//! * **DNS down at start** (`a_server_name_unresolvable_at_start_resolves_later`, needs
//!   dnsmasq): a server given by name, with a name server that never answers, must not stop
//!   the client from starting; it answers SOCKS with a failure meanwhile, and resolves the name
//!   later (backoff 1, 2, 4, … 60 s) without a restart.
//! * **File descriptors exhausted** (`file_descriptors_exhausted_logs_once_and_recovers`): an
//!   EMFILE episode at accept is logged a couple of times, not once per retry, costs no CPU,
//!   and ends (logged) when descriptors are free again.
//! * **SIGUSR1** (`sigusr1_logs_per_server_counters`): one line per server with its state, its
//!   connection count and the ciphertext bytes sent and received through it.
//! * **Servers of their own** (`servers_each_with_their_own_method_from_a_file_a_link_and_a_list`,
//!   `a_server_list_read_again_on_sighup_leaves_open_connections_be`,
//!   `links_decode_and_bad_entries_are_named`): three methods from a `servers` array, an
//!   `ss://` link and a SIP008 list at once; a list replaced and SIGHUP sent moves new
//!   connections at once and leaves a running transfer be; bad links and entries are one line
//!   naming them (a bad list entry is skipped, the rest used).
//!
//! The log lines are matched by substring (the wording the implementation promises:
//! `server HOST:PORT is down`, `… is back`, `server 'NAME': cannot resolve`,
//! `server 'NAME' resolves to`, `accepting connections again`, `server HOST:PORT: STATE …
//! connections N … sent X B, received Y B`). Which server carried a connection is read from
//! the servers' own debug logs (`ss-smol server -v` logs `PEER -> TARGET: connected` for every
//! relayed connection), not from the client, so the tests do not depend on the client's
//! debug wording for that.
//!
//! Nothing asserts wall-clock speed; "no busy loop" is the client's CPU time (utime + stime
//! from /proc/PID/stat) over a window of several seconds, which a spinning loop would fill.
//! Loopback only; every process is a `Proc` guard (killed on drop) and every test has a
//! `Watchdog`.
//!
//! Several checks of a test are independent, so a test records every unmet expectation it can
//! still observe ([`Checks`]) and fails at the end listing them all, rather than stopping at
//! the first: a developer sees at once which parts of the behaviour are missing.

mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const METHOD: &str = "chacha20-ietf-poly1305";
/// Linux's SIGUSR1 on the architectures the tests run on (x86, ARM); MIPS differs (16) but
/// the tests run on the build host.
const SIGUSR1: i32 = 10;
/// How long a SOCKS request may take to be answered, success or failure: generous, so a loaded
/// machine passes, yet far below anything a hang would show.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// CPU a client may use over a measuring window while it has nothing to do but wait.
const IDLE_CPU_LIMIT: f64 = 0.5;

// ---------------------------------------------------------------------------------------------
// Processes

/// `ss-smol server` on 127.0.0.1:`port`, debug logging on (it logs `… connected` for each
/// connection it relays: how the tests tell which server carried one), loopback targets allowed
/// (the echo server is on 127.0.0.1).
fn server_command(port: u16) -> Command {
    let mut cmd = Command::new(ss_smol_bin());
    cmd.arg("server")
        .args(["-s", "127.0.0.1", "-p", &port.to_string()])
        .args(["-k", PASSWORD, "-m", METHOD, "-t", "60", "-v"])
        .arg("--allow-private-targets");
    cmd
}

/// A server on a port chosen here.
fn start_server(name: &str) -> (Proc, u16) {
    spawn_listening(name, server_command)
}

/// A server on a given port (a restart on the port the client knows).
fn start_server_on(name: &str, port: u16) -> Proc {
    let mut p = Proc::spawn(name, server_command(port));
    p.wait_for_tcp(v4(port), START_TIMEOUT);
    p
}

/// `ss-smol local` with one `-s` per entry of `servers` (each `host:port`), debug logging on,
/// and `extra` appended.
fn start_client(servers: &[String], extra: &[&str]) -> ClientProc {
    let (proc, port) = spawn_listening("local-failover", |port| {
        let mut cmd = Command::new(ss_smol_bin());
        cmd.arg("local");
        for s in servers {
            cmd.args(["-s", s]);
        }
        cmd.args(["-b", "127.0.0.1", "-l", &port.to_string()])
            .args(["-k", PASSWORD, "-m", METHOD, "-t", "60", "-v"])
            .args(extra);
        cmd
    });
    ClientProc { proc, port }
}

fn hostport(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The number of relayed connections a server's `-v` log shows to `target`.
fn relayed(server: &Proc, target: SocketAddr) -> usize {
    count(&server.stderr(), &format!("-> {target}: connected"))
}

// ---------------------------------------------------------------------------------------------
// Logs, CPU

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// The message of a log line `YYYY-MM-DD HH:MM:SS LEVEL: message`.
fn message(line: &str) -> &str {
    line.get(20..)
        .and_then(|rest| rest.split_once(": "))
        .map_or(line, |(_, m)| m)
}

/// Clock ticks per second of /proc/PID/stat's times.
fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// CPU time (user + system) `pid` has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // `pid (comm) state …`: comm may hold spaces, so count fields from the last ')'; field 3
    // (state) is the first after it, so utime (14) and stime (15) are the 12th and 13th.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    ticks as f64 / clk_tck()
}

/// Unmet expectations of one test, reported together at the end.
struct Checks {
    test: &'static str,
    failed: Vec<String>,
}

impl Checks {
    fn new(test: &'static str) -> Checks {
        Checks {
            test,
            failed: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            let m = msg();
            eprintln!("{}: CHECK FAILED: {m}", self.test);
            self.failed.push(m);
        }
    }

    /// Fails the test with every unmet expectation. Call it while the processes are still
    /// alive, so that their logs are printed as they drop.
    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{}: {} check(s) failed:\n- {}",
            self.test,
            self.failed.len(),
            self.failed.join("\n- ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SOCKS attempts

enum Attempt {
    /// Reply 0: the stream is ready for payload.
    Connected(TcpStream),
    /// A failure reply with this REP code.
    Refused(u8),
    /// No reply: the connection was closed, reset or timed out (the text says which).
    NoReply(String),
}

/// One SOCKS5 CONNECT to `target` through `proxy`, the reply awaited at most `reply_timeout`.
fn socks_attempt(proxy: SocketAddr, target: SocketAddr, reply_timeout: Duration) -> Attempt {
    let mut s = match connect(proxy) {
        Ok(s) => s,
        Err(e) => return Attempt::NoReply(format!("connect to the client: {e}")),
    };
    s.set_read_timeout(Some(reply_timeout)).unwrap();
    if let Err(e) = socks5_greet(&mut s) {
        return Attempt::NoReply(format!("greeting: {e} ({:?})", e.kind()));
    }
    match socks5_request(&mut s, 1, &Target::Ip(target)) {
        Ok((0, _)) => {
            set_timeouts(&s).unwrap();
            Attempt::Connected(s)
        }
        Ok((rep, _)) => Attempt::Refused(rep),
        Err(e) => Attempt::NoReply(format!("request: {e} ({:?})", e.kind())),
    }
}

/// A short echo (`len` bytes) through `proxy` to `target`; the reason when it fails.
fn small_echo(proxy: SocketAddr, target: SocketAddr, seed: u64, len: usize) -> Result<(), String> {
    match socks_attempt(proxy, target, REPLY_TIMEOUT) {
        Attempt::Connected(s) => match echo_transfer(s, seed, len) {
            Ok((sent, got, n)) if n == len && sent == got => Ok(()),
            Ok((_, _, n)) => Err(format!("echo: {n} of {len} bytes or different content")),
            Err(e) => Err(format!("echo: {e}")),
        },
        Attempt::Refused(rep) => Err(format!("SOCKS reply {rep}")),
        Attempt::NoReply(e) => Err(format!("no SOCKS reply: {e}")),
    }
}

/// A transfer that runs until the connection breaks: a thread writes for ever, another reads
/// the echo back; the count of echoed bytes and how the reading ended are kept.
struct EndlessTransfer {
    local: SocketAddr,
    echoed: Arc<AtomicU64>,
    ended: Arc<Mutex<Option<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    stream: TcpStream,
    threads: Vec<thread::JoinHandle<()>>,
}

impl EndlessTransfer {
    fn start(s: TcpStream) -> EndlessTransfer {
        let local = s.local_addr().unwrap();
        let echoed = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let mut writer = s.try_clone().unwrap();
        let mut reader = s.try_clone().unwrap();
        let w_stop = stop.clone();
        let writer_thread = thread::spawn(move || {
            let mut gen = DataGen::new(0xFA11);
            let mut buf = vec![0u8; 16 * 1024];
            while !w_stop.load(Ordering::SeqCst) {
                gen.fill(&mut buf);
                if writer.write_all(&buf).is_err() {
                    return;
                }
                // A steady stream, not a flood: keeps the client's buffers far from full, so
                // the transfer is plainly running when the server is killed.
                thread::sleep(Duration::from_millis(2));
            }
        });
        let (r_echoed, r_ended, r_stop) = (echoed.clone(), ended.clone(), stop.clone());
        let reader_thread = thread::spawn(move || {
            // Short timeouts so that the thread notices `stop`; a timeout is not an end.
            reader
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let how = loop {
                if r_stop.load(Ordering::SeqCst) {
                    return;
                }
                match reader.read(&mut buf) {
                    Ok(0) => break "EOF".to_owned(),
                    Ok(n) => {
                        r_echoed.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => break format!("{e}"),
                }
            };
            *r_ended.lock().unwrap() = Some((Instant::now(), how));
            // Unblock the writer.
            let _ = reader.shutdown(Shutdown::Both);
        });
        EndlessTransfer {
            local,
            echoed,
            ended,
            stop,
            stream: s,
            threads: vec![writer_thread, reader_thread],
        }
    }

    fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::SeqCst)
    }

    fn ended(&self) -> Option<(Instant, String)> {
        self.ended.lock().unwrap().clone()
    }
}

impl Drop for EndlessTransfer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A server killed mid-transfer

/// Two servers; a long transfer runs through one of them (A), which is then SIGKILLed: the
/// transfer's connection ends promptly with one log line, the next 20 connections all succeed
/// (failed over to B), A is logged `down` once; A restarted on its port is found again within
/// a few hundred connections (the probe probability is 1/(failures+20)) and logged `back`.
///
/// Against the client before failover this fails where a connection is sent to the dead
/// server (round robin without retry) and on the `down` / `back` lines.
#[test]
fn a_server_killed_mid_transfer_fails_over_and_is_found_again() {
    let _w = Watchdog::new("server killed mid-transfer", Duration::from_secs(240));
    let mut checks = Checks::new("server killed mid-transfer");
    let echo = EchoServer::start();
    let (p1, port1) = start_server("server-1");
    let (p2, port2) = start_server("server-2");
    let mut servers = [(p1, port1), (p2, port2)];
    let mut client = start_client(&[hostport(port1), hostport(port2)], &[]);

    // The long transfer.
    let s = match socks_attempt(client.addr(), echo.v4(), REPLY_TIMEOUT) {
        Attempt::Connected(s) => s,
        Attempt::Refused(rep) => panic!("first connection, both servers up: SOCKS reply {rep}"),
        Attempt::NoReply(e) => panic!("first connection, both servers up: {e}"),
    };
    let transfer = EndlessTransfer::start(s);
    assert!(
        wait_until(Duration::from_secs(20), || transfer.echoed() >= 256 * 1024),
        "the long transfer did not get going: {} bytes echoed in 20 s",
        transfer.echoed()
    );
    // Which server carries it: the one whose log shows the connection. Call it A.
    let carriers: Vec<usize> = (0..2)
        .filter(|&i| relayed(&servers[i].0, echo.v4()) > 0)
        .collect();
    assert_eq!(
        carriers.len(),
        1,
        "exactly one server should show the one connection (servers' logs: {:?})",
        servers
            .iter()
            .map(|s| relayed(&s.0, echo.v4()))
            .collect::<Vec<_>>()
    );
    if carriers[0] == 1 {
        servers.swap(0, 1);
    }
    let port_a = servers[0].1;
    let port_b = servers[1].1;
    let down_a = format!("server {} is down", hostport(port_a));
    let down_b = format!("server {} is down", hostport(port_b));
    let back_a = format!("server {} is back", hostport(port_a));

    // Kill A while the transfer runs.
    let before_kill = transfer.echoed();
    let mark = client.proc.stderr_mark();
    let killed_at = Instant::now();
    servers[0].0.signal(SIGKILL);
    assert!(
        servers[0].0.wait_exit(Duration::from_secs(10)).is_some(),
        "server A did not die of SIGKILL"
    );
    // Its connection must end (EOF or reset), not hang.
    let ended = wait_until(Duration::from_secs(15), || transfer.ended().is_some());
    checks.check(ended, || {
        format!(
            "the transfer through the killed server was still open 15 s later ({} bytes \
             echoed before the kill, {} after)",
            before_kill,
            transfer.echoed()
        )
    });
    if let Some((at, how)) = transfer.ended() {
        eprintln!(
            "transfer ended {:?} after the kill: {how}",
            at.saturating_duration_since(killed_at)
        );
    }
    // One log line for that connection (its end), not a flood: lines naming it as `PEER -> `.
    thread::sleep(Duration::from_secs(1));
    let who = format!("{} -> ", transfer.local);
    let lines = count(&client.proc.stderr_since(mark), &who);
    checks.check(lines == 1, || {
        format!(
            "the client logged {lines} lines for the broken connection ({who}…), expected 1:\n{}",
            client
                .proc
                .stderr_since(mark)
                .lines()
                .filter(|l| l.contains(&who))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    drop(transfer);

    // 20 new connections: all succeed, through B.
    let mut failures = Vec::new();
    for i in 0..20 {
        if let Err(e) = small_echo(client.addr(), echo.v4(), 100 + i, 1000) {
            failures.push(format!("#{i}: {e}"));
        }
    }
    checks.check(failures.is_empty(), || {
        format!(
            "with A dead and B up, {} of 20 connections failed: {}",
            failures.len(),
            failures.join("; ")
        )
    });
    let log = client.proc.stderr();
    let down_lines: Vec<&str> = log.lines().filter(|l| l.contains(&down_a)).collect();
    checks.check(down_lines.len() == 1, || {
        format!(
            "`{down_a}` logged {} times, expected once",
            down_lines.len()
        )
    });
    checks.check(down_lines.iter().all(|l| l.contains(" WARN: ")), || {
        format!("`{down_a}` should be a WARN line: {down_lines:?}")
    });
    checks.check(!log.contains(&down_b), || {
        format!("`{down_b}` logged, but B never went down")
    });

    // Restart A on its port; it must be found again.
    let mark = client.proc.stderr_mark();
    servers[0].0 = start_server_on("server-A-again", port_a);
    let mut found_after = None;
    let mut failures = Vec::new();
    for i in 0..400 {
        if let Err(e) = small_echo(client.addr(), echo.v4(), 1000 + i, 100) {
            failures.push(format!("#{i}: {e}"));
        }
        if relayed(&servers[0].0, echo.v4()) > 0 || client.proc.stderr_since(mark).contains(&back_a)
        {
            found_after = Some(i + 1);
            break;
        }
    }
    eprintln!("restarted server A found after {found_after:?} connections");
    checks.check(found_after.is_some(), || {
        "the restarted server A was not used in 400 connections".to_owned()
    });
    checks.check(failures.is_empty(), || {
        format!(
            "{} connections failed while B was up: {}",
            failures.len(),
            failures
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )
    });
    if found_after.is_some() {
        let back = client.proc.wait_for_stderr(&back_a, Duration::from_secs(5))
            && client.proc.stderr_since(mark).contains(&back_a);
        checks.check(back, || {
            format!("`{back_a}` not logged after A was used again")
        });
        let used = wait_until(Duration::from_secs(5), || {
            relayed(&servers[0].0, echo.v4()) > 0
        });
        checks.check(used, || {
            format!("`{back_a}` logged but the restarted A's log shows no connection")
        });
    }
    client.proc.assert_running();
    client.proc.assert_no_panic();
    checks.finish();
}

// ---------------------------------------------------------------------------------------------
// 2. All servers down, then one back

/// Two servers, neither running (their ports refuse). For 10 s, one SOCKS request a second:
/// each gets a failure reply (REP ≠ 0) within the reply timeout, and the client's CPU time
/// over the window stays small. Then one server starts on its port: within 400 attempts one
/// succeeds, and then ~all of 20 more do (19 at least: the other server is still down and
/// probed now and then, and failover makes those probes invisible to the SOCKS client).
///
/// Against the client before failover this fails on the 20: round robin without retry sends
/// every other one to the dead server.
#[test]
fn all_servers_down_answers_promptly_then_one_comes_back() {
    let _w = Watchdog::new("all servers down", Duration::from_secs(300));
    let mut checks = Checks::new("all servers down");
    let echo = EchoServer::start();
    // Ports nothing listens on: connects are refused.
    let (port_a, port_b) = (free_port(), free_port());
    let mut client = start_client(&[hostport(port_a), hostport(port_b)], &[]);
    let pid = client.proc.pid();

    let cpu_start = cpu_seconds(pid);
    let window_start = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..10u32 {
        // One attempt a second, each started on its second.
        let due = window_start + Duration::from_secs(u64::from(i));
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let t = Instant::now();
        let attempt = socks_attempt(client.addr(), echo.v4(), REPLY_TIMEOUT);
        slowest = slowest.max(t.elapsed());
        match attempt {
            Attempt::Refused(rep) => assert_ne!(rep, 0),
            Attempt::Connected(_) => {
                panic!("attempt {i}: SOCKS success with no server running")
            }
            Attempt::NoReply(e) => checks.check(false, || {
                format!(
                    "attempt {i} with every server down: no SOCKS failure reply ({e}, after \
                     {:?})",
                    t.elapsed()
                )
            }),
        }
    }
    // The window is at least 10 s even if the attempts were answered at once.
    thread::sleep(
        (window_start + Duration::from_secs(10)).saturating_duration_since(Instant::now()),
    );
    let window = window_start.elapsed();
    let cpu = cpu_seconds(pid) - cpu_start;
    eprintln!("all down: CPU {cpu:.2} s over {window:?}; slowest reply {slowest:?}");
    checks.check(cpu < IDLE_CPU_LIMIT, || {
        format!("the client used {cpu:.2} s of CPU over {window:?} with every server down")
    });
    client.proc.assert_running();

    // One server comes up on its port.
    let _server = start_server_on("server-A", port_a);
    let mut first_ok = None;
    let mut last_err = String::new();
    for i in 0..400u64 {
        match small_echo(client.addr(), echo.v4(), i, 100) {
            Ok(()) => {
                first_ok = Some(i + 1);
                break;
            }
            Err(e) => last_err = e,
        }
    }
    eprintln!("server A found after {first_ok:?} attempts");
    assert!(
        first_ok.is_some(),
        "no connection succeeded in 400 attempts after server A came up (last: {last_err})"
    );
    let mut failures = Vec::new();
    for i in 0..20u64 {
        if let Err(e) = small_echo(client.addr(), echo.v4(), 1000 + i, 1000) {
            failures.push(format!("#{i}: {e}"));
        }
    }
    checks.check(failures.len() <= 1, || {
        format!(
            "with server A back, {} of 20 connections failed: {}",
            failures.len(),
            failures.join("; ")
        )
    });
    let log = client.proc.stderr();
    checks.check(
        log.contains(&format!("server {} is back", hostport(port_a))),
        || format!("`server {} is back` not logged", hostport(port_a)),
    );
    client.proc.assert_running();
    client.proc.assert_no_panic();
    checks.finish();
}

// ---------------------------------------------------------------------------------------------
// 3. DNS down at start

/// dnsmasq on 127.0.0.1:`port` (UDP and TCP), answering only `records`, nothing forwarded.
/// `support::start_dnsmasq` picks its own port; this one must take over a port the client was
/// already given.
fn start_dnsmasq_on(port: u16, records: &[&str]) -> Proc {
    require_tool("dnsmasq");
    let mut p = Proc::spawn("dnsmasq", dnsmasq_command(port, records));
    p.wait_for_tcp(v4(port), START_TIMEOUT);
    p
}

/// The server is named `ss.test` and the only name server (`-d`) is a UDP socket that never
/// answers: the client starts anyway (its `listening on` line), answers a SOCKS request with a
/// failure promptly, logs `cannot resolve` once. Then a dnsmasq takes over the port and
/// answers `ss.test → 127.0.0.1`: within ~70 s (the retry backoff is at most 60 s, and the
/// name server was down only ~10 s) a connection succeeds, the same process still running, and
/// `resolves to` is logged.
///
/// Against the client before failover this fails at start: `-d` was a server-only option, and
/// an unresolvable server name was fatal.
#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn a_server_name_unresolvable_at_start_resolves_later() {
    let _w = Watchdog::new("DNS down at start", Duration::from_secs(180));
    require_tool("dnsmasq");
    let mut checks = Checks::new("DNS down at start");
    let echo = EchoServer::start();
    let (_server, port_a) = start_server("server");
    let dns_port = free_port();
    // Bound and held, never answered: queries vanish (no ICMP refusal either).
    let silent = UdpSocket::bind(v4(dns_port)).expect("bind the silent name server");
    let dns = v4(dns_port).to_string();
    let mut client = start_client(
        &["ss.test".to_owned()],
        &["-p", &port_a.to_string(), "-d", &dns],
    );
    let started = Instant::now();
    let pid = client.proc.pid();
    checks.check(client.proc.stderr().contains("listening on"), || {
        "no `listening on` line although the client accepts connections".to_owned()
    });

    // A request while the name cannot be resolved: a failure reply, promptly.
    let t = Instant::now();
    match socks_attempt(client.addr(), echo.v4(), REPLY_TIMEOUT) {
        Attempt::Refused(rep) => assert_ne!(rep, 0),
        Attempt::Connected(_) => panic!("SOCKS success although the server name cannot resolve"),
        Attempt::NoReply(e) => checks.check(false, || {
            format!(
                "no SOCKS failure reply while the server name is unresolved ({e}, after {:?})",
                t.elapsed()
            )
        }),
    }
    let cannot = "server 'ss.test': cannot resolve";
    checks.check(
        client.proc.wait_for_stderr(cannot, Duration::from_secs(20)),
        || format!("`{cannot}` not logged within 20 s"),
    );
    // Keep the name server down ~10 s, over several retries, then count: once.
    thread::sleep((started + Duration::from_secs(10)).saturating_duration_since(Instant::now()));
    let n = count(&client.proc.stderr(), cannot);
    checks.check(n == 1, || {
        format!("`{cannot}` logged {n} times, expected once")
    });
    // The client did ask the given name server (the test's premise).
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let asked = silent.recv_from(&mut buf).is_ok();
    checks.check(asked, || {
        format!("the client sent no query to the -d name server {dns}")
    });
    client.proc.assert_running();

    // The name server comes up on the same port.
    drop(silent);
    let _dnsmasq = start_dnsmasq_on(dns_port, &["--address=/ss.test/127.0.0.1"]);
    let up_at = Instant::now();
    let mut ok_after = None;
    let mut last_err = String::new();
    while up_at.elapsed() < Duration::from_secs(75) {
        match small_echo(client.addr(), echo.v4(), 7, 1000) {
            Ok(()) => {
                ok_after = Some(up_at.elapsed());
                break;
            }
            Err(e) => last_err = e,
        }
        if !client.proc.is_running() {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    eprintln!("resolved and connected {ok_after:?} after dnsmasq came up");
    checks.check(ok_after.is_some(), || {
        format!("no connection succeeded within 75 s of the name server coming up ({last_err})")
    });
    checks.check(client.proc.is_running() && client.proc.pid() == pid, || {
        "the client is no longer the process that was started".to_owned()
    });
    checks.check(
        client
            .proc
            .stderr()
            .contains("server 'ss.test' resolves to"),
        || "`server 'ss.test' resolves to` not logged".to_owned(),
    );
    client.proc.assert_no_panic();
    checks.finish();
}

// ---------------------------------------------------------------------------------------------
// 4. File descriptors exhausted

/// The client under RLIMIT_NOFILE 64 (`-n 64`) with ~100 plain TCP connections held open on
/// its port (no SOCKS greeting; `--handshake-timeout 60` so that none is closed for silence
/// while the test holds them): accept fails with EMFILE. That episode is logged a couple of
/// times at most (`Too many open files` on ≤ 3 lines), the client's CPU over 5 s stays small,
/// and once the connections are closed a SOCKS echo works again and `accepting connections
/// again` is logged.
///
/// Against the client before failover this fails on the count: it logs `accept: …` on every
/// retry (every 200 ms) and never says the episode ended.
#[test]
fn file_descriptors_exhausted_logs_once_and_recovers() {
    let _w = Watchdog::new("file descriptors exhausted", Duration::from_secs(120));
    let mut checks = Checks::new("file descriptors exhausted");
    let echo = EchoServer::start();
    let (_server, port) = start_server("server");
    let mut client = start_client(
        &[hostport(port)],
        &["-n", "64", "--handshake-timeout", "60"],
    );
    let pid = client.proc.pid();

    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        // The kernel completes these from the listen backlog even when the client cannot
        // accept them, so they connect either way.
        match TcpStream::connect_timeout(&client.addr(), Duration::from_secs(2)) {
            Ok(s) => held.push(s),
            Err(_) => refused += 1,
        }
    }
    eprintln!(
        "holding {} connections ({refused} failed to connect)",
        held.len()
    );
    let emfile = "Too many open files";
    assert!(
        client.proc.wait_for_stderr(emfile, Duration::from_secs(10)),
        "holding {} connections, the client under -n 64 never logged `{emfile}` (harness \
         premise)",
        held.len()
    );
    let accept_line = client
        .proc
        .stderr()
        .lines()
        .find(|l| l.contains(emfile))
        .unwrap_or_default()
        .to_owned();
    checks.check(accept_line.contains("accept:"), || {
        format!("the EMFILE line does not say `accept:`: {accept_line:?}")
    });

    let cpu_start = cpu_seconds(pid);
    let t = Instant::now();
    thread::sleep(Duration::from_secs(5));
    let cpu = cpu_seconds(pid) - cpu_start;
    let window = t.elapsed();
    eprintln!("EMFILE: CPU {cpu:.2} s over {window:?}");
    checks.check(cpu < IDLE_CPU_LIMIT, || {
        format!("the client used {cpu:.2} s of CPU over {window:?} while out of descriptors")
    });
    let n = count(&client.proc.stderr(), emfile);
    checks.check(n <= 3, || {
        format!("`{emfile}` on {n} lines for one episode, expected at most 3")
    });
    client.proc.assert_running();

    // Free the descriptors.
    drop(held);
    let t = Instant::now();
    let mut ok_after = None;
    let mut last_err = String::new();
    while t.elapsed() < Duration::from_secs(20) {
        match small_echo(client.addr(), echo.v4(), 9, 1000) {
            Ok(()) => {
                ok_after = Some(t.elapsed());
                break;
            }
            Err(e) => last_err = e,
        }
        thread::sleep(Duration::from_millis(500));
    }
    checks.check(ok_after.is_some(), || {
        format!("no SOCKS echo worked within 20 s of closing the held connections ({last_err})")
    });
    let again = "accepting connections again";
    checks.check(
        client.proc.wait_for_stderr(again, Duration::from_secs(5)),
        || format!("`{again}` not logged after the descriptors were freed"),
    );
    client.proc.assert_running();
    client.proc.assert_no_panic();
    checks.finish();
}

// ---------------------------------------------------------------------------------------------
// 5. SIGUSR1

/// The counters a SIGUSR1 line shows for one server.
#[derive(Debug)]
struct ServerStats {
    state: String,
    connections: u64,
    sent: u64,
    received: u64,
}

/// The number right after `key` in `msg` (`connections 3` → 3).
fn number_after(msg: &str, key: &str) -> Option<u64> {
    let at = msg.find(key)? + key.len();
    let digits: String = msg[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Parses `server HOST:PORT: STATE … connections N … sent X B, received Y B`.
fn parse_stats(msg: &str, prefix: &str) -> Result<ServerStats, String> {
    let rest = msg
        .strip_prefix(prefix)
        .ok_or_else(|| format!("does not start with {prefix:?}"))?;
    let state: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let connections = number_after(rest, "connections ").ok_or("no `connections N`".to_owned())?;
    let sent = number_after(rest, "sent ").ok_or("no `sent X B`".to_owned())?;
    let received = number_after(rest, "received ").ok_or("no `received Y B`".to_owned())?;
    if !rest.contains(&format!("sent {sent} B, received {received} B")) {
        return Err("not in the form `sent X B, received Y B`".to_owned());
    }
    Ok(ServerStats {
        state,
        connections,
        sent,
        received,
    })
}

/// Two servers, 100 000-byte echoes until each server carried at least one (round robin: two
/// connections do it). SIGUSR1 then makes the client log, for each server, one line starting
/// `server 127.0.0.1:PORT:` with its state (`up` here), `connections N` (≥ 1) and `sent X B,
/// received Y B`: ciphertext, so at least the plaintext that went through that server each way.
///
/// Against the client before failover this fails at once: SIGUSR1's default action ends it.
#[test]
fn sigusr1_logs_per_server_counters() {
    const LEN: usize = 100_000;
    let _w = Watchdog::new("SIGUSR1", Duration::from_secs(90));
    let mut checks = Checks::new("SIGUSR1");
    let echo = EchoServer::start();
    let (pa, port_a) = start_server("server-A");
    let (pb, port_b) = start_server("server-B");
    let servers = [(&pa, port_a), (&pb, port_b)];
    let mut client = start_client(&[hostport(port_a), hostport(port_b)], &[]);

    // Plaintext bytes each server carried (each way: it is an echo).
    let mut plain = [0u64; 2];
    for i in 0..8u64 {
        if plain.iter().all(|&p| p > 0) {
            break;
        }
        let before: Vec<usize> = servers.iter().map(|s| relayed(s.0, echo.v4())).collect();
        let s = socks5_connect(client.addr(), &Target::Ip(echo.v4()))
            .unwrap_or_else(|e| panic!("connection {i} with both servers up: {e}"));
        assert_echo(s, 500 + i, LEN, &format!("connection {i}"));
        // The server's log line is written before it relays, so it is there by now.
        let after: Vec<usize> = servers.iter().map(|s| relayed(s.0, echo.v4())).collect();
        let carriers: Vec<usize> = (0..2).filter(|&k| after[k] > before[k]).collect();
        assert_eq!(
            carriers.len(),
            1,
            "connection {i}: exactly one server should show it ({before:?} -> {after:?})"
        );
        plain[carriers[0]] += LEN as u64;
    }
    assert!(
        plain.iter().all(|&p| p > 0),
        "8 connections did not reach both servers: {plain:?}"
    );

    let mark = client.proc.stderr_mark();
    client.proc.signal(SIGUSR1);
    let prefixes: Vec<String> = servers
        .iter()
        .map(|s| format!("server {}:", hostport(s.1)))
        .collect();
    let logged = wait_until(Duration::from_secs(5), || {
        let log = client.proc.stderr_since(mark);
        prefixes
            .iter()
            .all(|p| log.lines().any(|l| message(l).starts_with(p.as_str())))
    });
    thread::sleep(Duration::from_millis(300));
    assert!(
        client.proc.is_running(),
        "the client did not survive SIGUSR1 ({:?})",
        client.proc.exit_status()
    );
    assert!(
        logged,
        "no per-server lines after SIGUSR1 within 5 s; logged since:\n{}",
        client.proc.stderr_since(mark)
    );
    let log = client.proc.stderr_since(mark);
    let mut sent_total = 0;
    for (k, prefix) in prefixes.iter().enumerate() {
        let lines: Vec<&str> = log
            .lines()
            .map(message)
            .filter(|m| m.starts_with(prefix.as_str()))
            .collect();
        checks.check(lines.len() == 1, || {
            format!(
                "{} lines start with {prefix:?}, expected 1: {lines:?}",
                lines.len()
            )
        });
        let Some(line) = lines.first() else { continue };
        match parse_stats(line, prefix) {
            Err(e) => checks.check(false, || format!("{line:?}: {e}")),
            Ok(st) => {
                eprintln!("{prefix} {st:?} (plaintext {} B each way)", plain[k]);
                checks.check(st.state == "up", || {
                    format!("{line:?}: state {:?}, expected `up`", st.state)
                });
                checks.check(st.connections >= 1, || {
                    format!("{line:?}: connections {}, expected ≥ 1", st.connections)
                });
                checks.check(st.sent >= plain[k], || {
                    format!(
                        "{line:?}: sent {} B < plaintext sent {} B",
                        st.sent, plain[k]
                    )
                });
                checks.check(st.received >= plain[k], || {
                    format!(
                        "{line:?}: received {} B < plaintext echoed {} B",
                        st.received, plain[k]
                    )
                });
                sent_total += st.sent;
            }
        }
    }
    let plain_total: u64 = plain.iter().sum();
    checks.check(sent_total >= plain_total, || {
        format!("sent over all servers {sent_total} B < plaintext sent {plain_total} B")
    });
    client.proc.assert_no_panic();
    checks.finish();
}

/// The harness's reading of a SIGUSR1 line (so that a failure of the test above is the
/// client's, not the parser's): the promised form parses, others do not.
#[test]
fn sigusr1_line_parser_reads_the_promised_form() {
    let p = "server 127.0.0.1:8388:";
    let st = parse_stats(
        "server 127.0.0.1:8388: up, connections 3, sent 100234 B, received 100512 B",
        p,
    )
    .unwrap();
    assert_eq!(
        (st.state.as_str(), st.connections, st.sent, st.received),
        ("up", 3, 100234, 100512)
    );
    let line =
        "2026-01-02 03:04:05 INFO: server 127.0.0.1:8388: down (2 failures), connections 0, \
                sent 0 B, received 0 B";
    let st = parse_stats(message(line), p).unwrap();
    assert_eq!((st.state.as_str(), st.connections), ("down", 0));
    assert!(parse_stats("server 127.0.0.1:8388: up, sent 1 B, received 2 B", p).is_err());
    assert!(parse_stats(
        "server 127.0.0.1:8389: up, connections 1, sent 1 B, received 2 B",
        p
    )
    .is_err());
}

// ---------------------------------------------------------------------------------------------
// 6. Servers with settings of their own: the `servers` array, ss:// links, SIP008 lists

/// A 16-byte Shadowsocks 2022 key (2022-blake3-aes-128-gcm), base64.
const KEY_2022: &str = "AAECAwQFBgcICQoLDA0ODw==";

/// `ss-smol server` on a port chosen here with its own method and password.
fn start_server_with(name: &str, method: &'static str, password: &'static str) -> (Proc, u16) {
    spawn_listening(name, move |port| {
        let mut cmd = Command::new(ss_smol_bin());
        cmd.arg("server")
            .args(["-s", "127.0.0.1", "-p", &port.to_string()])
            .args(["-k", password, "-m", method, "-t", "60", "-v"])
            .arg("--allow-private-targets");
        cmd
    })
}

/// `ss-smol local` with only `args` for its servers.
fn start_client_with(args: &[String]) -> ClientProc {
    let (proc, port) = spawn_listening("local-lists", |port| {
        let mut cmd = Command::new(ss_smol_bin());
        cmd.arg("local")
            .args(["-b", "127.0.0.1", "-l", &port.to_string(), "-t", "60", "-v"])
            .args(args);
        cmd
    });
    ClientProc { proc, port }
}

/// `ss-smol url ARGS…`: its output, or why it failed.
fn url(args: &[&str]) -> Result<String, String> {
    let out = Command::new(ss_smol_bin())
        .arg("url")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.success() {
        true => Ok(text),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// A SIP008 document of the given `(port, method, password)` servers on 127.0.0.1.
fn sip008(servers: &[(u16, &str, &str)]) -> String {
    let entries: Vec<String> = servers
        .iter()
        .map(|(port, method, password)| {
            format!(
                r#"{{"server": "127.0.0.1", "server_port": {port}, "method": "{method}",
                    "password": "{password}", "remarks": "port {port}"}}"#
            )
        })
        .collect();
    format!(r#"{{"version": 1, "servers": [{}]}}"#, entries.join(", "))
}

/// Three servers with three methods and keys, each given another way: the config file's
/// `servers` array, an `ss://` link (written by `ss-smol url` from flags), and a SIP008 list;
/// no shared password. Connections go round all three.
#[test]
fn servers_each_with_their_own_method_from_a_file_a_link_and_a_list() {
    let _watchdog = Watchdog::new("servers of their own", Duration::from_secs(120));
    let echo = EchoServer::start();
    let (s1, p1) = start_server_with("server-aes", "aes-128-gcm", "pw-one");
    let (s2, p2) = start_server_with("server-2022", "2022-blake3-aes-128-gcm", KEY_2022);
    let (s3, p3) = start_server_with("server-chacha", "chacha20-ietf-poly1305", "pw-three");
    let dir = TempDir::new("server-lists");
    let config = dir.join("client.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"servers": [{{"server": "127.0.0.1", "server_port": {p1},
                 "method": "aes-128-gcm", "password": "pw-one", "remarks": "one"}}]}}"#
        ),
    )
    .unwrap();
    let link = url(&[
        "-s",
        "127.0.0.1",
        "-p",
        &p2.to_string(),
        "-m",
        "2022-blake3-aes-128-gcm",
        "-k",
        KEY_2022,
    ])
    .unwrap();
    let link = link.trim().to_string();
    assert!(link.starts_with("ss://2022-blake3-aes-128-gcm:"), "{link}");
    let list = dir.join("list.json");
    std::fs::write(&list, sip008(&[(p3, "chacha20-ietf-poly1305", "pw-three")])).unwrap();
    let mut client = start_client_with(&[
        "-c".into(),
        config.to_string_lossy().into_owned(),
        "--server-url".into(),
        link,
        "--server-list".into(),
        list.to_string_lossy().into_owned(),
    ]);
    for i in 0..9 {
        small_echo(client.addr(), echo.v4(), i, 2000).unwrap_or_else(|e| {
            panic!("echo {i}: {e}\n{}", client.proc.stderr());
        });
    }
    for (name, s) in [("aes-128-gcm", &s1), ("2022", &s2), ("chacha", &s3)] {
        assert_eq!(relayed(s, echo.v4()), 3, "{name} server:\n{}", s.stderr());
    }
    client.proc.assert_running();
    client.proc.assert_no_panic();
}

/// A server list replaced and SIGHUP sent: new connections use the new list at once, a
/// transfer running through a server that left goes on, and a list that cannot be read leaves
/// the servers as they were.
#[test]
fn a_server_list_read_again_on_sighup_leaves_open_connections_be() {
    let _watchdog = Watchdog::new("SIGHUP", Duration::from_secs(120));
    let echo = EchoServer::start();
    let (s1, p1) = start_server_with("server-old", "aes-256-gcm", "old-pw");
    let (s2, p2) = start_server_with("server-new", "chacha20-ietf-poly1305", "new-pw");
    let dir = TempDir::new("sighup");
    let list = dir.join("list.json");
    std::fs::write(&list, sip008(&[(p1, "aes-256-gcm", "old-pw")])).unwrap();
    let mut client = start_client_with(&["--server-list".into(), list.to_string_lossy().into()]);
    small_echo(client.addr(), echo.v4(), 1, 1000).unwrap();
    let Attempt::Connected(s) = socks_attempt(client.addr(), echo.v4(), REPLY_TIMEOUT) else {
        panic!("no connection through the old server");
    };
    let transfer = EndlessTransfer::start(s);
    let flowing = |t: &EndlessTransfer| {
        let before = t.echoed();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            thread::sleep(Duration::from_millis(100));
            if t.echoed() > before + 64 * 1024 {
                return true;
            }
        }
        false
    };
    assert!(flowing(&transfer), "the transfer did not start");

    std::fs::write(&list, sip008(&[(p2, "chacha20-ietf-poly1305", "new-pw")])).unwrap();
    let mark = client.proc.stderr_mark();
    client.proc.signal(1); // SIGHUP
    assert!(
        client
            .proc
            .wait_for_stderr("1 new, 1 gone", Duration::from_secs(10)),
        "no reload line:\n{}",
        client.proc.stderr_since(mark)
    );
    let old_before = relayed(&s1, echo.v4());
    for i in 0..5 {
        small_echo(client.addr(), echo.v4(), 10 + i, 1000).unwrap();
    }
    assert_eq!(relayed(&s2, echo.v4()), 5, "new server:\n{}", s2.stderr());
    assert_eq!(
        relayed(&s1, echo.v4()),
        old_before,
        "the old server got new connections"
    );
    assert!(
        transfer.ended().is_none(),
        "the transfer was cut: {:?}",
        transfer.ended()
    );
    assert!(flowing(&transfer), "the transfer stopped after the reload");

    // A list that is not one: the servers stay.
    std::fs::write(&list, "{ not json").unwrap();
    client.proc.signal(1);
    assert!(
        client
            .proc
            .wait_for_stderr("the servers stay as they were", Duration::from_secs(10)),
        "{}",
        client.proc.stderr_since(mark)
    );
    small_echo(client.addr(), echo.v4(), 20, 1000).unwrap();
    assert_eq!(relayed(&s2, echo.v4()), 6);
    drop(transfer);
    client.proc.assert_running();
    client.proc.assert_no_panic();
}

/// `ss-smol url LINK` prints a config file for the link; bad links, `servers` entries and
/// list entries are one line naming the entry (a bad list entry is skipped, the rest used).
#[test]
fn links_decode_and_bad_entries_are_named() {
    let _watchdog = Watchdog::new("links", Duration::from_secs(60));
    let json = url(&["ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1:8888#Example1"]).unwrap();
    for want in [
        r#""server": "192.168.100.1""#,
        r#""server_port": 8888"#,
        r#""method": "aes-128-gcm""#,
        r#""password": "test""#,
        r#""remarks": "Example1""#,
    ] {
        assert!(json.contains(want), "{want} in\n{json}");
    }
    let e = url(&["ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1"]).unwrap_err();
    assert!(e.starts_with("ss-smol url: link 1: no :PORT"), "{e}");

    let fails = |args: &[&str]| {
        let mut cmd = Command::new(ss_smol_bin());
        cmd.arg("local").args(["-l", "1"]).args(args);
        let done = run_to_end("bad-entry", cmd, Duration::from_secs(20));
        assert!(!done.status.success(), "{args:?} started:\n{}", done.stderr);
        let lines: Vec<&str> = done.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{:?}", lines);
        lines[0].to_string()
    };
    let line = fails(&["--server-url", "ss://c2VjcmV0@192.0.2.1:8388"]);
    assert!(
        line.contains("--server-url") && line.contains("no ':'"),
        "{line}"
    );
    assert!(!line.contains("c2VjcmV0"), "the link is echoed: {line}");
    let dir = TempDir::new("bad-entries");
    let config = dir.join("c.json");
    std::fs::write(
        &config,
        r#"{"servers": [{"server": "192.0.2.1", "server_port": 1, "method": "aes-128-gcm",
            "password": "p"}, {"server": "192.0.2.2", "method": "aes-128-gcm", "password": "p"}]}"#,
    )
    .unwrap();
    let line = fails(&["-c", &config.to_string_lossy()]);
    assert!(
        line.contains("\"servers\" entry 2") && line.contains("server_port"),
        "{line}"
    );

    let echo = EchoServer::start();
    let (server, port) = start_server_with("server-listed", "aes-128-gcm", "good");
    let list = dir.join("list.json");
    std::fs::write(
        &list,
        format!(
            r#"{{"servers": [{{"remarks": "broken", "server": "192.0.2.9", "method": "nope",
                 "server_port": 1, "password": "x"}},
                {{"server": "127.0.0.1", "server_port": {port}, "method": "aes-128-gcm",
                  "password": "good"}}]}}"#
        ),
    )
    .unwrap();
    let client = start_client_with(&["--server-list".into(), list.to_string_lossy().into()]);
    let log = client.proc.stderr();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("server 1")).collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains("nope"),
        "{log}"
    );
    small_echo(client.addr(), echo.v4(), 3, 1000).unwrap();
    assert_eq!(relayed(&server, echo.v4()), 1);
    client.proc.assert_no_panic();
}
