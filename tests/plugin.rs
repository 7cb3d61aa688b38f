//! SIP003 plugins (`--plugin`, `--plugin-opts`, `plugin_args`, `plugin_mode`): real plugins
//! (simple-obfs's `obfs-local`/`obfs-server` with obfs=http and obfs=tls, v2ray-plugin's
//! websocket transport) between ss-smol and ss-smol, and between ss-smol and
//! shadowsocks-libev, with hash-checked transfers; UDP beside a TCP-only plugin, and through
//! the plugin's address with `plugin_mode` (the test relays that UDP, as no packaged plugin
//! carries it); and the plugin processes' lifecycle: a plugin that dies ends ss-smol,
//! ss-smol's death (even SIGKILL) ends the plugin and whatever it forked, SIGTERM leaves
//! nothing behind, broken plugins fail start-up with one line, the plugin's output is logged
//! in bounded memory, and the SIP003 environment.
//!
//! Processes are tracked through /proc: the plugin is a descendant of ss-smol (child or
//! grandchild; no test depends on which), its process group is recorded while it runs, and
//! every program a test starts gets an environment variable of its own ([`MARK_VAR`]) that all
//! its descendants inherit, so that leftovers are found even after they are reparented. A
//! [`Sweep`] kills whatever is still marked when a test ends, so a failing test leaves nothing
//! running either.
//!
//! The "within a second" bounds are functional requirements; they are polled with slack
//! ([`LIFECYCLE`]). Everything runs on loopback.
//!
//! The programs under test are always ss-smol (the `SS_SMOL_CLIENT_UNDER_TEST` switch is not
//! used: which implementation runs where is explicit in every test).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use support::*;

const METHOD: &str = "chacha20-ietf-poly1305";
/// Bytes sent, and echoed back at the same time, on each bulk transfer.
const BULK: usize = 4 * 1024 * 1024;
/// "Within a second", with slack for a loaded machine.
const LIFECYCLE: Duration = Duration::from_millis(1500);
/// How long an orderly stop may take: the plugins get SIGTERM, then SIGKILL after a grace of
/// a few seconds.
const STOP_LIMIT: Duration = Duration::from_secs(8);
/// The longest start-up wait for a plugin's port that the interface allows, plus slack.
const START_WAIT_LIMIT: Duration = Duration::from_secs(15);
/// The environment variable that marks every process a test starts (see the module docs).
const MARK_VAR: &str = "SS_SMOL_PLUGIN_TEST_MARK";

const OBFS_TOOLS: [&str; 2] = ["obfs-local", "obfs-server"];
const V2RAY_TOOLS: [&str; 1] = ["ss-v2ray-plugin"];

// ---------------------------------------------------------------------------------------------
// Marks and the sweep

