//! Shared helpers for the integration tests (std + sha1 only).
//!
//! Everything here talks to loopback only (127.0.0.1 and ::1), or to addresses inside a network
//! namespace the test creates ([`NetNs`]). Every socket operation has a
//! timeout, every child process is killed and reaped when its guard drops, and a test can arm a
//! [`Watchdog`] so that nothing hangs for ever.
//!
//! # The client under test
//!
//! The tests exercise `ss-smol local` / `ss-smol tunnel`. While the binary was being written the
//! harness was developed against shadowsocks-libev's `ss-local` / `ss-tunnel`, which take the
//! same flags. That switch is kept, for development of the harness only:
//!
//! ```text
//! SS_SMOL_CLIENT_UNDER_TEST=libev cargo test --test interop_libev
//! ```
//!
//! Unset (the default, and what `tests/run-all.sh` forces) means the real `ss-smol` binary.
//! Tests about ss-smol's own interface (`--version`, log keywords, …) fail under the switch.
//!
//! # Missing tools
//!
//! [`require_tool`] fails a test when a peer program is missing, naming its Debian package;
//! [`ssrust_tool`] does the same for shadowsocks-rust's programs (from crates.io);
//! `tests/run-all.sh` installs them all.

#![allow(dead_code)] // every test crate uses a different subset

use sha1::{Digest, Sha1};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Read/write timeout of every socket the tests open.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a started process may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

pub const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// The AEAD methods ss-smol supports, with their salt lengths.
pub const CIPHERS: [(&str, usize); 5] = [
    ("chacha20-ietf-poly1305", 32),
    ("aes-128-gcm", 16),
    ("aes-192-gcm", 24),
    ("aes-256-gcm", 32),
    ("xchacha20-ietf-poly1305", 32),
];

pub fn salt_len(method: &str) -> usize {
    CIPHERS
        .iter()
        .find(|(m, _)| *m == method)
        .unwrap_or_else(|| panic!("unknown method {method}"))
        .1
}

pub const PASSWORD: &str = "test-password-Ünïcødé";

// ---------------------------------------------------------------------------------------------
// Tools and the client under test

/// Is `name` an executable in PATH? A missing tool fails the test, naming the Debian package
/// that has it: a skip would let a run without the peer programs pass as if it had tested them.
/// (Tests that need tools are `#[ignore]`d, so a plain `cargo test` does not fail for want of
/// them; `tests/run-all.sh` installs them and runs the ignored tests too.)
///
/// Returns `true` so that callers written for the old skip (`if !require_tool(..) { return }`)
/// keep compiling; it never returns `false`.
pub fn require_tool(name: &str) -> bool {
    require_tools(&[name])
}

/// `require_tool` for several tools; all are checked so the message names every missing one.
pub fn require_tools(names: &[&str]) -> bool {
    let missing: Vec<String> = names
        .iter()
        .filter(|n| find_in_path(n).is_none())
        .map(|n| format!("`{n}` (Debian package {})", debian_package(n)))
        .collect();
    assert!(
        missing.is_empty(),
        "required tool not installed: {}; `bash tests/run-all.sh` installs it",
        missing.join(", ")
    );
    true
}

