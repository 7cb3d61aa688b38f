//! Shadowsocks 2022 (SIP022) against shadowsocks-rust 1.25.0, for each of its three methods:
//!
//! - `ss-smol local` in front of shadowsocks-rust's `ssserver` (our client, its server);
//! - shadowsocks-rust's `sslocal` in front of `ss-smol server` (its client, our server);
//! - `ss-smol tunnel` through `ssserver`, for one method;
//! - multi-user servers (SIP023 identity headers, the two AES methods; `users_*`): two
//!   `ss-smol local -k SERVER_PSK:USER_PSK` in front of `ssserver` with two users, and two
//!   `sslocal` in front of `ss-smol server -c users.json`, where a third client, with a key that
//!   is no user's, must get nothing back (TCP or UDP) and cost one WARN, while the users are
//!   still served.
//!
//! Each checks TCP both ways at once (SHA-1 of several MiB), concurrent connections, a
//! connection on which the target speaks first while the client stays silent for more than a
//! second (the client must send its request header, with padding, without waiting for payload),
//! and UDP datagrams of several sizes. Every pre-shared key is random, made by the test.
//!
//! One test function per (method, direction), so that cargo runs them in parallel. They need
//! shadowsocks-rust ([`ssrust_tool`]: `$SS_SMOL_SSRUST_DIR`, else target/bench-peers/bin, else
//! PATH), so they are `#[ignore]`d for a plain `cargo test`; `tests/run-all.sh` installs it and
//! runs them.
//!
//! # Checking the harness itself
//!
//! `SS_SMOL_SSRUST_SELF_TEST=1` puts shadowsocks-rust on "our" side too (`sslocal` for
//! `ss-smol local`/`tunnel`, `ssserver` for `ss-smol server`), so the checks can be shown to
//! pass against a known-good pair. For development of the harness only; `tests/run-all.sh`
//! unsets it.
//!
//! ```text
//! SS_SMOL_SSRUST_SELF_TEST=1 SS_SMOL_SSRUST_DIR=target/bench-peers/bin \
//!     cargo test --test interop_ssrust -- --include-ignored
//! ```

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use support::*;

/// Bytes sent (and echoed back, at the same time) on the bulk connection.
const BULK: usize = 8 * 1024 * 1024;
/// Concurrent connections, and bytes each echoes.
const CONNS: usize = 20;
const PER_CONN: usize = 256 * 1024;
/// What the target sends first on the server-speaks-first connection.
const BANNER: usize = 100 * 1024;
/// Datagram sizes sent through UDP relays.
const UDP_SIZES: [usize; 5] = [1, 100, 512, 1400, 8000];
const SUITE_LIMIT: Duration = Duration::from_secs(300);

const SELF_TEST_ENV: &str = "SS_SMOL_SSRUST_SELF_TEST";

/// Is shadowsocks-rust standing in for ss-smol (see the module documentation)?
fn self_test() -> bool {
    match std::env::var(SELF_TEST_ENV).as_deref() {
        Err(_) | Ok("") | Ok("0") => false,
        Ok("1") => true,
        Ok(other) => panic!("{SELF_TEST_ENV}={other}: expected 1 or 0"),
    }
}

