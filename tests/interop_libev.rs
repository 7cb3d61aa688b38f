//! The client under test (`ss-smol local` and `ss-smol tunnel`) against shadowsocks-libev's
//! `ss-server`, for every AEAD method: bulk TCP in both directions at once, many concurrent
//! connections, UDP datagrams of several sizes, and SOCKS5 IPv6 and domain targets.
//!
//! One test function per (method, mode), so that cargo runs them in parallel.

mod support;

use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Bytes sent (and echoed back, at the same time) on the bulk connection.
const BULK: usize = 32 * 1024 * 1024;
/// Concurrent connections, and bytes each echoes.
const CONNS: usize = 50;
const PER_CONN: usize = 256 * 1024;
/// Datagram sizes sent through UDP relays.
const UDP_SIZES: [usize; 4] = [1, 512, 1400, 8000];
const SUITE_LIMIT: Duration = Duration::from_secs(300);

fn local_suite(method: &str) {
    if !require_tool("ss-server") {
        return;
    }
    let _watchdog = Watchdog::new(&format!("local {method}"), SUITE_LIMIT);
    let echo = EchoServer::start();
    let mut server = SsServer::start(method, PASSWORD);
    let mut local = ClientProc::local(&server, &[]);
    let proxy = local.addr();
    let seed = method.len() as u64 * 1000;

    // (a) 32 MiB each way at once.
    let t = Instant::now();
    let s = socks5_connect(proxy, &echo.v4().into()).expect("SOCKS5 CONNECT");
    assert_echo(s, seed, BULK, &format!("{method} local bulk"));
    eprintln!("{method} local: bulk {:?}", t.elapsed());

    // (b) many connections at once.
    let t = Instant::now();
    concurrent(CONNS, seed + 1, PER_CONN, |_| {
        socks5_connect(proxy, &echo.v4().into()).expect("SOCKS5 CONNECT")
    });
    eprintln!("{method} local: {CONNS} concurrent {:?}", t.elapsed());

    // IPv6 and domain targets, briefly.
    let s = socks5_connect(proxy, &echo.v6().into()).expect("CONNECT [::1]");
    assert_echo(s, seed + 2, 64 * 1024, &format!("{method} local [::1]"));
    let s = socks5_connect(proxy, &Target::Domain("localhost".into(), echo.port))
        .expect("CONNECT localhost");
    assert_echo(s, seed + 3, 64 * 1024, &format!("{method} local localhost"));

    // (c) UDP ASSOCIATE.
    let t = Instant::now();
    let udp = Socks5Udp::associate(proxy).expect("UDP ASSOCIATE");
    for (i, size) in UDP_SIZES.into_iter().enumerate() {
        let payload = data(seed + 10 + i as u64, size);
        let from = udp
            .echo(&echo.v4().into(), &payload, 5)
            .unwrap_or_else(|e| panic!("{method} local UDP: {e}"));
        assert_eq!(from, Target::Ip(echo.v4()), "reply names the echo server");
    }
    eprintln!("{method} local: UDP {:?}", t.elapsed());

    local.proc.assert_running();
    server.proc.assert_running();
    local.proc.assert_no_panic();
}

fn tunnel_suite(method: &str) {
    if !require_tool("ss-server") {
        return;
    }
    let _watchdog = Watchdog::new(&format!("tunnel {method}"), SUITE_LIMIT);
    let echo = EchoServer::start();
    let mut server = SsServer::start(method, PASSWORD);
    // TCP and UDP echo share the port number, so one `-L` reaches both.
    let mut tunnel = ClientProc::tunnel(&server, echo.v4(), &[]);
    let fwd = tunnel.addr();
    let seed = method.len() as u64 * 1000 + 500;

    let t = Instant::now();
    let s = connect(fwd).expect("connect tunnel");
    assert_echo(s, seed, BULK, &format!("{method} tunnel bulk"));
    eprintln!("{method} tunnel: bulk {:?}", t.elapsed());

    let t = Instant::now();
    concurrent(CONNS, seed + 1, PER_CONN, |_| {
        connect(fwd).expect("connect tunnel")
    });
    eprintln!("{method} tunnel: {CONNS} concurrent {:?}", t.elapsed());

    let t = Instant::now();
    for (i, size) in UDP_SIZES.into_iter().enumerate() {
        let payload = data(seed + 10 + i as u64, size);
        udp_echo_direct(fwd, &payload, 5).unwrap_or_else(|e| panic!("{method} tunnel UDP: {e}"));
    }
    eprintln!("{method} tunnel: UDP {:?}", t.elapsed());

    tunnel.proc.assert_running();
    server.proc.assert_running();
    tunnel.proc.assert_no_panic();
}

macro_rules! suites {
    ($($local:ident, $tunnel:ident => $method:literal;)*) => {$(
        #[test]
        #[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
        fn $local() {
            local_suite($method);
        }

        #[test]
        #[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
        fn $tunnel() {
            tunnel_suite($method);
        }
    )*};
}