/// The Debian package that has the command `tool`.
fn debian_package(tool: &str) -> &str {
    match tool {
        "ss-server" | "ss-local" | "ss-tunnel" | "ss-redir" => "shadowsocks-libev",
        "dnsmasq" => "dnsmasq-base",
        "obfs-local" | "obfs-server" => "simple-obfs",
        "ss-v2ray-plugin" => "shadowsocks-v2ray-plugin",
        "nft" => "nftables",
        t if t.starts_with("iptables") || t.starts_with("ip6tables") => "iptables",
        t if t.starts_with("qemu-") && t.ends_with("-static") => "qemu-user-static",
        other => other,
    }
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// Directory with shadowsocks-rust's `sslocal` and `ssserver`, overriding the default search.
pub const SSRUST_DIR_ENV: &str = "SS_SMOL_SSRUST_DIR";
/// The shadowsocks-rust release that `tests/run-all.sh` installs (and benches/run.py pins).
pub const SSRUST_VERSION: &str = "1.25.0";

/// Path of shadowsocks-rust's program `name` (`sslocal`, `ssserver`): in `$SS_SMOL_SSRUST_DIR`
/// when that is set (and only there), else in `<repo>/target/bench-peers/bin` (where
/// `tests/run-all.sh` and benches/run.py install it), else in PATH. Missing fails the test, as
/// [`require_tool`] does: shadowsocks-rust is no Debian package, `tests/run-all.sh` installs it
/// from crates.io.
pub fn ssrust_tool(name: &str) -> PathBuf {
    let found = match std::env::var_os(SSRUST_DIR_ENV).filter(|d| !d.is_empty()) {
        Some(dir) => Some(Path::new(&dir).join(name)).filter(|p| is_executable(p)),
        None => Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/bench-peers/bin")
                .join(name),
        )
        .filter(|p| is_executable(p))
        .or_else(|| find_in_path(name)),
    };
    found.unwrap_or_else(|| {
        let place = match std::env::var(SSRUST_DIR_ENV) {
            Ok(d) if !d.is_empty() => format!("in {SSRUST_DIR_ENV}={d}"),
            _ => "in target/bench-peers/bin or PATH".to_owned(),
        };
        panic!(
            "required tool not installed: `{name}` (shadowsocks-rust {SSRUST_VERSION}) not found \
             {place}; `bash tests/run-all.sh` installs it (cargo install \
             shadowsocks-rust@{SSRUST_VERSION} --locked --root target/bench-peers)"
        )
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Environment variable of the development switch (see the module documentation).
pub const CLIENT_ENV: &str = "SS_SMOL_CLIENT_UNDER_TEST";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientImpl {
    /// The real thing: `ss-smol MODE`.
    SsSmol,
    /// Development only: shadowsocks-libev's `ss-MODE`.
    Libev,
}

pub fn client_under_test() -> ClientImpl {
    match std::env::var(CLIENT_ENV).as_deref() {
        Err(_) | Ok("") | Ok("ss-smol") => ClientImpl::SsSmol,
        Ok("libev") => ClientImpl::Libev,
        Ok(other) => panic!("{CLIENT_ENV}={other}: expected `ss-smol` or `libev`"),
    }
}

pub fn ss_smol_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ss-smol"))
}

/// A command running the client under test in `mode` ("local", "tunnel", …); append flags.
pub fn client_command(mode: &str) -> Command {
    match client_under_test() {
        ClientImpl::SsSmol => {
            let mut cmd = Command::new(ss_smol_bin());
            cmd.arg(mode);
            cmd
        }
        ClientImpl::Libev => {
            let mut cmd = Command::new(format!("ss-{mode}"));
            // libev truncates UDP datagrams larger than 2 × 1397 bytes unless told a bigger MTU.
            cmd.args(["--mtu", "9000"]);
            cmd
        }
    }
}

/// A per-test scratch directory under cargo's target tmp dir; removed on drop unless the
/// test is failing (then it is kept, and its path printed, for inspection).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag: String = tag
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(80) // a file name has at most 255 bytes; tags may be whole command lines
            .collect();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ss-smol-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn prctl(option: i32, ...) -> i32;
}

pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;
const PR_SET_PDEATHSIG: i32 = 1;

/// Pids of every live child, so that the watchdog can kill them before exiting.
static CHILDREN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn register_child(pid: u32, add: bool) {
    let mut guard = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if add {
        set.insert(pid);
    } else {
        set.remove(&pid);
    }
}

/// A child process that is killed (SIGKILL) and reaped on drop. Its stdout and stderr go to
/// files that can be read back at any time; when the test is failing they are printed.
///
/// The child also gets SIGKILL if the thread that spawned it ends (PR_SET_PDEATHSIG), so a
/// crashed test binary leaves nothing behind: spawn on the test's own thread.
pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    _dir: TempDir,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let dir = TempDir::new(name);
        let stderr_path = dir.join("stderr.log");
        let stdout_path = dir.join("stdout.log");
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout log"))
            .stderr(File::create(&stderr_path).expect("create stderr log"));
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL as std::ffi::c_ulong);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        register_child(child.id(), true);
        Proc {
            name: name.to_owned(),
            child,
            status: None,
            stderr_path,
            stdout_path,
            _dir: dir,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    /// A mark for [`Proc::stderr_since`]: the current length of the captured stderr.
    pub fn stderr_mark(&self) -> usize {
        fs::metadata(&self.stderr_path)
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// Everything logged since `mark`.
    pub fn stderr_since(&self, mark: usize) -> String {
        let all = fs::read(&self.stderr_path).unwrap_or_default();
        String::from_utf8_lossy(all.get(mark..).unwrap_or_default()).into_owned()
    }

    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                register_child(self.child.id(), false);
                self.status = Some(st);
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    pub fn assert_running(&mut self) {
        if let Some(st) = self.exit_status() {
            panic!(
                "{} exited unexpectedly ({st}); stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
    }

    pub fn signal(&mut self, sig: i32) {
        if self.is_running() {
            // SAFETY: plain syscall on our own, not yet reaped, child.
            unsafe {
                kill(self.child.id() as i32, sig);
            }
        }
    }

    /// Waits for the process to exit; `None` if it is still running at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exit_status() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `addr` accepts a TCP connection (then closes it). Panics with the process's
    /// stderr if it exits first or the deadline passes.
    pub fn wait_for_tcp(&mut self, addr: SocketAddr, timeout: Duration) {
        if let Err(e) = self.try_wait_for_tcp(addr, timeout) {
            panic!("{e}");
        }
    }

    fn try_wait_for_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exit_status() {
                return Err(format!(
                    "{} exited ({st}) before listening on {addr}; stderr:\n{}",
                    self.name,
                    self.stderr()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not accept on {addr} within {timeout:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls stderr until it contains `needle`; returns whether it did before the deadline.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn assert_no_panic(&self) {
        let err = self.stderr();
        assert!(
            !err.contains("panicked"),
            "{} panicked; stderr:\n{err}",
            self.name
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            register_child(self.child.id(), false);
        }
        if thread::panicking() {
            let err = self.stderr();
            let tail: Vec<&str> = err.lines().rev().take(40).collect();
            eprintln!("---- {} stderr (last {} lines) ----", self.name, tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// dnsmasq in the foreground on 127.0.0.1, serving `records` (dnsmasq options such as
/// `--host-record=…`) and NXDOMAIN for every other name under `.test`: no upstream, no hosts
/// file, nothing forwarded anywhere. Queries are logged to its stderr. `None` (a skip) when
/// dnsmasq is missing.
pub fn start_dnsmasq(records: &[&str]) -> Option<(Proc, u16)> {
    if !require_tool("dnsmasq") {
        return None;
    }
    Some(spawn_listening("dnsmasq", |port| {
        dnsmasq_command(port, records)
    }))
}

/// The dnsmasq of [`start_dnsmasq`] on a given port (a test that hands the port out first).
pub fn dnsmasq_command(port: u16, records: &[&str]) -> Command {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--pid-file=",
        "--log-facility=-",
        "--log-queries",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--local=/test/",
    ])
    .args(records)
    .arg(format!("--port={port}"));
    cmd
}

/// Starts a process that listens on a port chosen here, retrying with another port if the
/// chosen one was taken in the meantime (a race inherent in picking ports in advance).
pub fn spawn_listening(name: &str, make: impl Fn(u16) -> Command) -> (Proc, u16) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut proc = Proc::spawn(name, make(port));
        let addr = SocketAddr::new(LOCALHOST_V4, port);
        match proc.try_wait_for_tcp(addr, START_TIMEOUT) {
            Ok(()) => return (proc, port),
            Err(e) if e.contains("in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{last}");
}

/// What a finished short-lived command printed.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion, killing it (and failing) if it takes longer than `timeout`.
pub fn run_to_end(name: &str, cmd: Command, timeout: Duration) -> Finished {
    let mut proc = Proc::spawn(name, cmd);
    let status = proc.wait_exit(timeout).unwrap_or_else(|| {
        panic!(
            "{name} still running after {timeout:?}; stderr:\n{}",
            proc.stderr()
        )
    });
    Finished {
        status,
        stdout: proc.stdout(),
        stderr: proc.stderr(),
    }
}

/// Kills every child and exits the test binary if the test is still running after `limit`.
/// Dropping the guard disarms it.
pub struct Watchdog {
    _disarm: mpsc::Sender<()>,
}

impl Watchdog {
    pub fn new(what: &str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let what = what.to_owned();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("WATCHDOG: `{what}` still running after {limit:?}; killing children");
                let guard = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
                for pid in guard.iter().flatten() {
                    // SAFETY: plain syscall; we exit right after.
                    unsafe {
                        kill(*pid as i32, SIGKILL);
                    }
                }
                std::process::exit(101);
            }
        });
        Watchdog { _disarm: tx }
    }
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A port free for both TCP and UDP on 127.0.0.1, never handed out twice by this process.
pub fn free_port() -> u16 {
    static USED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..200 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

pub fn v4(port: u16) -> SocketAddr {
    SocketAddr::new(LOCALHOST_V4, port)
}

pub fn v6(port: u16) -> SocketAddr {
    SocketAddr::new(LOCALHOST_V6, port)
}

// ---------------------------------------------------------------------------------------------
// Echo servers

/// TCP echo on 127.0.0.1:port and [::1]:port plus UDP echo on 127.0.0.1:port (one number for
/// all, so that a tunnel's single `-L` target reaches both). Stops on drop.
pub struct EchoServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        for _ in 0..100 {
            let l4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind echo");
            let port = l4.local_addr().unwrap().port();
            let Ok(l6) = TcpListener::bind((Ipv6Addr::LOCALHOST, port)) else {
                continue;
            };
            let Ok(udp) = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)) else {
                continue;
            };
            let stop = Arc::new(AtomicBool::new(false));
            let accepted = Arc::new(AtomicUsize::new(0));
            let threads = vec![
                tcp_echo_thread(l4, stop.clone(), accepted.clone()),
                tcp_echo_thread(l6, stop.clone(), accepted.clone()),
                udp_echo_thread(udp, stop.clone()),
            ];
            return EchoServer {
                port,
                stop,
                accepted,
                threads,
            };
        }
        panic!("cannot find a port free on 127.0.0.1 and ::1 for TCP and UDP");
    }

    pub fn v4(&self) -> SocketAddr {
        v4(self.port)
    }

    pub fn v6(&self) -> SocketAddr {
        v6(self.port)
    }

    /// TCP connections accepted so far (both families).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accepts.
        let _ = TcpStream::connect_timeout(&self.v4(), Duration::from_secs(1));
        let _ = TcpStream::connect_timeout(&self.v6(), Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn tcp_echo_thread(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else { continue };
            accepted.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let _ = echo_connection(conn);
            });
        }
    })
}

fn echo_connection(mut conn: TcpStream) -> io::Result<()> {
    set_timeouts(&conn)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return conn.shutdown(Shutdown::Write);
        }
        conn.write_all(&buf[..n])?;
    }
}