/// How the messages name our side: `smol` ("ss-smol local"), or what stands in for it.
fn ours(smol: &str, stand_in: &str) -> String {
    if self_test() {
        format!("{stand_in} (standing in for {smol})")
    } else {
        smol.to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

/// The key length of a 2022 method.
fn key_len(method: &str) -> usize {
    match method {
        "2022-blake3-aes-128-gcm" => 16,
        "2022-blake3-aes-256-gcm" | "2022-blake3-chacha20-poly1305" => 32,
        other => panic!("not a 2022 method: {other}"),
    }
}

/// A fresh random pre-shared key for `method`, in standard base64 (with padding), the form
/// shadowsocks-rust takes.
fn random_psk(method: &str) -> String {
    let mut key = vec![0u8; key_len(method)];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .expect("read /dev/urandom");
    base64(&key)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_rfc4648() {
    for (raw, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(raw.as_bytes()), enc);
    }
    assert_eq!(random_psk("2022-blake3-aes-128-gcm").len(), 24);
    assert_eq!(random_psk("2022-blake3-aes-256-gcm").len(), 44);
}

// ---------------------------------------------------------------------------------------------
// The programs

/// A server (ssserver, or ss-smol server) on 127.0.0.1:port, TCP and UDP.
struct Server {
    proc: Proc,
    port: u16,
    method: String,
    /// The key clients give (for a multi-user server, the identity PSK before the colon).
    psk: String,
    /// Holds a multi-user server's config file.
    _conf: Option<TempDir>,
}

impl Server {
    /// shadowsocks-rust's `ssserver -s 127.0.0.1:PORT -m METHOD -k PSK -U` (`-U`: TCP and UDP;
    /// the default is TCP only).
    fn ssrust(method: &str, psk: &str) -> Server {
        let bin = ssrust_tool("ssserver");
        let (proc, port) = spawn_listening(&format!("ssserver-{method}"), |port| {
            let mut cmd = Command::new(&bin);
            cmd.args(["-s", &format!("127.0.0.1:{port}")])
                .args(["-m", method, "-k", psk, "-U"]);
            cmd
        });
        Server {
            proc,
            port,
            method: method.to_owned(),
            psk: psk.to_owned(),
            _conf: None,
        }
    }

    /// The server under test: `ss-smol server -s 127.0.0.1 -p PORT -m METHOD -k PSK -u
    /// --allow-private-targets` (every target here is loopback, which it refuses by default).
    fn ours(method: &str, psk: &str) -> Server {
        if self_test() {
            return Server::ssrust(method, psk);
        }
        let (proc, port) = spawn_listening(&format!("ss-smol-server-{method}"), |port| {
            let mut cmd = Command::new(ss_smol_bin());
            cmd.arg("server")
                .args(["-s", "127.0.0.1", "-p", &port.to_string()])
                .args(["-m", method, "-k", psk, "-u", "--allow-private-targets"]);
            cmd
        });
        Server {
            proc,
            port,
            method: method.to_owned(),
            psk: psk.to_owned(),
            _conf: None,
        }
    }
}

/// A client (SOCKS5 proxy or tunnel) listening on 127.0.0.1:port.
struct Client {
    proc: Proc,
    port: u16,
    /// ss-smol, whose log is checked too.
    smol: bool,
}

impl Client {
    fn addr(&self) -> SocketAddr {
        v4(self.port)
    }

    /// shadowsocks-rust's `sslocal -b 127.0.0.1:LPORT -s 127.0.0.1:PORT -m METHOD -k PSK -U`
    /// (SOCKS5 with UDP ASSOCIATE; without `-U` it relays TCP only), or with `forward`, a
    /// tunnel (`--protocol tunnel -f ADDR`).
    fn ssrust(server: &Server, forward: Option<SocketAddr>) -> Client {
        Client::ssrust_key(server, &server.psk, forward)
    }

    /// [`Client::ssrust`] with the key `key` (`SERVER_PSK:USER_PSK` for a multi-user server).
    fn ssrust_key(server: &Server, key: &str, forward: Option<SocketAddr>) -> Client {
        let bin = ssrust_tool("sslocal");
        let (proc, port) = spawn_listening(&format!("sslocal-{}", server.method), |port| {
            let mut cmd = Command::new(&bin);
            cmd.args(["-b", &format!("127.0.0.1:{port}")])
                .args(["-s", &format!("127.0.0.1:{}", server.port)])
                .args(["-m", &server.method, "-k", key, "-U"]);
            if let Some(to) = forward {
                cmd.args(["--protocol", "tunnel", "-f", &to.to_string()]);
            }
            cmd
        });
        Client {
            proc,
            port,
            smol: false,
        }
    }

    /// The client under test: `ss-smol local -s 127.0.0.1 -p PORT -l LPORT -b 127.0.0.1
    /// -m METHOD -k PSK -u`.
    fn ours_local(server: &Server) -> Client {
        if self_test() {
            return Client::ssrust(server, None);
        }
        Client::smol("local", server, &["-k", &server.psk])
    }

    /// `ss-smol tunnel … -L TARGET`, with the key given as `--key` (the other spelling).
    fn ours_tunnel(server: &Server, target: SocketAddr) -> Client {
        if self_test() {
            return Client::ssrust(server, Some(target));
        }
        let target = target.to_string();
        Client::smol("tunnel", server, &["--key", &server.psk, "-L", &target])
    }

    fn smol(mode: &str, server: &Server, extra: &[&str]) -> Client {
        let (proc, port) = spawn_listening(&format!("ss-smol-{mode}-{}", server.method), |port| {
            let mut cmd = Command::new(ss_smol_bin());
            cmd.arg(mode)
                .args(["-s", "127.0.0.1", "-p", &server.port.to_string()])
                .args(["-l", &port.to_string(), "-b", "127.0.0.1"])
                .args(["-m", &server.method, "-u"])
                .args(extra);
            cmd
        });
        Client {
            proc,
            port,
            smol: true,
        }
    }
}

/// Both still running; ss-smol (whichever side it is) did not panic and logged well-formed
/// lines.
fn assert_healthy(server: &mut Server, client: &mut Client, server_is_smol: bool) {
    server.proc.assert_running();
    client.proc.assert_running();
    if client.smol {
        client.proc.assert_no_panic();
        assert_log_format(&client.proc.stderr());
    }
    if server_is_smol && !self_test() {
        server.proc.assert_no_panic();
        assert_log_format(&server.proc.stderr());
    }
}

// ---------------------------------------------------------------------------------------------
// A target that speaks first

/// TCP on 127.0.0.1: on every connection sends `BANNER` bytes (generated from `seed`) at once,
/// then echoes whatever comes. Stops on drop.
struct BannerServer {
    port: u16,
    seed: u64,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BannerServer {
    fn start(seed: u64) -> BannerServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind banner server");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    let _ = set_timeouts(&conn);
                    if conn.write_all(&data(seed, BANNER)).is_err() {
                        return;
                    }
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => {
                                let _ = conn.shutdown(std::net::Shutdown::Write);
                                return;
                            }
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        BannerServer {
            port,
            seed,
            stop,
            thread: Some(thread),
        }
    }

    fn addr(&self) -> SocketAddr {
        v4(self.port)
    }
}

impl Drop for BannerServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// On a connection (already through the proxy) to a [`BannerServer`]: the banner arrives
/// although the client has sent nothing, the client then stays silent for more than a second
/// longer, and only then sends data, which is echoed.
fn server_speaks_first(mut s: TcpStream, banner: &BannerServer, what: &str) {
    let t = Instant::now();
    let mut got = vec![0u8; BANNER];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{what}: the target's greeting, with nothing sent: {e}"));
    assert!(
        got == data(banner.seed, BANNER),
        "{what}: the target's greeting arrived altered"
    );
    let waited = t.elapsed();
    thread::sleep(Duration::from_millis(1200));
    assert_echo(s, banner.seed + 1, 64 * 1024, what);
    eprintln!("{what}: greeting after {waited:?}, then echo after 1.2 s of silence");
}

// ---------------------------------------------------------------------------------------------
// The checks

/// Everything through the SOCKS5 proxy at `proxy`: bulk, concurrent, server-first, UDP.
fn socks_checks(proxy: SocketAddr, seed: u64, what: &str) {
    let echo = EchoServer::start();
    let banner = BannerServer::start(seed + 5);

    let t = Instant::now();
    let s = socks5_connect(proxy, &echo.v4().into()).expect("SOCKS5 CONNECT");
    assert_echo(s, seed, BULK, &format!("{what} bulk"));
    eprintln!("{what}: bulk {} MiB each way {:?}", BULK >> 20, t.elapsed());

    let t = Instant::now();
    concurrent(CONNS, seed + 1, PER_CONN, |_| {
        socks5_connect(proxy, &echo.v4().into()).expect("SOCKS5 CONNECT")
    });
    eprintln!("{what}: {CONNS} concurrent {:?}", t.elapsed());

    let s = socks5_connect(proxy, &banner.addr().into()).expect("SOCKS5 CONNECT");
    server_speaks_first(s, &banner, &format!("{what} server first"));

    udp_echoes(proxy, &echo, seed, what);
}

/// One datagram of each UDP size through the SOCKS5 proxy at `proxy`, each echoed intact.
fn udp_echoes(proxy: SocketAddr, echo: &EchoServer, seed: u64, what: &str) {
    let t = Instant::now();
    let udp = Socks5Udp::associate(proxy).unwrap_or_else(|e| panic!("{what}: UDP ASSOCIATE: {e}"));
    for (i, size) in UDP_SIZES.into_iter().enumerate() {
        let payload = data(seed + 10 + i as u64, size);
        let from = udp
            .echo(&echo.v4().into(), &payload, 5)
            .unwrap_or_else(|e| panic!("{what} UDP: {e}"));
        assert_eq!(
            from,
            Target::Ip(echo.v4()),
            "{what}: the reply names the echo server"
        );
    }
    eprintln!("{what}: UDP {:?}", t.elapsed());
}

/// Our client (`ss-smol local`) in front of shadowsocks-rust's server.
fn our_client(method: &str) {
    let _watchdog = Watchdog::new(&format!("our client, {method}"), SUITE_LIMIT);
    let mut server = Server::ssrust(method, &random_psk(method));
    let mut local = Client::ours_local(&server);
    socks_checks(
        local.addr(),
        method.len() as u64 * 1000,
        &format!("{} -> ssserver, {method}", ours("ss-smol local", "sslocal")),
    );
    assert_healthy(&mut server, &mut local, false);
}

/// shadowsocks-rust's client in front of our server (`ss-smol server`).
fn our_server(method: &str) {
    let _watchdog = Watchdog::new(&format!("our server, {method}"), SUITE_LIMIT);
    let mut server = Server::ours(method, &random_psk(method));
    let mut local = Client::ssrust(&server, None);
    socks_checks(
        local.addr(),
        method.len() as u64 * 1000 + 300,
        &format!(
            "sslocal -> {}, {method}",
            ours("ss-smol server", "ssserver")
        ),
    );
    assert_healthy(&mut server, &mut local, true);
}

/// Our tunnel (`ss-smol tunnel -L ECHO`) through shadowsocks-rust's server, TCP and UDP.
fn our_tunnel(method: &str) {
    let _watchdog = Watchdog::new(&format!("our tunnel, {method}"), SUITE_LIMIT);
    let what = format!(
        "{} -> ssserver, {method}",
        ours("ss-smol tunnel", "sslocal --protocol tunnel")
    );
    let seed = method.len() as u64 * 1000 + 600;
    let echo = EchoServer::start();
    let mut server = Server::ssrust(method, &random_psk(method));
    // TCP and UDP echo share the port number, so one `-L` reaches both.
    let mut tunnel = Client::ours_tunnel(&server, echo.v4());
    let fwd = tunnel.addr();

    let t = Instant::now();
    assert_echo(
        connect(fwd).expect("connect tunnel"),
        seed,
        BULK,
        &format!("{what} bulk"),
    );
    eprintln!("{what}: bulk {:?}", t.elapsed());

    let t = Instant::now();
    concurrent(CONNS, seed + 1, PER_CONN, |_| {
        connect(fwd).expect("connect tunnel")
    });
    eprintln!("{what}: {CONNS} concurrent {:?}", t.elapsed());

    let banner = BannerServer::start(seed + 5);
    let mut banner_tunnel = Client::ours_tunnel(&server, banner.addr());
    server_speaks_first(
        connect(banner_tunnel.addr()).expect("connect tunnel"),
        &banner,
        &format!("{what} server first"),
    );

    let t = Instant::now();
    for (i, size) in UDP_SIZES.into_iter().enumerate() {
        let payload = data(seed + 10 + i as u64, size);
        udp_echo_direct(fwd, &payload, 5).unwrap_or_else(|e| panic!("{what} UDP: {e}"));
    }
    eprintln!("{what}: UDP {:?}", t.elapsed());

    assert_healthy(&mut server, &mut tunnel, false);
    assert_healthy(&mut server, &mut banner_tunnel, false);
}

macro_rules! suites {
    ($($client:ident, $server:ident => $method:literal;)*) => {$(
        #[test]
        #[ignore = "needs shadowsocks-rust (ssserver); bash tests/run-all.sh installs and runs it"]
        fn $client() {
            our_client($method);
        }

        #[test]
        #[ignore = "needs shadowsocks-rust (sslocal); bash tests/run-all.sh installs and runs it"]
        fn $server() {
            our_server($method);
        }
    )*};
}

suites! {
    local_to_ssserver_2022_blake3_aes_128_gcm, sslocal_to_server_2022_blake3_aes_128_gcm
        => "2022-blake3-aes-128-gcm";
    local_to_ssserver_2022_blake3_aes_256_gcm, sslocal_to_server_2022_blake3_aes_256_gcm
        => "2022-blake3-aes-256-gcm";
    local_to_ssserver_2022_blake3_chacha20_poly1305, sslocal_to_server_2022_blake3_chacha20_poly1305
        => "2022-blake3-chacha20-poly1305";
}

#[test]
#[ignore = "needs shadowsocks-rust (ssserver); bash tests/run-all.sh installs and runs it"]
fn tunnel_to_ssserver_2022_blake3_aes_256_gcm() {
    our_tunnel("2022-blake3-aes-256-gcm");
}

// ---------------------------------------------------------------------------------------------
// Multi-user servers (SIP023 Extensible Identity Headers, EIH), for the two AES methods
//
// How shadowsocks-rust 1.25.0 does it:
//
// - ssserver takes the users only from a config file (`ssserver -c FILE`), as `users` under the
//   server entry; each `password` is that user's own PSK, base64, of the method's key length;
//   the server entry's `password` is the server's identity PSK:
//
//     {"servers": [{"server": "127.0.0.1", "server_port": PORT,
//                   "method": "2022-blake3-aes-256-gcm", "password": "SERVER_PSK",
//                   "mode": "tcp_and_udp",
//                   "users": [{"name": "alice", "password": "USER_PSK"}]}]}
//
//   (`"mode": "tcp_and_udp"` is the file's spelling of `-U`.) `ss-smol server -c FILE` takes
//   the same server entry, at the top level (no `servers` list).
// - sslocal joins the keys with a colon, identity PSKs first, the user's PSK last:
//   `sslocal … -m 2022-blake3-aes-256-gcm -k "SERVER_PSK:USER_PSK" -U`; so does ss-smol.
// - With `users` set, a client with the server PSK alone, or with an unknown user PSK, gets no
//   echo: ssserver closes TCP (EOF or reset) without data; ss-smol holds it, silent, until it
//   goes idle (as it does any probe), and logs one WARN. Neither answers UDP.
// - EIH exists for the AES methods only: ssserver refuses `users` with
//   2022-blake3-chacha20-poly1305 at start-up ("config integrity check failed, server method
//   doesn't support Extended Identity Header (EIH), remove `users`").

/// Bytes sent (and echoed back) per user on the multi-user bulk connection.
const USER_BULK: usize = 4 * 1024 * 1024;
/// How long a probe (a client with no user's key) is watched for an answer.
const PROBE_WATCH: Duration = Duration::from_secs(4);

/// A user of a multi-user server: name and own PSK.
struct User {
    name: &'static str,
    psk: String,
}

/// Two users with fresh random keys.
fn two_users(method: &str) -> [User; 2] {
    [
        User {
            name: "alice",
            psk: random_psk(method),
        },
        User {
            name: "bob",
            psk: random_psk(method),
        },
    ]
}

/// The `users` array of a config file.
fn users_json(users: &[User]) -> String {
    let list: Vec<String> = users
        .iter()
        .map(|u| format!(r#"{{"name": "{}", "password": "{}"}}"#, u.name, u.psk))
        .collect();
    format!("[{}]", list.join(", "))
}

/// The server entry of a config file (ssserver's `servers[0]`, ss-smol's whole file).
fn server_entry(port: u16, method: &str, psk: &str, users: &[User]) -> String {
    format!(
        r#"{{"server": "127.0.0.1", "server_port": {port}, "method": "{method}", "password": "{psk}", "users": {}, "mode": "tcp_and_udp"}}"#,
        users_json(users)
    )
}

impl Server {
    /// shadowsocks-rust's `ssserver -c FILE` with `users` (it takes them from a file only).
    fn ssrust_multi(method: &str, psk: &str, users: &[User]) -> Server {
        Server::from_file(
            &format!("ssserver-users-{method}"),
            method,
            psk,
            |port| {
                format!(
                    r#"{{"servers": [{}]}}"#,
                    server_entry(port, method, psk, users)
                )
            },
            |conf| {
                let mut cmd = Command::new(ssrust_tool("ssserver"));
                cmd.arg("-c").arg(conf);
                cmd
            },
        )
    }

    /// The multi-user server under test: `ss-smol server -c users.json
    /// --allow-private-targets`.
    fn ours_multi(method: &str, psk: &str, users: &[User]) -> Server {
        if self_test() {
            return Server::ssrust_multi(method, psk, users);
        }
        Server::from_file(
            &format!("ss-smol-server-users-{method}"),
            method,
            psk,
            |port| server_entry(port, method, psk, users),
            |conf| {
                let mut cmd = Command::new(ss_smol_bin());
                cmd.arg("server")
                    .arg("-c")
                    .arg(conf)
                    .arg("--allow-private-targets");
                cmd
            },
        )
    }

    /// A server started as `command(config file)`, the file holding `config(port)`.
    fn from_file(
        name: &str,
        method: &str,
        psk: &str,
        config: impl Fn(u16) -> String,
        command: impl Fn(&std::path::Path) -> Command,
    ) -> Server {
        let dir = TempDir::new(name);
        let conf = dir.join("config.json");
        let (proc, port) = spawn_listening(name, |port| {
            std::fs::write(&conf, config(port)).expect("write config");
            command(&conf)
        });
        Server {
            proc,
            port,
            method: method.to_owned(),
            psk: psk.to_owned(),
            _conf: Some(dir),
        }
    }
}

impl Client {
    /// `ss-smol local … -k KEY -u` with the key `key` (`SERVER_PSK:USER_PSK`).
    fn ours_local_key(server: &Server, key: &str) -> Client {
        if self_test() {
            return Client::ssrust_key(server, key, None);
        }
        Client::smol("local", server, &["-k", key])
    }
}

/// The key a user's client gives: `SERVER_PSK:USER_PSK`.
fn user_key(server: &Server, user: &User) -> String {
    format!("{}:{}", server.psk, user.psk)
}

/// Through the SOCKS5 proxy at `proxy`: USER_BULK bytes echoed (SHA-1 checked both ways), and
/// one datagram of each UDP size.
fn user_checks(proxy: SocketAddr, echo: &EchoServer, seed: u64, bulk: usize, what: &str) {
    let t = Instant::now();
    let s = socks5_connect(proxy, &echo.v4().into())
        .unwrap_or_else(|e| panic!("{what}: SOCKS5 CONNECT: {e}"));
    assert_echo(s, seed, bulk, &format!("{what} bulk"));
    eprintln!("{what}: bulk {} KiB each way {:?}", bulk >> 10, t.elapsed());

    udp_echoes(proxy, echo, seed, what);
}

/// [`user_checks`] for every (client, user) pair at once, each on its own thread.
fn all_users_checks(
    clients: &[Client],
    users: &[User],
    echo: &EchoServer,
    seed: u64,
    bulk: usize,
    what: &str,
) {
    thread::scope(|scope| {
        for (i, (client, user)) in clients.iter().zip(users).enumerate() {
            let proxy = client.addr();
            let what = format!("{what}, user {}", user.name);
            scope.spawn(move || user_checks(proxy, echo, seed + i as u64 * 100, bulk, &what));
        }
    });
}

/// Our client (`ss-smol local -k SERVER_PSK:USER_PSK`), one per user, in front of
/// shadowsocks-rust's server with two users.
fn our_client_multi(method: &str) {
    let _watchdog = Watchdog::new(&format!("our client, users, {method}"), SUITE_LIMIT);
    let users = two_users(method);
    let mut server = Server::ssrust_multi(method, &random_psk(method), &users);
    let mut clients: Vec<Client> = users
        .iter()
        .map(|u| Client::ours_local_key(&server, &user_key(&server, u)))
        .collect();
    let echo = EchoServer::start();
    let what = format!(
        "{} -> ssserver with users, {method}",
        ours("ss-smol local", "sslocal")
    );
    all_users_checks(
        &clients,
        &users,
        &echo,
        method.len() as u64 * 1000 + 700,
        USER_BULK,
        &what,
    );
    for client in &mut clients {
        assert_healthy(&mut server, client, false);
    }
}

/// Through a client holding no user's key: a TCP connection gets no data back within
/// PROBE_WATCH (closed or still open, either is fine; ss-smol holds it, ssserver closes it).
/// Returns the connection, still open if it is, so that it can be held while the good users
/// are served.
fn tcp_probe_gets_nothing(proxy: SocketAddr, echo: &EchoServer, what: &str) -> Option<TcpStream> {
    // sslocal answers CONNECT once it has reached the server; it might also refuse it.
    let mut s = match socks5_connect(proxy, &echo.v4().into()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{what}: SOCKS5 CONNECT refused ({e}): nothing came back");
            return None;
        }
    };
    // Written is written even if the peer closes meanwhile; an error here means it did.
    let _ = s.write_all(&data(1, 4096));
    let deadline = Instant::now() + PROBE_WATCH;
    let mut got = 0;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!("{what}: TCP still open, silent, after {PROBE_WATCH:?}");
            return Some(s);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break, // reset
        }
        assert_eq!(got, 0, "{what}: {got} bytes came back on TCP");
    }
    assert_eq!(got, 0, "{what}: {got} bytes came back on TCP");
    eprintln!("{what}: TCP closed without data");
    None
}

/// Through a client holding no user's key: UDP datagrams get no reply.
fn udp_probe_gets_nothing(proxy: SocketAddr, echo: &EchoServer, what: &str) {
    let udp = Socks5Udp::associate(proxy).unwrap_or_else(|e| panic!("{what}: UDP ASSOCIATE: {e}"));
    match udp.echo(&echo.v4().into(), &data(2, 100), 2) {
        Ok(from) => panic!("{what}: a UDP reply came back (naming {from:?})"),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            eprintln!("{what}: UDP, no reply ({e})")
        }
        Err(e) => panic!("{what}: UDP: {e}"),
    }
}