/// A value for [`MARK_VAR`] that no other test (or run) uses.
fn new_mark(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Kills (SIGKILL) every process still carrying its mark when dropped: libev's plugins, which
/// libev does not stop when it is killed, and anything a failing test left. Declare it before
/// the processes, so it drops after them.
struct Sweep {
    mark: String,
}

impl Sweep {
    fn new(tag: &str) -> Sweep {
        Sweep {
            mark: new_mark(tag),
        }
    }

    /// Live processes carrying this mark.
    fn live(&self) -> Vec<ProcInfo> {
        live_with_env(MARK_VAR, &self.mark)
    }

    /// Waits (up to [`LIFECYCLE`]) until nothing carries the mark; panics naming what is left.
    fn assert_nothing_left(&self, what: &str) {
        if !wait_until(LIFECYCLE, || self.live().is_empty()) {
            panic!("{what}: processes left running: {:?}", self.live());
        }
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        for p in self.live() {
            signal_pid(p.pid, SIGKILL);
        }
    }
}

/// `program` with the mark in its environment.
fn marked(program: impl AsRef<std::ffi::OsStr>, sweep: &Sweep) -> Command {
    let mut cmd = Command::new(program);
    cmd.env(MARK_VAR, &sweep.mark);
    cmd
}

/// `ss-smol MODE`, marked.
fn smol(mode: &str, sweep: &Sweep) -> Command {
    let mut cmd = marked(ss_smol_bin(), sweep);
    cmd.arg(mode);
    cmd
}

// ---------------------------------------------------------------------------------------------
// Plugins and the processes using them

/// A plugin as the two sides configure it.
#[derive(Clone, Copy)]
struct Plugin {
    name: &'static str,
    client: &'static str,
    client_opts: &'static str,
    server: &'static str,
    server_opts: &'static str,
    /// What the first bytes from the client's plugin to the server look like.
    wire: &'static str,
    looks_right: fn(&[u8]) -> bool,
}

const OBFS_HTTP: Plugin = Plugin {
    name: "obfs-http",
    client: "obfs-local",
    client_opts: "obfs=http;obfs-host=www.example.com",
    server: "obfs-server",
    server_opts: "obfs=http",
    wire: "an HTTP request",
    looks_right: |b| b.starts_with(b"GET "),
};

const OBFS_TLS: Plugin = Plugin {
    name: "obfs-tls",
    client: "obfs-local",
    client_opts: "obfs=tls;obfs-host=www.example.com",
    server: "obfs-server",
    server_opts: "obfs=tls",
    wire: "a TLS handshake record",
    looks_right: |b| b.starts_with(&[0x16, 0x03]),
};

/// A path of our own on both sides: with a mismatch v2ray-plugin refuses the upgrade, so the
/// transfer also shows that the options reached the plugin.
const V2RAY_WS: Plugin = Plugin {
    name: "v2ray-ws",
    client: "ss-v2ray-plugin",
    client_opts: "host=www.example.com;path=/smol-ws",
    server: "ss-v2ray-plugin",
    server_opts: "server;host=www.example.com;path=/smol-ws",
    wire: "a websocket upgrade request",
    looks_right: |b| b.starts_with(b"GET /smol-ws"),
};

/// `ss-smol server` on 127.0.0.1:PORT behind the server plugin, TCP and UDP. It is up when
/// the plugin accepts on the public port.
fn smol_server(p: &Plugin, sweep: &Sweep, extra: &[&str]) -> (Proc, u16) {
    let (mut proc, port) = spawn_listening(&format!("ss-smol-server-{}", p.name), |port| {
        let mut cmd = smol("server", sweep);
        cmd.args(["-s", "127.0.0.1", "-p", &port.to_string()])
            .args(["-k", PASSWORD, "-m", METHOD, "-u", "-t", "60"])
            // Its targets are the echo servers on loopback.
            .arg("--allow-private-targets")
            .args(["--plugin", p.server, "--plugin-opts", p.server_opts])
            .args(extra);
        cmd
    });
    wait_listening(&mut proc);
    (proc, port)
}

/// `ss-smol MODE` (local or tunnel) on 127.0.0.1 in front of 127.0.0.1:`server_port`, with
/// `plugin` (a name or path) and `opts`.
fn smol_client(
    mode: &str,
    server_port: u16,
    plugin: &str,
    opts: &str,
    sweep: &Sweep,
    extra: &[&str],
) -> ClientProc {
    let (mut proc, port) = spawn_listening(&format!("ss-smol-{mode}"), |port| {
        let mut cmd = smol(mode, sweep);
        cmd.args(["-s", "127.0.0.1", "-p", &server_port.to_string()])
            .args(["-b", "127.0.0.1", "-l", &port.to_string()])
            .args(["-k", PASSWORD, "-m", METHOD, "-t", "60"])
            .args(["--plugin", plugin, "--plugin-opts", opts])
            .args(extra);
        cmd
    });
    wait_listening(&mut proc);
    ClientProc { proc, port }
}

/// Waits for ss-smol's "listening on" line: its listeners are bound before the plugin starts,
/// so an accepting port alone does not mean it has finished starting.
fn wait_listening(proc: &mut Proc) {
    if !proc.wait_for_stderr("listening on", START_WAIT_LIMIT) {
        proc.assert_running();
        panic!("{} never logged `listening on`", proc.name());
    }
}

/// libev's `ss-server` on 127.0.0.1:PORT behind the server plugin, TCP and UDP.
fn libev_server(p: &Plugin, sweep: &Sweep) -> (Proc, u16) {
    spawn_listening(&format!("libev-ss-server-{}", p.name), |port| {
        let mut cmd = marked("ss-server", sweep);
        // Without it libev truncates UDP datagrams larger than 2 × 1397 bytes.
        cmd.args(["--mtu", "9000"]);
        cmd.args(["-s", "127.0.0.1", "-p", &port.to_string()])
            .args(["-k", PASSWORD, "-m", METHOD, "-u", "-t", "60"])
            .args(["--plugin", p.server, "--plugin-opts", p.server_opts]);
        cmd
    })
}

/// libev's `ss-local` on 127.0.0.1 in front of 127.0.0.1:`server_port` with the client plugin.
fn libev_local(p: &Plugin, server_port: u16, sweep: &Sweep) -> ClientProc {
    let (mut proc, port) = spawn_listening(&format!("libev-ss-local-{}", p.name), |port| {
        let mut cmd = marked("ss-local", sweep);
        // Without it libev truncates UDP datagrams larger than 2 × 1397 bytes.
        cmd.args(["--mtu", "9000"]);
        cmd.args(["-s", "127.0.0.1", "-p", &server_port.to_string()])
            .args(["-b", "127.0.0.1", "-l", &port.to_string()])
            .args(["-k", PASSWORD, "-m", METHOD, "-t", "60"])
            .args(["--plugin", p.client, "--plugin-opts", p.client_opts]);
        cmd
    });
    // libev does not wait for its plugin: until the plugin listens, connections are reset.
    let plugin = wait_descendant(&mut proc, p.client);
    let plugin_port = sip003_local_port(plugin.pid);
    assert!(
        wait_until(START_WAIT_LIMIT, || connect(v4(plugin_port)).is_ok()),
        "libev's {} never listened on {plugin_port}",
        p.client
    );
    ClientProc { proc, port }
}

/// SS_LOCAL_PORT from the environment of process `pid`.
fn sip003_local_port(pid: u32) -> u16 {
    let env = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    env.split(|&b| b == 0)
        .find_map(|e| e.strip_prefix(b"SS_LOCAL_PORT="))
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or_else(|| panic!("no SS_LOCAL_PORT in the environment of {pid}"))
}

/// Stops a libev process with SIGTERM, on which it stops its plugin too (the [`Sweep`] gets
/// the plugin if it does not).
fn stop_libev(mut proc: Proc) {
    proc.signal(SIGTERM);
    let _ = proc.wait_exit(STOP_LIMIT);
}

/// The descendant of `proc` whose command name is `comm`, once it is there.
fn wait_descendant(proc: &mut Proc, comm: &str) -> ProcInfo {
    let mut found = None;
    let appeared = wait_until(START_WAIT_LIMIT, || {
        found = descendants(proc.pid())
            .into_iter()
            .find(|p| p.comm == comm && !p.is_dead());
        found.is_some()
    });
    if !appeared {
        proc.assert_running();
        panic!(
            "{}: no process `{comm}` among its descendants {:?}",
            proc.name(),
            descendants(proc.pid())
        );
    }
    found.unwrap()
}

/// What ss-smol started: its descendants and their process groups, recorded while they run.
struct Family {
    members: Vec<ProcInfo>,
    groups: Vec<u32>,
}

impl Family {
    fn of(proc: &Proc) -> Family {
        let members = descendants(proc.pid());
        let mut groups: Vec<u32> = members.iter().map(|p| p.pgid).collect();
        groups.sort_unstable();
        groups.dedup();
        // The plugins run in groups of their own, never in ours (the test binary's).
        assert!(
            proc_info(proc.pid()).is_some_and(|me| !groups.contains(&me.pgid)),
            "{}: a child shares its process group: {members:?}",
            proc.name()
        );
        Family { members, groups }
    }

    /// Members still alive and live processes in the recorded groups.
    fn left(&self) -> Vec<ProcInfo> {
        let mut left: Vec<ProcInfo> = self
            .members
            .iter()
            .filter(|p| still_alive(p))
            .cloned()
            .collect();
        for p in live_in_groups(&self.groups) {
            if !left.iter().any(|l| l.pid == p.pid) {
                left.push(p);
            }
        }
        left
    }

    /// Waits until nothing of the family is left, [`LIFECYCLE`] from `since` (the event that
    /// should end it) at most.
    fn assert_gone(&self, since: Instant, what: &str) {
        let limit = (since + LIFECYCLE).saturating_duration_since(Instant::now());
        if !wait_until(limit, || self.left().is_empty()) {
            panic!(
                "{what}: still running after {LIFECYCLE:?}: {:?} (recorded: {:?}, groups {:?})",
                self.left(),
                self.members,
                self.groups
            );
        }
    }
}

/// The exit status, or a panic with stderr if `proc` has not exited within `limit`.
fn exited_within(proc: &mut Proc, limit: Duration, what: &str) -> ExitStatus {
    proc.wait_exit(limit).unwrap_or_else(|| {
        panic!(
            "{what}: {} still running after {limit:?}; stderr:\n{}",
            proc.name(),
            proc.stderr()
        )
    })
}

/// ss-smol's own ERROR lines (`YYYY-MM-DD HH:MM:SS ERROR: …`), not a plugin's logged ones.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.get(20..).is_some_and(|rest| rest.starts_with("ERROR: ")))
        .collect()
}

/// A hash-checked transfer of `len` bytes each way through the SOCKS5 proxy to the echo server.
fn socks_echo(proxy: SocketAddr, echo: &EchoServer, seed: u64, len: usize, what: &str) {
    let s = socks5_connect(proxy, &echo.v4().into())
        .unwrap_or_else(|e| panic!("{what}: SOCKS5 CONNECT: {e}"));
    assert_echo(s, seed, len, what);
}

// ---------------------------------------------------------------------------------------------
// A wiretap: a TCP forwarder that keeps the first bytes the client sent

/// Forwards 127.0.0.1:port to `to`, keeping the first bytes of the first connection's client
/// side: they show what the client's plugin put on the wire.
struct Wiretap {
    port: u16,
    first: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const TAPPED: usize = 64;

impl Wiretap {
    fn start(to: SocketAddr) -> Wiretap {
        let listener = TcpListener::bind(v4(0)).expect("bind wiretap");
        let port = listener.local_addr().unwrap().port();
        let first = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (first2, stop2) = (first.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut n = 0;
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(down) = conn else { continue };
                let Ok(up) = connect(to) else { continue };
                let _ = set_timeouts(&down);
                let tap = (n == 0).then(|| first2.clone());
                n += 1;
                let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                thread::spawn(move || pump(down, up, tap));
                thread::spawn(move || pump(u2, d2, None));
            }
        });
        Wiretap {
            port,
            first,
            stop,
            thread: Some(thread),
        }
    }

    fn first_bytes(&self) -> Vec<u8> {
        self.first.lock().unwrap().clone()
    }
}