fn udp_echo_thread(sock: UdpSocket, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::SeqCst) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Data

/// Deterministic pseudo-random bytes (xorshift64*), reproducible from a seed.
pub struct DataGen(u64);

impl DataGen {
    pub fn new(seed: u64) -> DataGen {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams and 0 works.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        DataGen((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    DataGen::new(seed).fill(&mut v);
    v
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    hex(&Sha1::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

// ---------------------------------------------------------------------------------------------
// TCP helpers

pub fn set_timeouts(s: &TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)
}

/// Connects with a timeout and sets the I/O timeouts.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    set_timeouts(&s)?;
    Ok(s)
}

/// Sends `len` generated bytes on `stream` while reading the echo back at the same time, until
/// `len` bytes came back; then half-closes and expects the connection to close (EOF or reset)
/// soon. Returns (sent SHA-1, received SHA-1, received length).
///
/// The half-close comes only after everything was echoed: shadowsocks-libev does not relay a
/// half-close (it tears the whole connection down on the client's FIN), so data still in flight
/// would be lost if the client shut down its side earlier.
pub fn echo_transfer(
    stream: TcpStream,
    seed: u64,
    len: usize,
) -> io::Result<(String, String, usize)> {
    let mut writer = stream.try_clone()?;
    let sender = thread::spawn(move || -> io::Result<String> {
        let mut gen = DataGen::new(seed);
        // Vary the write sizes so the relay sees partial chunks as well as full ones.
        let mut sizes = DataGen::new(seed ^ 0x5A5A);
        let mut buf = vec![0u8; 64 * 1024];
        let mut hasher = Sha1::new();
        let mut left = len;
        while left > 0 {
            let n = sizes.range(1, buf.len()).min(left);
            gen.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            writer.write_all(&buf[..n])?;
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
            Ok(0) => break Err(io::Error::new(io::ErrorKind::UnexpectedEof, "early EOF")),
            Ok(n) => {
                hasher.update(&buf[..n]);
                got += n;
            }
            Err(e) => break Err(e),
        }
    };
    if read_result.is_err() {
        // Unblock the sender if it is stuck on a full socket.
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender
        .join()
        .map_err(|_| io::Error::other("sender thread panicked"))?;
    read_result.map_err(|e| io::Error::new(e.kind(), format!("after {got} bytes: {e}")))?;
    let sent = sent?;
    reader.shutdown(Shutdown::Write)?;
    match read_to_close(&mut reader, Duration::from_secs(10)) {
        Ok(0) => {}
        Ok(n) => {
            return Err(io::Error::other(format!(
                "{n} unexpected bytes after the echo"
            )))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(io::Error::other(
                "not closed within 10 s of the client's FIN",
            ))
        }
        Err(_) => {} // reset: closed all the same
    }
    Ok((sent, hex(&hasher.finalize()), got))
}

/// `echo_transfer` that panics on any difference.
pub fn assert_echo(stream: TcpStream, seed: u64, len: usize, what: &str) {
    let (sent, received, got) =
        echo_transfer(stream, seed, len).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, len, "{what}: received {got} of {len} bytes");
    assert_eq!(sent, received, "{what}: SHA-1 of sent and received differ");
}

/// Reads until EOF or error; `Ok(n)` = clean EOF after `n` bytes. Used to check that the peer
/// closes a connection.
pub fn read_to_close(s: &mut TcpStream, timeout: Duration) -> io::Result<usize> {
    s.set_read_timeout(Some(timeout))?;
    let mut total = 0;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(e) => return Err(e),
        }
    }
}

/// True if the peer closed (EOF or reset) within `timeout`, false if it was still open.
pub fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    match read_to_close(s, timeout) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// SOCKS5

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Ip(SocketAddr),
    Domain(String, u16),
}

impl Target {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            Target::Ip(SocketAddr::V4(a)) => {
                v.push(1);
                v.extend_from_slice(&a.ip().octets());
                v.extend_from_slice(&a.port().to_be_bytes());
            }
            Target::Ip(SocketAddr::V6(a)) => {
                v.push(4);
                v.extend_from_slice(&a.ip().octets());
                v.extend_from_slice(&a.port().to_be_bytes());
            }
            Target::Domain(d, port) => {
                assert!(!d.is_empty() && d.len() <= 255);
                v.push(3);
                v.push(d.len() as u8);
                v.extend_from_slice(d.as_bytes());
                v.extend_from_slice(&port.to_be_bytes());
            }
        }
        v
    }

    /// Parses an address at the start of `buf`; returns it and its encoded length.
    pub fn decode(buf: &[u8]) -> io::Result<(Target, usize)> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
        let atyp = *buf.first().ok_or_else(|| bad("empty address"))?;
        let (host_len, skip) = match atyp {
            1 => (4, 1),
            4 => (16, 1),
            3 => (*buf.get(1).ok_or_else(|| bad("short domain"))? as usize, 2),
            _ => return Err(bad(&format!("bad ATYP {atyp}"))),
        };
        let end = skip + host_len + 2;
        if buf.len() < end {
            return Err(bad("short address"));
        }
        let host = &buf[skip..skip + host_len];
        let port = u16::from_be_bytes([buf[end - 2], buf[end - 1]]);
        let t = match atyp {
            1 => Target::Ip(SocketAddr::new(
                IpAddr::V4(<[u8; 4]>::try_from(host).unwrap().into()),
                port,
            )),
            4 => Target::Ip(SocketAddr::new(
                IpAddr::V6(<[u8; 16]>::try_from(host).unwrap().into()),
                port,
            )),
            _ => Target::Domain(String::from_utf8_lossy(host).into_owned(), port),
        };
        Ok((t, end))
    }
}