suites! {
    local_chacha20_ietf_poly1305, tunnel_chacha20_ietf_poly1305 => "chacha20-ietf-poly1305";
    local_aes_128_gcm, tunnel_aes_128_gcm => "aes-128-gcm";
    local_aes_192_gcm, tunnel_aes_192_gcm => "aes-192-gcm";
    local_aes_256_gcm, tunnel_aes_256_gcm => "aes-256-gcm";
    local_xchacha20_ietf_poly1305, tunnel_xchacha20_ietf_poly1305 => "xchacha20-ietf-poly1305";
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn socks5_connect_ipv6_target() {
    if !require_tool("ss-server") {
        return;
    }
    let _watchdog = Watchdog::new("ipv6 target", Duration::from_secs(60));
    let echo = EchoServer::start();
    let server = SsServer::start("aes-256-gcm", PASSWORD);
    let mut local = ClientProc::local(&server, &[]);
    let target = Target::Ip(echo.v6());
    let mut s = connect(local.addr()).unwrap();
    socks5_greet(&mut s).unwrap();
    let (rep, _) = socks5_request(&mut s, 1, &target).unwrap();
    assert_eq!(rep, 0, "CONNECT [::1] reply code");
    assert_echo(s, 61, 1024 * 1024, "CONNECT [::1]");
    local.proc.assert_running();
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn socks5_connect_domain_target() {
    if !require_tool("ss-server") {
        return;
    }
    let _watchdog = Watchdog::new("domain target", Duration::from_secs(60));
    // Listening on both 127.0.0.1 and ::1: whichever "localhost" resolves to.
    let echo = EchoServer::start();
    let server = SsServer::start("aes-256-gcm", PASSWORD);
    let mut local = ClientProc::local(&server, &[]);
    let target = Target::Domain("localhost".into(), echo.port);
    let mut s = connect(local.addr()).unwrap();
    socks5_greet(&mut s).unwrap();
    let (rep, _) = socks5_request(&mut s, 1, &target).unwrap();
    assert_eq!(rep, 0, "CONNECT localhost reply code");
    assert_echo(s, 62, 1024 * 1024, "CONNECT localhost");
    local.proc.assert_running();
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn udp_associate_keeps_working_for_many_datagrams() {
    if !require_tool("ss-server") {
        return;
    }
    let _watchdog = Watchdog::new("udp many", Duration::from_secs(120));
    let echo = EchoServer::start();
    let server = SsServer::start("chacha20-ietf-poly1305", PASSWORD);
    let mut local = ClientProc::local(&server, &[]);
    let udp = Socks5Udp::associate(local.addr()).expect("UDP ASSOCIATE");
    let mut sizes = DataGen::new(77);
    for i in 0..200u64 {
        let payload = data(1000 + i, sizes.range(1, 1400));
        udp.echo(&echo.v4().into(), &payload, 5)
            .unwrap_or_else(|e| panic!("datagram {i}: {e}"));
    }
    local.proc.assert_running();
}

/// A client whose server never answers the data it was sent (here because the client has
/// another password) says what that usually means, at the default log level, once for the
/// episode rather than once per connection; a server that answers ends the episode.
#[test]
#[ignore = "needs shadowsocks-libev; bash tests/run-all.sh runs it"]
fn a_silent_server_is_named_once_per_episode() {
    const HINT: &str = "no reply from the server: wrong password or method?";
    if !require_tool("ss-server") {
        return;
    }
    let _watchdog = Watchdog::new("silent server hint", Duration::from_secs(120));
    let echo = EchoServer::start();
    let method = "chacha20-ietf-poly1305";
    let server = SsServer::start(method, PASSWORD);
    let target = echo.v4().to_string();
    let wrong = ClientProc::start(
        "tunnel",
        server.port,
        method,
        "not-the-password",
        &["-t", "2", "-L", &target],
    );
    for _ in 0..3 {
        let mut c = connect(wrong.addr()).expect("connect to the tunnel");
        std::io::Write::write_all(&mut c, b"hello?").unwrap();
        // The server closes or stays silent; either way nothing comes back.
        let got = read_to_close(&mut c, Duration::from_secs(10)).unwrap_or(0);
        assert_eq!(got, 0, "a server with another password answered");
    }
    assert!(
        wrong.proc.wait_for_stderr(HINT, Duration::from_secs(10)),
        "no hint logged:\n{}",
        wrong.proc.stderr()
    );
    thread::sleep(Duration::from_secs(3));
    let hints = wrong.proc.stderr().matches(HINT).count();
    assert_eq!(
        hints,
        1,
        "one hint for the episode:\n{}",
        wrong.proc.stderr()
    );
    assert_log_format(&wrong.proc.stderr());

    // The same password as the server: echoes, and no hint.
    let right = ClientProc::start("tunnel", server.port, method, PASSWORD, &["-L", &target]);
    assert_echo(
        connect(right.addr()).unwrap(),
        7,
        1000,
        "the right password",
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        !right.proc.stderr().contains(HINT),
        "{}",
        right.proc.stderr()
    );
}