/// Copies `from` to `to` until EOF (then half-closes `to`) or an error (then closes both).
fn pump(mut from: TcpStream, mut to: TcpStream, tap: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if let Some(tap) = &tap {
                    let mut kept = tap.lock().unwrap();
                    let room = TAPPED.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&buf[..room]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for Wiretap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&v4(self.port), Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Transfers through each plugin, ss-smol and libev on either side

/// (a) ss-smol on both ends (through a wiretap that checks the wire format), (b) ss-smol local
/// → libev ss-server, (c) libev ss-local → ss-smol server; a hash-checked transfer each way
/// through each.
fn pairings(p: Plugin, tools: &[&str]) {
    require_tools(tools);
    require_tools(&["ss-server", "ss-local"]);
    let sweep = Sweep::new(p.name);
    let _watchdog = Watchdog::new(&format!("pairings {}", p.name), Duration::from_secs(240));
    let echo = EchoServer::start();
    let seed = p.name.len() as u64 * 7001;

    // (a) ss-smol → ss-smol. A plain Shadowsocks stream from the client would be refused by
    // the server's plugin, but the wiretap also shows the client's plugin was in between.
    {
        let (mut server, server_port) = smol_server(&p, &sweep, &[]);
        let tap = Wiretap::start(v4(server_port));
        let mut local = smol_client("local", tap.port, p.client, p.client_opts, &sweep, &[]);
        socks_echo(
            local.addr(),
            &echo,
            seed,
            BULK,
            &format!("{}: ss-smol ↔ ss-smol", p.name),
        );
        let first = tap.first_bytes();
        assert!(
            (p.looks_right)(&first),
            "{}: the client side sent {first:02x?} ({:?}), not {}",
            p.name,
            String::from_utf8_lossy(&first),
            p.wire
        );
        local.proc.assert_running();
        server.assert_running();
        local.proc.assert_no_panic();
        server.assert_no_panic();
    }

    // (b) ss-smol local → libev ss-server.
    {
        let (server, server_port) = libev_server(&p, &sweep);
        let mut local = smol_client("local", server_port, p.client, p.client_opts, &sweep, &[]);
        socks_echo(
            local.addr(),
            &echo,
            seed + 1,
            BULK,
            &format!("{}: ss-smol → libev", p.name),
        );
        local.proc.assert_running();
        local.proc.assert_no_panic();
        stop_libev(server);
    }

    // (c) libev ss-local → ss-smol server.
    {
        let (mut server, server_port) = smol_server(&p, &sweep, &[]);
        let local = libev_local(&p, server_port, &sweep);
        socks_echo(
            local.addr(),
            &echo,
            seed + 2,
            BULK,
            &format!("{}: libev → ss-smol", p.name),
        );
        server.assert_running();
        server.assert_no_panic();
        stop_libev(local.proc);
    }
}

#[test]
#[ignore = "needs simple-obfs and shadowsocks-libev; bash tests/run-all.sh runs it"]
fn obfs_http_between_ss_smol_and_libev() {
    pairings(OBFS_HTTP, &OBFS_TOOLS);
}

#[test]
#[ignore = "needs simple-obfs and shadowsocks-libev; bash tests/run-all.sh runs it"]
fn obfs_tls_between_ss_smol_and_libev() {
    pairings(OBFS_TLS, &OBFS_TOOLS);
}

#[test]
#[ignore = "needs shadowsocks-v2ray-plugin and shadowsocks-libev; bash tests/run-all.sh runs it"]
fn v2ray_websocket_between_ss_smol_and_libev() {
    pairings(V2RAY_WS, &V2RAY_TOOLS);
}

// ---------------------------------------------------------------------------------------------
// 2. UDP beside a TCP-only plugin

/// ss-tunnel -u with obfs-local (which carries TCP only) to a TCP and UDP echo: TCP through the
/// plugin, UDP straight to the server's port; against ss-smol server and libev ss-server, both
/// with obfs-server. obfs-local has no UDP at all, so a datagram sent to the plugin's port
/// would get no answer.
#[test]
#[ignore = "needs simple-obfs and shadowsocks-libev; bash tests/run-all.sh runs it"]
fn tunnel_udp_goes_around_a_tcp_only_plugin() {
    require_tools(&OBFS_TOOLS);
    require_tool("ss-server");
    let sweep = Sweep::new("tunnel-udp");
    let _watchdog = Watchdog::new("tunnel udp", Duration::from_secs(120));
    let echo = EchoServer::start();
    let target = echo.v4().to_string();
    let check = |server_port: u16, what: &str| {
        let mut tunnel = smol_client(
            "tunnel",
            server_port,
            OBFS_HTTP.client,
            OBFS_HTTP.client_opts,
            &sweep,
            &["-u", "-L", &target],
        );
        let s = connect(tunnel.addr()).expect("connect to the tunnel");
        assert_echo(s, 77, 1024 * 1024, &format!("{what}: TCP"));
        for (i, size) in [1usize, 1400, 8000].into_iter().enumerate() {
            let payload = data(100 + i as u64, size);
            udp_echo_direct(tunnel.addr(), &payload, 5)
                .unwrap_or_else(|e| panic!("{what}: UDP, {size} bytes: {e}"));
        }
        tunnel.proc.assert_running();
        tunnel.proc.assert_no_panic();
    };

    let (mut server, port) = smol_server(&OBFS_HTTP, &sweep, &[]);
    check(port, "ss-smol tunnel → ss-smol server");
    server.assert_running();
    drop(server);

    let (server, port) = libev_server(&OBFS_HTTP, &sweep);
    check(port, "ss-smol tunnel → libev ss-server");
    stop_libev(server);
}

// ---------------------------------------------------------------------------------------------
// 3. The plugin ends: ss-smol ends, saying how

/// `proc`'s plugin `comm` is killed with SIGKILL: ss-smol exits non-zero within a second and
/// one line names the plugin and the signal (or `expect`).
fn plugin_death_ends(mut proc: Proc, comm: &str, expect: &[&str], what: &str) {
    let plugin = wait_descendant(&mut proc, comm);
    let family = Family::of(&proc);
    signal_pid(plugin.pid, SIGKILL);
    let killed = Instant::now();
    let status = exited_within(&mut proc, LIFECYCLE, what);
    let stderr = proc.stderr();
    assert!(
        !status.success(),
        "{what}: exited {status}; stderr:\n{stderr}"
    );
    let named: Vec<&str> = stderr
        .lines()
        .filter(|l| expect.iter().all(|e| l.contains(e)))
        .collect();
    assert_eq!(
        named.len(),
        1,
        "{what}: expected one line with {expect:?}; stderr:\n{stderr}"
    );
    proc.assert_no_panic();
    family.assert_gone(killed, what);
}

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn killed_plugin_ends_ss_smol_with_the_signal() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("plugin-killed");
    let _watchdog = Watchdog::new("plugin killed", Duration::from_secs(90));

    // Client side; no server is needed for obfs-local to listen.
    let port = free_port();
    let local = smol_client(
        "local",
        port,
        OBFS_HTTP.client,
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    plugin_death_ends(
        local.proc,
        "obfs-local",
        &["obfs-local", "SIGKILL"],
        "client side",
    );

    // Server side.
    let (server, _) = smol_server(&OBFS_HTTP, &sweep, &[]);
    plugin_death_ends(
        server,
        "obfs-server",
        &["obfs-server", "SIGKILL"],
        "server side",
    );

    // A wrapper whose plugin is killed and which then exits with a status of its own: that
    // status is what is reported.
    let dir = TempDir::new("plugin-exit-7");
    let script = write_script(
        &dir,
        "exits-7",
        "#!/bin/sh\nobfs-local \"$@\" &\nwait\nexit 7\n",
    );
    let local = smol_client(
        "local",
        port,
        script.to_str().unwrap(),
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    plugin_death_ends(
        local.proc,
        "obfs-local",
        &["exits-7", "status 7"],
        "wrapper exits 7",
    );
    sweep.assert_nothing_left("plugin killed");
}

// ---------------------------------------------------------------------------------------------
// 4. ss-smol is killed (SIGKILL): the plugin goes too

/// SIGKILL to ss-smol: every process it started, and everything in their process groups, is
/// gone within a second.
fn killed_ss_smol_takes_along(mut proc: Proc, comm: &str, what: &str) {
    wait_descendant(&mut proc, comm);
    let family = Family::of(&proc);
    proc.signal(SIGKILL);
    let killed = Instant::now();
    exited_within(&mut proc, LIFECYCLE, what);
    family.assert_gone(killed, what);
}

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn sigkill_of_ss_smol_client_ends_its_plugin() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("sigkill-client");
    let _watchdog = Watchdog::new("sigkill client", Duration::from_secs(60));
    let local = smol_client(
        "local",
        free_port(),
        OBFS_HTTP.client,
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    killed_ss_smol_takes_along(local.proc, "obfs-local", "client side");
    sweep.assert_nothing_left("client side");
}

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn sigkill_of_ss_smol_server_ends_its_plugin() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("sigkill-server");
    let _watchdog = Watchdog::new("sigkill server", Duration::from_secs(60));
    let (server, _) = smol_server(&OBFS_HTTP, &sweep, &[]);
    killed_ss_smol_takes_along(server, "obfs-server", "server side");
    sweep.assert_nothing_left("server side");
}

/// A wrapper that forks: the real plugin is a grandchild of ss-smol, in the same group.
const FORKING_WRAPPER: &str = "#!/bin/sh\nobfs-local \"$@\" &\nwait\n";

/// Checks that the plugin `comm` runs below the wrapper `wrapper` (its command name: the
/// script's file name) in the wrapper's process group: stopping only the process ss-smol
/// started would leave it running.
fn assert_below_wrapper(proc: &mut Proc, wrapper: &str, comm: &str) {
    let plugin = wait_descendant(proc, comm);
    let script = wait_descendant(proc, wrapper);
    assert_eq!(
        (plugin.ppid, plugin.pgid),
        (script.pid, script.pgid),
        "{comm} ({plugin:?}) is not a child of {wrapper} ({script:?}) in its group"
    );
}

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn sigkill_of_ss_smol_ends_a_forking_wrapper_and_its_plugin() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("sigkill-wrapper");
    let _watchdog = Watchdog::new("sigkill wrapper", Duration::from_secs(60));
    let dir = TempDir::new("sigkill-wrapper");
    let script = write_script(&dir, "forking-wrapper", FORKING_WRAPPER);
    let mut local = smol_client(
        "local",
        free_port(),
        script.to_str().unwrap(),
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    assert_below_wrapper(&mut local.proc, "forking-wrapper", "obfs-local");
    killed_ss_smol_takes_along(local.proc, "obfs-local", "forking wrapper");
    sweep.assert_nothing_left("forking wrapper");
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM / SIGINT: exit 0, nothing left

/// `sig` to ss-smol: it exits 0 and nothing it started is left.
fn stops_cleanly_on(mut proc: Proc, comm: &str, sig: i32, what: &str) {
    wait_descendant(&mut proc, comm);
    let family = Family::of(&proc);
    proc.signal(sig);
    let status = exited_within(&mut proc, STOP_LIMIT, what);
    assert!(
        status.success(),
        "{what}: exited {status}; stderr:\n{}",
        proc.stderr()
    );
    assert_eq!(error_lines(&proc.stderr()), Vec::<&str>::new(), "{what}");
    proc.assert_no_panic();
    family.assert_gone(Instant::now(), what);
}

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn sigterm_and_sigint_stop_the_plugin_and_exit_zero() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("sigterm");
    let _watchdog = Watchdog::new("sigterm", Duration::from_secs(90));
    let (server, port) = smol_server(&OBFS_HTTP, &sweep, &[]);
    let local = smol_client(
        "local",
        port,
        OBFS_HTTP.client,
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    stops_cleanly_on(local.proc, "obfs-local", SIGTERM, "client, SIGTERM");
    stops_cleanly_on(server, "obfs-server", SIGINT, "server, SIGINT");

    let (server, port) = smol_server(&OBFS_HTTP, &sweep, &[]);
    let local = smol_client(
        "local",
        port,
        OBFS_HTTP.client,
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    stops_cleanly_on(local.proc, "obfs-local", SIGINT, "client, SIGINT");
    stops_cleanly_on(server, "obfs-server", SIGTERM, "server, SIGTERM");
    sweep.assert_nothing_left("sigterm");
}

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn sigterm_stops_a_forking_wrapper_and_its_plugin() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("sigterm-wrapper");
    let _watchdog = Watchdog::new("sigterm wrapper", Duration::from_secs(60));
    let dir = TempDir::new("sigterm-wrapper");
    // FORKING_WRAPPER, noting that SIGTERM (not only a SIGKILL after the grace) reached it.
    let got_term = dir.join("got-term");
    let script = write_script(
        &dir,
        "forking-wrapper",
        &format!(
            "#!/bin/sh\ntrap 'echo TERM > \"{}\"; exit 0' TERM\nobfs-local \"$@\" &\nwait\n",
            got_term.display()
        ),
    );
    let echo = EchoServer::start();
    let (mut server, port) = smol_server(&OBFS_HTTP, &sweep, &[]);
    let mut local = smol_client(
        "local",
        port,
        script.to_str().unwrap(),
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    // The wrapper's plugin got the SIP003 environment and works.
    socks_echo(local.addr(), &echo, 5, 256 * 1024, "through the wrapper");
    assert_below_wrapper(&mut local.proc, "forking-wrapper", "obfs-local");
    stops_cleanly_on(local.proc, "obfs-local", SIGTERM, "forking wrapper");
    assert!(got_term.exists(), "the wrapper never got SIGTERM");

    // Without the trap the shell dies of the signal (the plugin does not exit 0 at all): an
    // orderly stop all the same.
    let script = write_script(&dir, "plain-wrapper", FORKING_WRAPPER);
    let local = smol_client(
        "local",
        port,
        script.to_str().unwrap(),
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    stops_cleanly_on(
        local.proc,
        "obfs-local",
        SIGTERM,
        "wrapper dying of SIGTERM",
    );
    server.assert_running();
    drop(server);
    sweep.assert_nothing_left("sigterm wrapper");
}

/// v2ray-plugin, a Go program with signal handlers of its own, stops as cleanly.
#[test]
#[ignore = "needs shadowsocks-v2ray-plugin; bash tests/run-all.sh runs it"]
fn sigterm_stops_v2ray_plugin() {
    require_tools(&V2RAY_TOOLS);
    let sweep = Sweep::new("sigterm-go");
    let _watchdog = Watchdog::new("sigterm go plugin", Duration::from_secs(60));
    let local = smol_client(
        "local",
        free_port(),
        V2RAY_WS.client,
        V2RAY_WS.client_opts,
        &sweep,
        &[],
    );
    stops_cleanly_on(
        local.proc,
        "ss-v2ray-plugin",
        SIGTERM,
        "v2ray-plugin, SIGTERM",
    );
    sweep.assert_nothing_left("sigterm go plugin");
}

/// A plugin that ignores SIGTERM is killed after the grace: ss-smol still exits 0 and nothing
/// is left.
#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn sigterm_kills_a_plugin_that_ignores_it() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("ignores-term");
    let _watchdog = Watchdog::new("plugin ignores SIGTERM", Duration::from_secs(60));
    let dir = TempDir::new("ignores-term");
    // obfs-local sets its own handlers; the shell and its sleeps ignore SIGTERM and SIGINT.
    let script = write_script(
        &dir,
        "stubborn",
        "#!/bin/sh\ntrap '' TERM INT\nobfs-local \"$@\" &\nwhile :; do sleep 0.1; done\n",
    );
    let local = smol_client(
        "local",
        free_port(),
        script.to_str().unwrap(),
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    stops_cleanly_on(local.proc, "obfs-local", SIGTERM, "plugin ignoring SIGTERM");
    sweep.assert_nothing_left("plugin ignoring SIGTERM");
}

/// Two servers configured: a plugin for each, each in a group of its own, and every way of
/// ending (the death of one plugin, SIGKILL of ss-smol, SIGTERM) ends both.
#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn every_server_gets_its_own_plugin_and_all_end_together() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("two-servers");
    let _watchdog = Watchdog::new("two servers", Duration::from_secs(90));
    let port = free_port();
    let start = || {
        let local = smol_client(
            "local",
            port,
            OBFS_HTTP.client,
            OBFS_HTTP.client_opts,
            &sweep,
            &["-s", "::1"],
        );
        let mut plugins = Vec::new();
        let two = wait_until(START_WAIT_LIMIT, || {
            plugins = descendants(local.proc.pid())
                .into_iter()
                .filter(|p| p.comm == "obfs-local" && !p.is_dead())
                .collect();
            plugins.len() == 2
        });
        assert!(two, "not two obfs-local: {plugins:?}");
        assert_ne!(plugins[0].pgid, plugins[1].pgid, "one group for both");
        let family = Family::of(&local.proc);
        (local.proc, plugins, family)
    };

    let (mut proc, plugins, family) = start();
    signal_pid(plugins[0].pid, SIGKILL);
    let killed = Instant::now();
    let status = exited_within(&mut proc, LIFECYCLE, "one plugin killed");
    assert!(!status.success(), "one plugin killed: exited {status}");
    family.assert_gone(killed, "one plugin killed");

    let (mut proc, _, family) = start();
    proc.signal(SIGKILL);
    let killed = Instant::now();
    exited_within(&mut proc, LIFECYCLE, "ss-smol killed");
    family.assert_gone(killed, "ss-smol killed");

    let (mut proc, _, family) = start();
    proc.signal(SIGTERM);
    let status = exited_within(&mut proc, STOP_LIMIT, "SIGTERM");
    assert!(status.success(), "SIGTERM: exited {status}");
    family.assert_gone(Instant::now(), "SIGTERM");
    sweep.assert_nothing_left("two servers");
}

// ---------------------------------------------------------------------------------------------
// 6. Many starts and stops

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn twenty_start_stop_cycles_leave_nothing_behind() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("cycles");
    let _watchdog = Watchdog::new("cycles", Duration::from_secs(240));
    let server_port = free_port();
    let mut families = Vec::new();
    for i in 0..20 {
        let mut local = smol_client(
            "local",
            server_port,
            OBFS_HTTP.client,
            OBFS_HTTP.client_opts,
            &sweep,
            &[],
        );
        wait_descendant(&mut local.proc, "obfs-local");
        families.push(Family::of(&local.proc));
        local.proc.signal(SIGTERM);
        let status = exited_within(&mut local.proc, STOP_LIMIT, &format!("cycle {i}"));
        assert!(
            status.success(),
            "cycle {i}: exited {status}; stderr:\n{}",
            local.proc.stderr()
        );
    }
    for (i, f) in families.iter().enumerate() {
        f.assert_gone(Instant::now(), &format!("cycle {i}"));
    }
    let obfs: Vec<ProcInfo> = all_processes()
        .into_iter()
        .filter(|p| p.comm == "obfs-local" && !p.is_dead())
        .filter(|p| families.iter().any(|f| f.groups.contains(&p.pgid)))
        .collect();
    assert!(obfs.is_empty(), "obfs-local left: {obfs:?}");
    sweep.assert_nothing_left("cycles");
}

// ---------------------------------------------------------------------------------------------
// 7. Broken plugins fail start-up with one line

/// ss-smol MODE with `--plugin plugin` (and whatever else the mode needs) against a server
/// port nothing listens on.
fn bad_plugin_command(mode: &str, plugin: &str, sweep: &Sweep) -> Command {
    let mut cmd = smol(mode, sweep);
    let port = free_port().to_string();
    let listen = free_port().to_string();
    match mode {
        "server" => cmd.args(["-s", "127.0.0.1", "-p", &port]),
        _ => cmd.args([
            "-s",
            "127.0.0.1",
            "-p",
            &port,
            "-b",
            "127.0.0.1",
            "-l",
            &listen,
        ]),
    };
    if mode == "tunnel" {
        cmd.args(["-L", "127.0.0.1:9"]);
    }
    cmd.args(["-k", PASSWORD, "-m", METHOD, "--plugin", plugin])
        .args(["--plugin-opts", "obfs=http"]);
    cmd
}

/// Runs it: a non-zero exit within `limit`, one ERROR line, holding every one of `needles`.
fn fails_with_one_line(cmd: Command, limit: Duration, needles: &[&str], what: &str) -> String {
    let mut proc = Proc::spawn(what, cmd);
    let status = exited_within(&mut proc, limit, what);
    let stderr = proc.stderr();
    assert!(
        !status.success(),
        "{what}: exited {status}; stderr:\n{stderr}"
    );
    let errors = error_lines(&stderr);
    assert_eq!(
        errors.len(),
        1,
        "{what}: one ERROR line expected:\n{stderr}"
    );
    for n in needles {
        assert!(
            errors[0].contains(n),
            "{what}: {n:?} not in {:?}",
            errors[0]
        );
    }
    proc.assert_no_panic();
    stderr
}

#[test]
fn missing_plugin_fails_at_once_in_every_mode() {
    let sweep = Sweep::new("missing");
    let _watchdog = Watchdog::new("missing plugin", Duration::from_secs(60));
    for mode in ["local", "tunnel", "redir", "server"] {
        for plugin in ["/nonexistent/x", "no-such-plugin-xyz"] {
            let what = format!("{mode} --plugin {plugin}");
            fails_with_one_line(
                bad_plugin_command(mode, plugin, &sweep),
                LIFECYCLE,
                &[plugin],
                &what,
            );
        }
    }
    sweep.assert_nothing_left("missing plugin");
}

#[test]
fn non_executable_plugin_fails_at_once() {
    let sweep = Sweep::new("non-exec");
    let _watchdog = Watchdog::new("non-executable plugin", Duration::from_secs(30));
    let dir = TempDir::new("non-exec");
    let path = dir.join("not-executable");
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    let plugin = path.to_str().unwrap();
    fails_with_one_line(
        bad_plugin_command("local", plugin, &sweep),
        LIFECYCLE,
        &[plugin],
        "non-executable plugin",
    );
    sweep.assert_nothing_left("non-executable plugin");
}

#[test]
fn plugin_exiting_at_once_fails_start_up() {
    let sweep = Sweep::new("exit-3");
    let _watchdog = Watchdog::new("plugin exits at once", Duration::from_secs(30));
    let dir = TempDir::new("exit-3");
    let script = write_script(&dir, "exits-at-once", "#!/bin/sh\nexit 3\n");
    for mode in ["local", "server"] {
        fails_with_one_line(
            bad_plugin_command(mode, script.to_str().unwrap(), &sweep),
            LIFECYCLE,
            &["exits-at-once", "status 3"],
            &format!("{mode}: plugin exits 3"),
        );
    }
    sweep.assert_nothing_left("plugin exits at once");
}

#[test]
fn plugin_that_never_listens_fails_after_the_start_wait() {
    let sweep = Sweep::new("never-listens");
    let _watchdog = Watchdog::new("plugin never listens", Duration::from_secs(60));
    let dir = TempDir::new("never-listens");
    // The pid survives the exec, so it is the sleep's.
    let pid_file = dir.join("pid");
    let script = write_script(
        &dir,
        "never-listens",
        &format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 60\n",
            pid_file.display()
        ),
    );
    let mut proc = Proc::spawn(
        "never-listens",
        bad_plugin_command("local", script.to_str().unwrap(), &sweep),
    );
    let sleep = wait_descendant(&mut proc, "sleep");
    let status = exited_within(&mut proc, START_WAIT_LIMIT, "plugin never listens");
    let stderr = proc.stderr();
    assert!(!status.success(), "exited {status}; stderr:\n{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one ERROR line expected:\n{stderr}");
    assert!(errors[0].contains("never-listens"), "{:?}", errors[0]);
    let written: u32 = std::fs::read_to_string(&pid_file)
        .expect("the plugin ran and wrote its pid")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(written, sleep.pid, "the sleep found is the plugin's");
    assert!(
        wait_until(LIFECYCLE, || !still_alive(&sleep)),
        "the plugin's sleep is still running: {sleep:?}"
    );
    sweep.assert_nothing_left("plugin never listens");
}

/// SIGTERM or SIGINT while ss-smol still waits for its plugin's port is a stop like any other:
/// exit 0 (not death by the signal), its pid file (`-f`) removed, nothing left.
#[test]
fn stop_signal_during_the_plugin_start_up_exits_zero() {
    let sweep = Sweep::new("stop-in-start-up");
    let _watchdog = Watchdog::new("stop during start-up", Duration::from_secs(60));
    let dir = TempDir::new("stop-in-start-up");
    let script = write_script(&dir, "slow-starter", "#!/bin/sh\nexec sleep 60\n");
    let pid_file = dir.join("ss-smol.pid");
    for (sig, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
        let mut cmd = bad_plugin_command("local", script.to_str().unwrap(), &sweep);
        cmd.arg("-f").arg(&pid_file);
        let mut proc = Proc::spawn("stop-in-start-up", cmd);
        // The plugin runs and has not opened its port: ss-smol is in its start-up wait.
        wait_descendant(&mut proc, "sleep");
        assert!(pid_file.exists(), "no pid file written");
        let family = Family::of(&proc);
        proc.signal(sig);
        let status = exited_within(&mut proc, STOP_LIMIT, name);
        family.assert_gone(Instant::now(), name);
        let stale = pid_file.exists();
        let _ = std::fs::remove_file(&pid_file);
        assert!(
            status.success() && !stale,
            "{name} during the start-up wait: exited {status}, pid file {}; stderr:\n{}",
            if stale { "left behind" } else { "removed" },
            proc.stderr()
        );
    }
    sweep.assert_nothing_left("stop during start-up");
}

// ---------------------------------------------------------------------------------------------
// 8. The plugin's output in ss-smol's log

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn plugin_output_is_logged_under_its_name() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("output");
    let _watchdog = Watchdog::new("plugin output", Duration::from_secs(60));
    let dir = TempDir::new("output");
    let script = write_script(
        &dir,
        "chatty-plugin",
        "#!/bin/sh\necho 'to stderr: 4f1c' >&2\necho 'to stdout: 9b2e'\nexec obfs-local \"$@\"\n",
    );
    let mut local = smol_client(
        "local",
        free_port(),
        script.to_str().unwrap(),
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    for line in [
        "chatty-plugin: to stderr: 4f1c",
        "chatty-plugin: to stdout: 9b2e",
    ] {
        assert!(
            local.proc.wait_for_stderr(line, Duration::from_secs(5)),
            "{line:?} not logged; stderr:\n{}",
            local.proc.stderr()
        );
    }
    // obfs-local's own lines come after the exec, under the script's name too.
    let own = |err: &str| {
        err.lines()
            .any(|l| l.contains("chatty-plugin: ") && l.contains("[simple-obfs]"))
    };
    assert!(
        wait_until(Duration::from_secs(5), || own(&local.proc.stderr())),
        "no line of obfs-local's own under the script's name; stderr:\n{}",
        local.proc.stderr()
    );
    assert_log_format(&local.proc.stderr());
    local.proc.assert_running();
}

/// A plugin that writes without end and without a newline: ss-smol's memory and log stay
/// bounded and it keeps serving.
#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn endless_plugin_output_without_newline_stays_bounded() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("endless");
    let _watchdog = Watchdog::new("endless output", Duration::from_secs(90));
    let dir = TempDir::new("endless");
    let script = write_script(
        &dir,
        "endless",
        "#!/bin/sh\nyes | tr -d '\\n' >&2 &\nexec obfs-local \"$@\"\n",
    );
    let echo = EchoServer::start();
    let (mut server, port) = smol_server(&OBFS_HTTP, &sweep, &[]);
    let mut local = smol_client(
        "local",
        port,
        script.to_str().unwrap(),
        OBFS_HTTP.client_opts,
        &sweep,
        &[],
    );
    let tr = wait_descendant(&mut local.proc, "tr");
    // The stream reaches ss-smol: the first (cut) line of it is logged.
    assert!(
        local
            .proc
            .wait_for_stderr("endless: yyyyyyyyyy", Duration::from_secs(5)),
        "the endless line was never logged; stderr:\n{}",
        local.proc.stderr()
    );
    // A few seconds of the stream, sampled all along. The bound is on growth, since the
    // resident size of a debug build at rest depends on the machine; 4 MiB is an absolute cap
    // that a release or debug build at rest stays well under.
    let pid = local.proc.pid();
    let baseline = vm_rss_kib(pid).expect("VmRSS of ss-smol");
    let written_before = written_bytes(tr.pid);
    let mut peak = baseline;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        local.proc.assert_running();
        peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
        thread::sleep(Duration::from_millis(50));
    }
    // ss-smol kept draining the pipe: had it stopped reading, the plugin's writes would block
    // (and a plugin blocked on its log stops serving).
    let streamed = written_bytes(tr.pid) - written_before;
    eprintln!("endless output: VmRSS {baseline} KiB at first, {peak} KiB at most; {streamed} bytes streamed");
    assert!(
        streamed > 1024 * 1024,
        "only {streamed} bytes of output were read in 3 s"
    );
    assert!(
        peak < baseline + 1024 && peak < 4 * 1024,
        "ss-smol's VmRSS grew from {baseline} KiB to {peak} KiB"
    );
    socks_echo(
        local.addr(),
        &echo,
        9,
        1024 * 1024,
        "beside the endless output",
    );
    let logged = local.proc.stderr_mark();
    assert!(logged < 1024 * 1024, "ss-smol logged {logged} bytes");
    stops_cleanly_on(local.proc, "tr", SIGTERM, "endless output");
    server.assert_running();
    drop(server);
    sweep.assert_nothing_left("endless output");
}