impl From<SocketAddr> for Target {
    fn from(a: SocketAddr) -> Target {
        Target::Ip(a)
    }
}

/// Method negotiation: offers "no authentication" only and expects it to be chosen.
pub fn socks5_greet(s: &mut TcpStream) -> io::Result<()> {
    s.write_all(&[5, 1, 0])?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r)?;
    if r != [5, 0] {
        return Err(io::Error::other(format!("greeting answered {r:02x?}")));
    }
    Ok(())
}

/// Sends request `cmd` for `target`, returns the reply code and bound address.
pub fn socks5_request(s: &mut TcpStream, cmd: u8, target: &Target) -> io::Result<(u8, Target)> {
    let mut req = vec![5, cmd, 0];
    req.extend_from_slice(&target.encode());
    s.write_all(&req)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if head[0] != 5 {
        return Err(io::Error::other(format!("reply version {}", head[0])));
    }
    let rest_len = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l)?;
            let mut rest = vec![0u8; l[0] as usize + 2];
            s.read_exact(&mut rest)?;
            let mut enc = vec![3, l[0]];
            enc.extend_from_slice(&rest);
            return Ok((head[1], Target::decode(&enc)?.0));
        }
        t => return Err(io::Error::other(format!("reply ATYP {t}"))),
    };
    let mut rest = vec![0u8; rest_len];
    s.read_exact(&mut rest)?;
    let mut enc = vec![head[3]];
    enc.extend_from_slice(&rest);
    Ok((head[1], Target::decode(&enc)?.0))
}