/// The `WARN` lines of a log.
fn warnings(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" WARN: ")).collect()
}

/// shadowsocks-rust's client (`sslocal -k SERVER_PSK:USER_PSK`), one per user, in front of our
/// multi-user server (`ss-smol server -c users.json`); then a client with a key that is no
/// user's gets nothing back, ss-smol logs one WARN for it, and the users are still served.
fn our_server_multi(method: &str) {
    let _watchdog = Watchdog::new(&format!("our server, users, {method}"), SUITE_LIMIT);
    let users = two_users(method);
    let mut server = Server::ours_multi(method, &random_psk(method), &users);
    if !self_test() {
        let log = server.proc.stderr();
        assert!(
            warnings(&log).is_empty(),
            "ss-smol server warned about its users config:\n{log}"
        );
    }
    let mut clients: Vec<Client> = users
        .iter()
        .map(|u| Client::ssrust_key(&server, &user_key(&server, u), None))
        .collect();
    let echo = EchoServer::start();
    let seed = method.len() as u64 * 1000 + 800;
    let what = format!(
        "sslocal -> {} with users, {method}",
        ours("ss-smol server", "ssserver")
    );
    all_users_checks(&clients, &users, &echo, seed, USER_BULK, &what);

    // A stranger: the server's identity PSK right, the user PSK no user's.
    let stranger = User {
        name: "mallory",
        psk: random_psk(method),
    };
    let mut probe = Client::ssrust_key(&server, &user_key(&server, &stranger), None);
    let mark = server.proc.stderr_mark();
    let pwhat = format!("{what}, a key that is no user's");
    let held = tcp_probe_gets_nothing(probe.addr(), &echo, &pwhat);
    udp_probe_gets_nothing(probe.addr(), &echo, &pwhat);
    if !self_test() {
        let warned = wait_until(Duration::from_secs(5), || {
            !warnings(&server.proc.stderr_since(mark)).is_empty()
        });
        let log = server.proc.stderr_since(mark);
        assert!(
            warned,
            "{pwhat}: ss-smol server logged no WARN for it:\n{log}"
        );
        thread::sleep(Duration::from_millis(500));
        let log = server.proc.stderr_since(mark);
        assert_eq!(
            warnings(&log).len(),
            1,
            "{pwhat}: ss-smol server should log one WARN for it:\n{log}"
        );
    }

    // The users are still served (while the probe's connection, if held, is still open).
    all_users_checks(
        &clients,
        &users,
        &echo,
        seed + 50,
        256 * 1024,
        &format!("{what}, after the probe"),
    );
    drop(held);
    probe.proc.assert_running();
    for client in &mut clients {
        assert_healthy(&mut server, client, true);
    }
}

macro_rules! multi_user_suites {
    ($($client:ident, $server:ident => $method:literal;)*) => {$(
        #[test]
        #[ignore = "needs shadowsocks-rust (ssserver); bash tests/run-all.sh installs and runs it"]
        fn $client() {
            our_client_multi($method);
        }

        #[test]
        #[ignore = "needs shadowsocks-rust (sslocal); bash tests/run-all.sh installs and runs it"]
        fn $server() {
            our_server_multi($method);
        }
    )*};
}

multi_user_suites! {
    users_local_to_ssserver_2022_blake3_aes_128_gcm, users_sslocal_to_server_2022_blake3_aes_128_gcm
        => "2022-blake3-aes-128-gcm";
    users_local_to_ssserver_2022_blake3_aes_256_gcm, users_sslocal_to_server_2022_blake3_aes_256_gcm
        => "2022-blake3-aes-256-gcm";
}