/// Bytes process `pid` has written so far (`wchar` of /proc/PID/io).
fn written_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/io: {e}"));
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no wchar in /proc/{pid}/io"))
}

// ---------------------------------------------------------------------------------------------
// 9. The SIP003 environment and plugin_args

/// A plugin that records its arguments and then its environment into `dir` (the environment
/// last, renamed into place, so a complete `env` file means both are written), then runs
/// `real` without the arguments, which are ours, not its.
fn recording_plugin(dir: &TempDir, real: &str) -> std::path::PathBuf {
    write_script(
        dir,
        "recorder",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nenv > '{1}.tmp'\nmv '{1}.tmp' '{1}'\nexec {real}\n",
            dir.join("argv").display(),
            dir.join("env").display()
        ),
    )
}

/// The recorded `SS_*` variables, once the file is complete.
fn recorded_env(dir: &TempDir) -> Vec<(String, String)> {
    let path = dir.join("env");
    assert!(
        wait_until(Duration::from_secs(5), || path.exists()),
        "the plugin never recorded its environment"
    );
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("SS_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn var<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    let found: Vec<&str> = env
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(found.len(), 1, "{key} in {env:?}");
    found[0]
}

/// Options with an escaped `;` (part of the host name) that must reach the plugin as given.
const ESCAPED_OPTS: &str = r"obfs=http;obfs-host=a\;b.example.com";

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn client_plugin_gets_the_sip003_environment_and_plugin_args() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("env-client");
    let _watchdog = Watchdog::new("client environment", Duration::from_secs(60));
    let dir = TempDir::new("env-client");
    let script = recording_plugin(&dir, "obfs-local");
    let server_port = free_port();
    let listen = free_port();
    // JSON config: the server as an IPv6 address, plugin_args with a space and a ';'.
    let config = dir.join("config.json");
    let json = format!(
        r#"{{"server": "::1", "server_port": {server_port}, "local_address": "127.0.0.1",
            "local_port": {listen}, "password": "{PASSWORD}", "method": "{METHOD}",
            "plugin": "{}", "plugin_opts": "{}",
            "plugin_args": ["-v", "two words", "semi;colon"]}}"#,
        script.display(),
        ESCAPED_OPTS.replace('\\', "\\\\")
    );
    std::fs::write(&config, json).unwrap();
    let mut cmd = smol("local", &sweep);
    cmd.arg("-c").arg(&config);
    let mut local = Proc::spawn("ss-smol-local-env", cmd);
    local.wait_for_tcp(v4(listen), START_TIMEOUT);
    wait_listening(&mut local);

    let env = recorded_env(&dir);
    assert_eq!(var(&env, "SS_REMOTE_HOST"), "::1", "no brackets");
    assert_eq!(var(&env, "SS_REMOTE_PORT"), server_port.to_string());
    assert_eq!(var(&env, "SS_LOCAL_HOST"), "127.0.0.1");
    assert_eq!(var(&env, "SS_PLUGIN_OPTIONS"), ESCAPED_OPTS);
    // The local port is where the plugin (obfs-local, run by the script) listens.
    let plugin_port: u16 = var(&env, "SS_LOCAL_PORT").parse().expect("SS_LOCAL_PORT");
    assert_ne!(plugin_port, listen);
    assert!(
        wait_until(Duration::from_secs(5), || connect(v4(plugin_port)).is_ok()),
        "nothing listens on SS_LOCAL_PORT {plugin_port}"
    );
    let argv = std::fs::read_to_string(dir.join("argv")).unwrap();
    assert_eq!(
        argv, "-v\ntwo words\nsemi;colon\n",
        "the plugin's arguments"
    );
    local.assert_running();
}