/// A CONNECT through the SOCKS5 proxy at `proxy`; the stream is ready for payload.
pub fn socks5_connect(proxy: SocketAddr, target: &Target) -> io::Result<TcpStream> {
    let mut s = connect(proxy)?;
    socks5_greet(&mut s)?;
    let (rep, _) = socks5_request(&mut s, 1, target)?;
    if rep != 0 {
        return Err(io::Error::other(format!(
            "CONNECT {target:?} answered {rep}"
        )));
    }
    Ok(s)
}

/// `00 00 FRAG=0 ATYP addr port data`
pub fn udp_wrap(target: &Target, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0];
    v.extend_from_slice(&target.encode());
    v.extend_from_slice(payload);
    v
}

/// Splits a SOCKS5 UDP datagram into (FRAG, address, payload).
pub fn udp_unwrap(buf: &[u8]) -> io::Result<(u8, Target, &[u8])> {
    if buf.len() < 4 || buf[0] != 0 || buf[1] != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad SOCKS5 UDP header",
        ));
    }
    let (t, n) = Target::decode(&buf[3..])?;
    Ok((buf[2], t, &buf[3 + n..]))
}

/// A UDP association: the control connection (kept open for the association's lifetime), the
/// client's UDP socket and the relay address the proxy returned.
pub struct Socks5Udp {
    pub control: TcpStream,
    pub socket: UdpSocket,
    pub relay: SocketAddr,
    /// The BND.ADDR/BND.PORT exactly as the proxy answered.
    pub bound: Target,
}

