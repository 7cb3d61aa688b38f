//! Shadowsocks 2022 (SIP022) against shadowsocks-rust 1.25.0, for each of its three methods:
//!
//! - `ss-smol local` in front of shadowsocks-rust's `ssserver` (our client, its server);
//! - shadowsocks-rust's `sslocal` in front of `ss-smol server` (its client, our server);
//! - `ss-smol tunnel` through `ssserver`, for one method.
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
    psk: String,
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
        let bin = ssrust_tool("sslocal");
        let (proc, port) = spawn_listening(&format!("sslocal-{}", server.method), |port| {
            let mut cmd = Command::new(&bin);
            cmd.args(["-b", &format!("127.0.0.1:{port}")])
                .args(["-s", &format!("127.0.0.1:{}", server.port)])
                .args(["-m", &server.method, "-k", &server.psk, "-U"]);
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

    let t = Instant::now();
    let udp = Socks5Udp::associate(proxy).expect("UDP ASSOCIATE");
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
// Multi-user servers (SIP022 Extensible Identity Headers, EIH): not tested yet. How
// shadowsocks-rust 1.25.0 does it, checked by hand (TCP and UDP through sslocal, for both AES
// methods) when this file was written:
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
//   (`"mode": "tcp_and_udp"` is the file's spelling of `-U`.)
// - sslocal joins the keys with a colon, identity PSKs first, the user's PSK last:
//   `sslocal … -m 2022-blake3-aes-256-gcm -k "SERVER_PSK:USER_PSK" -U`.
// - With `users` set, a client with the server PSK alone, or with an unknown user PSK, gets no
//   echo: TCP is closed (EOF or reset) without data, UDP gets no reply.
// - EIH exists for the AES methods only: ssserver refuses `users` with
//   2022-blake3-chacha20-poly1305 at start-up ("config integrity check failed, server method
//   doesn't support Extended Identity Header (EIH), remove `users`").