#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn server_plugin_gets_the_sip003_environment() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("env-server");
    let _watchdog = Watchdog::new("server environment", Duration::from_secs(60));
    let dir = TempDir::new("env-server");
    let script = recording_plugin(&dir, "obfs-server");
    let port = free_port();
    let mut cmd = smol("server", &sweep);
    cmd.args(["-s", "::1", "-p", &port.to_string()])
        .args(["-k", PASSWORD, "-m", METHOD, "--allow-private-targets"])
        .args([
            "--plugin",
            script.to_str().unwrap(),
            "--plugin-opts",
            ESCAPED_OPTS,
        ]);
    let mut server = Proc::spawn("ss-smol-server-env", cmd);
    // The plugin listens on the public address.
    server.wait_for_tcp(v6(port), START_TIMEOUT);
    wait_listening(&mut server);

    let env = recorded_env(&dir);
    assert_eq!(var(&env, "SS_REMOTE_HOST"), "::1", "no brackets");
    assert_eq!(var(&env, "SS_REMOTE_PORT"), port.to_string());
    assert_eq!(var(&env, "SS_LOCAL_HOST"), "127.0.0.1");
    assert_eq!(var(&env, "SS_PLUGIN_OPTIONS"), ESCAPED_OPTS);
    // Behind the plugin, ss-smol itself listens on SS_LOCAL_HOST:SS_LOCAL_PORT.
    let inner: u16 = var(&env, "SS_LOCAL_PORT").parse().expect("SS_LOCAL_PORT");
    assert_ne!(inner, port);
    connect(v4(inner)).unwrap_or_else(|e| panic!("ss-smol not on SS_LOCAL_PORT {inner}: {e}"));
    let argv = std::fs::read_to_string(dir.join("argv")).unwrap();
    assert_eq!(argv, "\n", "no arguments without plugin_args");
    server.assert_running();
}