impl Socks5Udp {
    pub fn associate(proxy: SocketAddr) -> io::Result<Socks5Udp> {
        let socket = UdpSocket::bind(SocketAddr::new(proxy.ip(), 0))?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut control = connect(proxy)?;
        socks5_greet(&mut control)?;
        let (rep, bound) = socks5_request(&mut control, 3, &socket.local_addr()?.into())?;
        if rep != 0 {
            return Err(io::Error::other(format!("UDP ASSOCIATE answered {rep}")));
        }
        let relay = match &bound {
            // An unspecified address means "the address you reached me on".
            Target::Ip(a) if a.ip().is_unspecified() => SocketAddr::new(proxy.ip(), a.port()),
            Target::Ip(a) => *a,
            Target::Domain(..) => return Err(io::Error::other("relay given as a domain")),
        };
        Ok(Socks5Udp {
            control,
            socket,
            relay,
            bound,
        })
    }

    /// Sends `payload` to `target` through the relay until the same payload comes back
    /// (UDP may drop; `tries` sends, 2 s apart). Returns the address the reply named.
    pub fn echo(&self, target: &Target, payload: &[u8], tries: usize) -> io::Result<Target> {
        let packet = udp_wrap(target, payload);
        let mut buf = vec![0u8; 70_000];
        let mut last = String::from("no reply");
        for _ in 0..tries {
            self.socket.send_to(&packet, self.relay)?;
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                let (n, from) = match self.socket.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) => return Err(e),
                };
                if from != self.relay {
                    last = format!("datagram from {from}, not the relay {}", self.relay);
                    continue;
                }
                let (frag, src, data) = udp_unwrap(&buf[..n])?;
                if frag == 0 && data == payload {
                    return Ok(src);
                }
                last = format!("mismatching reply: frag {frag}, {} bytes", data.len());
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "UDP echo of {} bytes via {}: {last}",
                payload.len(),
                self.relay
            ),
        ))
    }
}

/// Plain UDP echo through a port forward (tunnel): send, expect the same bytes back.
pub fn udp_echo_direct(to: SocketAddr, payload: &[u8], tries: usize) -> io::Result<()> {
    let sock = UdpSocket::bind(SocketAddr::new(to.ip(), 0))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = vec![0u8; 70_000];
    let mut last = String::from("no reply");
    for _ in 0..tries {
        sock.send_to(payload, to)?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == to && &buf[..n] == payload => return Ok(()),
            Ok((n, from)) => last = format!("{n} bytes from {from} differ"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("UDP echo of {} bytes via {to}: {last}", payload.len()),
    ))
}

// ---------------------------------------------------------------------------------------------
// Peers and the client under test

/// libev's `ss-server` on 127.0.0.1 with TCP and UDP.
pub struct SsServer {
    pub proc: Proc,
    pub port: u16,
    pub method: String,
    pub password: String,
}

impl SsServer {
    pub fn start(method: &str, password: &str) -> SsServer {
        let (proc, port) = spawn_listening(&format!("ss-server-{method}"), |port| {
            let mut cmd = Command::new("ss-server");
            cmd.args(["-s", "127.0.0.1", "-p", &port.to_string()])
                .args(["-k", password, "-m", method, "-u", "-t", "60"])
                // Resolve names from /etc/hosts or not at all: no DNS traffic off the machine.
                .args(["-d", "127.0.0.1"])
                // Without it libev truncates UDP datagrams larger than 2 × 1397 bytes.
                .args(["--mtu", "9000"]);
            cmd
        });
        SsServer {
            proc,
            port,
            method: method.to_owned(),
            password: password.to_owned(),
        }
    }
}