// ---------------------------------------------------------------------------------------------
// 10. plugin_mode: UDP through the plugin (SIP003u)
//
// No packaged plugin carries UDP, so the test plays that part of the plugin: the plugin program
// (a recording wrapper) runs obfs-local/obfs-server for TCP or only sleeps, and the test binds
// UDP on the plugin's address and relays it, counting datagrams, which shows where ss-smol sent
// them.

/// Relays datagrams arriving on `listen` to `to` and the replies back to their last sender.
struct UdpRelay {
    relayed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpRelay {
    fn start(listen: SocketAddr, to: SocketAddr) -> UdpRelay {
        let outer = std::net::UdpSocket::bind(listen)
            .unwrap_or_else(|e| panic!("bind UDP {listen} for the plugin's relay: {e}"));
        let inner = std::net::UdpSocket::bind(v4(0)).unwrap();
        inner.connect(to).unwrap();
        for s in [&outer, &inner] {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        }
        let relayed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (relayed2, stop2) = (relayed.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut peer = None;
            while !stop2.load(Ordering::SeqCst) {
                if let Ok((n, from)) = outer.recv_from(&mut buf) {
                    peer = Some(from);
                    relayed2.fetch_add(1, Ordering::SeqCst);
                    let _ = inner.send(&buf[..n]);
                }
                if let (Ok(n), Some(p)) = (inner.recv(&mut buf), peer) {
                    let _ = outer.send_to(&buf[..n], p);
                }
            }
        });
        UdpRelay {
            relayed,
            stop,
            thread: Some(thread),
        }
    }