/// The client under test (`local` or `tunnel`), listening on 127.0.0.1.
pub struct ClientProc {
    pub proc: Proc,
    pub port: u16,
}

impl ClientProc {
    pub fn addr(&self) -> SocketAddr {
        v4(self.port)
    }

    /// Starts `mode` against the given server with `extra` flags appended.
    pub fn start(
        mode: &str,
        server_port: u16,
        method: &str,
        password: &str,
        extra: &[&str],
    ) -> ClientProc {
        let (proc, port) = spawn_listening(&format!("{mode}-{method}"), |port| {
            let mut cmd = client_command(mode);
            cmd.args(["-s", "127.0.0.1", "-p", &server_port.to_string()])
                .args(["-b", "127.0.0.1", "-l", &port.to_string()])
                .args(["-k", password, "-m", method])
                .args(extra);
            cmd
        });
        ClientProc { proc, port }
    }

    /// `local` in front of `server`, TCP and UDP.
    pub fn local(server: &SsServer, extra: &[&str]) -> ClientProc {
        let mut args = vec!["-u", "-t", "60"];
        args.extend_from_slice(extra);
        ClientProc::start(
            "local",
            server.port,
            &server.method,
            &server.password,
            &args,
        )
    }

    /// `tunnel` to `target` through `server`, TCP and UDP.
    pub fn tunnel(server: &SsServer, target: SocketAddr, extra: &[&str]) -> ClientProc {
        let target = target.to_string();
        let mut args = vec!["-u", "-t", "60", "-L", &target];
        args.extend_from_slice(extra);
        ClientProc::start(
            "tunnel",
            server.port,
            &server.method,
            &server.password,
            &args,
        )
    }
}

/// An expectation that belongs to ss-smol's own contract (log keywords, idle timeouts, reply
/// codes libev does not send): asserted for ss-smol; under the libev development switch only
/// reported, so the rest of a test can still be exercised.
pub fn contract(ok: bool, msg: impl FnOnce() -> String) {
    if ok {
        return;
    }
    match client_under_test() {
        ClientImpl::SsSmol => panic!("{}", msg()),
        ClientImpl::Libev => eprintln!("LIBEV DIFFERS (not asserted): {}", msg()),
    }
}