    /// Datagrams relayed towards `to` so far.
    fn relayed(&self) -> usize {
        self.relayed.load(Ordering::SeqCst)
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// UDP datagrams of a few sizes through the tunnel at `fwd`, each echoed.
fn udp_echoes(fwd: SocketAddr, what: &str) {
    for (i, size) in [1usize, 1400, 8000].into_iter().enumerate() {
        let payload = data(300 + i as u64, size);
        udp_echo_direct(fwd, &payload, 5)
            .unwrap_or_else(|e| panic!("{what}: UDP, {size} bytes: {e}"));
    }
}

/// `plugin_mode` tcp_and_udp on both sides (the flag on the server, the JSON key on the
/// client): TCP through obfs, UDP to the plugin's address on the client and from the plugin on
/// the server, where ss-smol's own UDP moves behind the plugin.
#[test]
#[ignore = "needs simple-obfs; bash tests/run-all.sh runs it"]
fn plugin_mode_tcp_and_udp_sends_udp_through_the_plugin() {
    require_tools(&OBFS_TOOLS);
    let sweep = Sweep::new("tcp-and-udp");
    let _watchdog = Watchdog::new("tcp_and_udp", Duration::from_secs(90));
    let echo = EchoServer::start();

    let server_dir = TempDir::new("tcp-and-udp-server");
    let server_plugin = recording_plugin(&server_dir, "obfs-server");
    let (mut server, port) = spawn_listening("ss-smol-server-tcp-and-udp", |port| {
        let mut cmd = smol("server", &sweep);
        cmd.args(["-s", "127.0.0.1", "-p", &port.to_string()])
            .args(["-k", PASSWORD, "-m", METHOD, "-u", "-t", "60"])
            .arg("--allow-private-targets")
            .args(["--plugin", server_plugin.to_str().unwrap()])
            .args(["--plugin-opts", "obfs=http", "--plugin-mode", "tcp_and_udp"]);
        cmd
    });
    wait_listening(&mut server);
    let inner: u16 = var(&recorded_env(&server_dir), "SS_LOCAL_PORT")
        .parse()
        .unwrap();
    // The public UDP port is the plugin's, so free for the relay: ss-smol listens behind it.
    let server_relay = UdpRelay::start(v4(port), v4(inner));

    let client_dir = TempDir::new("tcp-and-udp-client");
    let client_plugin = recording_plugin(&client_dir, "obfs-local");
    let listen = free_port();
    let config = client_dir.join("config.json");
    let json = format!(
        r#"{{"server": "127.0.0.1", "server_port": {port}, "local_address": "127.0.0.1",
            "local_port": {listen}, "password": "{PASSWORD}", "method": "{METHOD}",
            "mode": "tcp_and_udp", "tunnel_address": "{}",
            "plugin": "{}", "plugin_opts": "obfs=http", "plugin_mode": "tcp_and_udp"}}"#,
        echo.v4(),
        client_plugin.display()
    );
    std::fs::write(&config, json).unwrap();
    let mut cmd = smol("tunnel", &sweep);
    cmd.arg("-c").arg(&config);
    let mut tunnel = Proc::spawn("ss-smol-tunnel-tcp-and-udp", cmd);
    tunnel.wait_for_tcp(v4(listen), START_TIMEOUT);
    wait_listening(&mut tunnel);
    let plugin_port: u16 = var(&recorded_env(&client_dir), "SS_LOCAL_PORT")
        .parse()
        .unwrap();
    let client_relay = UdpRelay::start(v4(plugin_port), v4(port));

    let s = connect(v4(listen)).expect("connect to the tunnel");
    assert_echo(s, 31, 1024 * 1024, "tcp_and_udp: TCP");
    udp_echoes(v4(listen), "tcp_and_udp");
    assert!(
        client_relay.relayed() >= 3 && server_relay.relayed() >= 3,
        "datagrams at the client's plugin address: {}, at the server's: {}",
        client_relay.relayed(),
        server_relay.relayed()
    );
    tunnel.assert_running();
    server.assert_running();
}

/// `--plugin-mode udp_only` on the client: the plugin (here only a sleep, with the test's relay
/// on its address) is waited for on UDP and gets the datagrams; TCP goes straight to the
/// server.
#[test]
#[ignore = "needs shadowsocks-libev; bash tests/run-all.sh runs it"]
fn plugin_mode_udp_only_leaves_tcp_direct() {
    require_tool("ss-server");
    let sweep = Sweep::new("udp-only");
    let _watchdog = Watchdog::new("udp_only", Duration::from_secs(90));
    let echo = EchoServer::start();
    let mut server = SsServer::start(METHOD, PASSWORD);

    let dir = TempDir::new("udp-only");
    let plugin = recording_plugin(&dir, "sleep 60");
    let listen = free_port();
    let mut cmd = smol("tunnel", &sweep);
    cmd.args(["-s", "127.0.0.1", "-p", &server.port.to_string()])
        .args(["-b", "127.0.0.1", "-l", &listen.to_string()])
        .args(["-k", PASSWORD, "-m", METHOD, "-u", "-t", "60"])
        .args(["-L", &echo.v4().to_string()])
        .args([
            "--plugin",
            plugin.to_str().unwrap(),
            "--plugin-mode",
            "udp_only",
        ]);
    let mut tunnel = Proc::spawn("ss-smol-tunnel-udp-only", cmd);
    // ss-smol waits for the plugin's UDP port: the relay opens it.
    let plugin_port: u16 = var(&recorded_env(&dir), "SS_LOCAL_PORT").parse().unwrap();
    let relay = UdpRelay::start(v4(plugin_port), v4(server.port));
    wait_listening(&mut tunnel);

    let s = connect(v4(listen)).expect("connect to the tunnel");
    assert_echo(s, 32, 1024 * 1024, "udp_only: TCP");
    udp_echoes(v4(listen), "udp_only");
    assert!(
        relay.relayed() >= 3,
        "{} datagrams at the plugin",
        relay.relayed()
    );
    tunnel.assert_running();
    server.proc.assert_running();
    // A plugin that only sleeps stops as well as any.
    stops_cleanly_on(tunnel, "sleep", SIGTERM, "udp_only");
    sweep.assert_nothing_left("udp_only");
}