/// Checks ss-smol's log format: every line is `YYYY-MM-DD HH:MM:SS LEVEL: message`.
/// Only meaningful for ss-smol (libev prefixes a space); a no-op under the libev switch.
pub fn assert_log_format(stderr: &str) {
    if client_under_test() != ClientImpl::SsSmol {
        return;
    }
    for line in stderr.lines().filter(|l| !l.is_empty()) {
        let b = line.as_bytes();
        let digits =
            |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
        let ok = b.len() > 21
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b' '
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && b[19] == b' '
            && line[20..].split_once(": ").is_some_and(|(lvl, _)| {
                !lvl.is_empty() && lvl.chars().all(|c| c.is_ascii_uppercase())
            });
        assert!(
            ok,
            "log line not in `YYYY-MM-DD HH:MM:SS LEVEL: message` form: {line:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces (root only)

extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
}
const CLONE_NEWNET: i32 = 0x4000_0000;

/// Runs `ip ARGS`, failing the test with its message if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with lo up holding `addrs` too (lo, not a dummy interface: kernels
/// without the dummy module are common in containers); deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// `tag` names it (with this process's id), so parallel tests get their own.
    pub fn new(tag: &str, addrs: &[&str]) -> NetNs {
        let name = format!("smol-{tag}-{}", std::process::id());
        // A namespace left by a killed earlier run of the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        let n = ns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]);
        for a in addrs {
            let a: IpAddr = a.parse().unwrap();
            let (cidr, extra) = match a {
                IpAddr::V4(_) => (format!("{a}/32"), None),
                // No duplicate address detection: usable at once.
                IpAddr::V6(_) => (format!("{a}/128"), Some("nodad")),
            };
            let mut args = vec!["-n", n, "addr", "add", &cidr, "dev", "lo"];
            args.extend(extra);
            ip(&args);
        }
        ns
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it creates live there and
    /// stay there when used from other threads.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::scope(|s| {
            s.spawn(|| {
                let fd = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: plain syscall on a descriptor we own; it changes only this thread.
                let rc = unsafe { setns(std::os::fd::AsRawFd::as_raw_fd(&fd), CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// `cmd` (program and arguments) run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
pub mod openwrt_kit;
pub mod topology;

// ---------------------------------------------------------------------------------------------
// Tools named with their package, and the process table (/proc), for tests about the processes
// a program under test starts (SIP003 plugins)

/// One process as /proc/PID/stat shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    /// The command name (at most 15 bytes; a script's file name for a script).
    pub comm: String,
    /// `R`, `S`, `Z`, …
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
    /// Start time in clock ticks since boot: with the pid, it names the process even if the
    /// pid is reused later.
    pub start: u64,
}

impl ProcInfo {
    /// A zombie (or a process being torn down) is dead: it only waits to be reaped.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The process `pid`, if there is one.
pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses, so split at the
    // last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // Fields after comm, from field 3 (state): start time is field 22.
    Some(ProcInfo {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgid: rest.get(2)?.parse().ok()?,
        start: rest.get(19)?.parse().ok()?,
    })
}

/// Every process on the machine (of this pid namespace).
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// Every descendant of `pid` (children, their children, …), zombies included.
pub fn descendants(pid: u32) -> Vec<ProcInfo> {
    let all = all_processes();
    let mut found: Vec<ProcInfo> = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            if !found.iter().any(|f| f.pid == p.pid) {
                parents.push(p.pid);
                found.push(p.clone());
            }
        }
    }
    found
}

/// Whether the process `p` names (same pid, same start time) still exists and is not a zombie.
pub fn still_alive(p: &ProcInfo) -> bool {
    proc_info(p.pid).is_some_and(|now| now.start == p.start && !now.is_dead())
}

/// Live (not zombie) processes in any of the process groups `pgids`.
pub fn live_in_groups(pgids: &[u32]) -> Vec<ProcInfo> {
    all_processes()
        .into_iter()
        .filter(|p| pgids.contains(&p.pgid) && !p.is_dead())
        .collect()
}

/// Live processes whose environment holds `var=value`: a variable set on a program under test
/// is inherited by everything it starts, however far it forks or wherever it is reparented.
/// (Reading another user's environment needs privileges; such processes are not found.)
pub fn live_with_env(var: &str, value: &str) -> Vec<ProcInfo> {
    let entry = format!("{var}={value}");
    all_processes()
        .into_iter()
        .filter(|p| !p.is_dead())
        .filter(|p| {
            fs::read(format!("/proc/{}/environ", p.pid))
                .map(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Resident memory of `pid` in KiB (VmRSS), if it is still there.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sends `sig` to any process (not only a [`Proc`] of ours).
pub fn signal_pid(pid: u32, sig: i32) {
    // SAFETY: plain syscall; a pid that is gone gives ESRCH, which is ignored.
    unsafe {
        kill(pid as i32, sig);
    }
}

/// Polls `cond` every 10 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Writes an executable script `name` into `dir` and returns its path.
pub fn write_script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, body).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

// ---------------------------------------------------------------------------------------------
// What a connection a server refuses to answer sees (ss-server's probe resistance)

/// Expects `s` to stay open and silent for `wait`: a read times out (no bytes, no EOF).
pub fn expect_silent_open(s: &mut TcpStream, wait: Duration) -> Result<(), String> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => Err(format!("closed by the server within {wait:?}")),
        Ok(n) => Err(format!(
            "the server sent {n} bytes: {:02x?}",
            &buf[..n.min(32)]
        )),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("closed by the server within {wait:?}: {e}")),
    }
}

/// Expects the server to close `s` (EOF or reset) within `limit`, sending nothing; returns when.
pub fn expect_closed_silently(s: &mut TcpStream, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut got = 0;
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("still open {limit:?} later ({got} bytes received)"));
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) if got == 0 => return Ok(start.elapsed()),
            Ok(0) => return Err(format!("the server sent {got} bytes before closing")),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("still open {limit:?} later ({got} bytes received)"))
            }
            // A reset: closed all the same.
            Err(_) if got == 0 => return Ok(start.elapsed()),
            Err(e) => return Err(format!("the server sent {got} bytes, then {e}")),
        }
    }
}

/// Opens `n` connections with `open`, all at once, and echoes `per_conn` bytes on each.
pub fn concurrent(n: usize, seed: u64, per_conn: usize, open: impl Fn(usize) -> TcpStream + Sync) {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        for i in 0..n {
            let (open, barrier) = (&open, &barrier);
            scope.spawn(move || {
                let s = open(i);
                barrier.wait();
                assert_echo(
                    s,
                    seed + i as u64 * 7919,
                    per_conn,
                    &format!("connection {i}"),
                );
            });
        }
    });
}
