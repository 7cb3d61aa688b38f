//! Bad input at the client under test (`ss-smol local`): malformed SOCKS5, idle clients, a fake
//! server answering garbage or closing mid-chunk, a wrong password. After each: the process is
//! alive, a good request still works, the reason is logged (one line with the keyword) and
//! nothing panicked.
//!
//! The keyword checks are ss-smol's log contract; they fail under the libev development switch.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use support::*;

const METHOD: &str = "chacha20-ietf-poly1305";
/// The client's idle timeout in these tests (`-t`).
const TIMEOUT_SECS: u64 = 3;
const TIMEOUT_ARG: &str = "3";

struct Setup {
    _watchdog: Watchdog,
    echo: EchoServer,
    server: SsServer,
    local: ClientProc,
}

fn setup(tag: &str) -> Option<Setup> {
    if !require_tool("ss-server") {
        return None;
    }
    let watchdog = Watchdog::new(tag, Duration::from_secs(120));
    let echo = EchoServer::start();
    let server = SsServer::start(METHOD, PASSWORD);
    let local = ClientProc::start(
        "local",
        server.port,
        METHOD,
        PASSWORD,
        &["-u", "-t", TIMEOUT_ARG],
    );
    let s = Setup {
        _watchdog: watchdog,
        echo,
        server,
        local,
    };
    s.good_request("before the bad input");
    Some(s)
}

impl Setup {
    fn good_request(&self, when: &str) {
        good_request(&self.local, &self.echo, when);
    }

    /// The common epilogue: alive, still serving, logged `keyword` once since `mark`, no panic.
    fn check_after(&mut self, mark: usize, keyword: Option<&str>) {
        self.local.proc.assert_running();
        self.good_request("after the bad input");
        if let Some(k) = keyword {
            expect_logged_once(&self.local.proc, mark, k);
        }
        self.local.proc.assert_no_panic();
        assert_log_format(&self.local.proc.stderr());
    }
}

fn good_request(local: &ClientProc, echo: &EchoServer, when: &str) {
    let s = socks5_connect(local.addr(), &echo.v4().into())
        .unwrap_or_else(|e| panic!("good request {when}: {e}"));
    assert_echo(s, 5, 100_000, &format!("good request {when}"));
}

/// The keyword shows up in exactly one line logged since `mark` (allowing a moment for it).
fn expect_logged_once(proc: &Proc, mark: usize, keyword: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut log = proc.stderr_since(mark);
    while !log.contains(keyword) && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        log = proc.stderr_since(mark);
    }
    let lines = log.lines().filter(|l| l.contains(keyword)).count();
    contract(lines == 1, || {
        format!(
            "expected one line with {keyword:?} in {}'s new log output, got {lines}:\n{log}",
            proc.name()
        )
    });
}

/// Sends `bytes` on a fresh connection to the proxy and expects it to be closed (whatever the
/// proxy answers first) within a few seconds.
fn send_and_expect_close(proxy: SocketAddr, bytes: &[u8], what: &str) {
    let mut s = connect(proxy).unwrap();
    s.write_all(bytes).unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(TIMEOUT_SECS + 7)),
        "{what}: the proxy kept the connection open"
    );
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn socks5_wrong_version_byte() {
    let Some(mut s) = setup("socks5-version") else {
        return;
    };
    let mark = s.local.proc.stderr_mark();
    // A SOCKS4 CONNECT request.
    send_and_expect_close(
        s.local.addr(),
        &[4, 1, 0, 80, 127, 0, 0, 1, b'u', 0],
        "SOCKS4 request",
    );
    s.check_after(mark, Some("SOCKS5"));
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn socks5_garbage() {
    let Some(mut s) = setup("socks5-garbage") else {
        return;
    };
    let mark = s.local.proc.stderr_mark();
    let mut junk = data(31337, 300);
    junk[0] = 0xEE;
    send_and_expect_close(s.local.addr(), &junk, "garbage");
    s.check_after(mark, Some("SOCKS5"));
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn socks5_garbage_after_greeting() {
    let Some(mut s) = setup("socks5-garbage-request") else {
        return;
    };
    let mark = s.local.proc.stderr_mark();
    let mut c = connect(s.local.addr()).unwrap();
    socks5_greet(&mut c).unwrap();
    // Version byte of the request is wrong.
    c.write_all(&[0x45, 1, 0, 1, 127, 0, 0, 1, 0, 80]).unwrap();
    assert!(
        closed_within(&mut c, Duration::from_secs(TIMEOUT_SECS + 7)),
        "bad request: the proxy kept the connection open"
    );
    s.check_after(mark, Some("SOCKS5"));
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn socks5_no_acceptable_method() {
    let Some(mut s) = setup("socks5-methods") else {
        return;
    };
    // Only username/password (02) offered: RFC 1928 says answer 05 FF and close.
    let mut c = connect(s.local.addr()).unwrap();
    c.write_all(&[5, 1, 2]).unwrap();
    let mut reply = [0u8; 2];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [5, 0xFF], "no acceptable method");
    assert!(closed_within(&mut c, Duration::from_secs(TIMEOUT_SECS + 7)));
    s.check_after(0, None);
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn socks5_unsupported_command_and_address_type() {
    let Some(mut s) = setup("socks5-unsupported") else {
        return;
    };
    // BIND: reply 07 (command not supported).
    let mut c = connect(s.local.addr()).unwrap();
    socks5_greet(&mut c).unwrap();
    let reply = socks5_request(&mut c, 2, &s.echo.v4().into());
    contract(matches!(reply, Ok((7, _))), || {
        format!("BIND answered {reply:?}, expected reply code 7")
    });
    assert!(closed_within(&mut c, Duration::from_secs(TIMEOUT_SECS + 7)));
    // ATYP 9: reply 08 (address type not supported) or just close.
    let mut c = connect(s.local.addr()).unwrap();
    socks5_greet(&mut c).unwrap();
    c.write_all(&[5, 1, 0, 9, 1, 2, 3, 4, 0, 80]).unwrap();
    let mut reply = Vec::new();
    let _ = c.set_read_timeout(Some(Duration::from_secs(TIMEOUT_SECS + 7)));
    let closed = match c.read_to_end(&mut reply) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "bad ATYP: the proxy kept the connection open");
    if reply.len() >= 2 {
        assert_eq!(reply[..2], [5, 8], "bad ATYP reply");
    }
    s.check_after(0, None);
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn idle_clients_are_closed_after_the_timeout_while_others_are_served() {
    let Some(mut s) = setup("idle") else {
        return;
    };
    let proxy = s.local.addr();
    // Says nothing at all.
    let mut silent = connect(proxy).unwrap();
    // Greets, then says nothing.
    let mut greeted = connect(proxy).unwrap();
    socks5_greet(&mut greeted).unwrap();
    // Connects through to the echo server, then sends nothing.
    let mut relayed = socks5_connect(proxy, &s.echo.v4().into()).unwrap();

    thread::sleep(Duration::from_millis(1000));
    for (c, what) in [
        (&mut silent, "silent"),
        (&mut greeted, "greeted"),
        (&mut relayed, "relayed"),
    ] {
        assert!(
            !closed_within(c, Duration::from_millis(10)),
            "{what} connection closed long before the {TIMEOUT_SECS} s timeout"
        );
    }
    // Meanwhile, others are served.
    for i in 0..3 {
        s.good_request(&format!("#{i} while idle clients wait"));
    }
    for (c, what) in [
        (&mut silent, "silent"),
        (&mut greeted, "greeted"),
        (&mut relayed, "relayed"),
    ] {
        let closed = closed_within(c, Duration::from_secs(TIMEOUT_SECS + 10));
        contract(closed, || {
            format!("{what} connection still open well after the {TIMEOUT_SECS} s timeout")
        });
    }
    s.check_after(0, None);
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn malformed_udp_datagrams_are_dropped() {
    let Some(mut s) = setup("udp-malformed") else {
        return;
    };
    let udp = Socks5Udp::associate(s.local.addr()).expect("UDP ASSOCIATE");
    let junk = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let target = Target::Ip(s.echo.v4());
    let mut fragment = udp_wrap(&target, b"fragment");
    fragment[2] = 1;
    let mut bad_atyp = udp_wrap(&target, b"bad atyp");
    bad_atyp[3] = 9;
    let datagrams: [&[u8]; 5] = [&[], &[0], &[0, 0, 0], &fragment, &bad_atyp];
    for d in datagrams {
        udp.socket.send_to(d, udp.relay).unwrap();
        junk.send_to(d, udp.relay).unwrap();
    }
    junk.send_to(&data(5, 1000), udp.relay).unwrap();
    // The fragment must not have been relayed: the echo would come back.
    let mut buf = [0u8; 2048];
    udp.socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    if let Ok((n, _)) = udp.socket.recv_from(&mut buf) {
        panic!("a malformed datagram was answered: {:02x?}", &buf[..n]);
    }
    udp.echo(&target, b"still working", 5)
        .expect("UDP echo after malformed datagrams");
    s.check_after(0, None);
}

/// A "server" that reads what the client sends, answers `answer(salt_len)` bytes, half-closes
/// and drains until the client closes (so the client sees a FIN, not a reset).
struct FakeServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(answer: Vec<u8>) -> FakeServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let answer = answer.clone();
                thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(1500)));
                    let mut buf = [0u8; 65536];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(&answer);
                    let _ = conn.shutdown(std::net::Shutdown::Write);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        });
        FakeServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&v4(self.port), Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// ss-smol local in front of a fake server whose answer is `answer`: the request gets no echo
/// and is closed, the process logs `keyword` once, stays up and still answers SOCKS5.
fn against_fake_server(tag: &str, answer: Vec<u8>, keyword: &str) {
    if !require_tool("ss-server") {
        return;
    }
    let _watchdog = Watchdog::new(tag, Duration::from_secs(120));
    let echo = EchoServer::start();
    let fake = FakeServer::start(answer);
    let mut local = ClientProc::start("local", fake.port, METHOD, PASSWORD, &["-t", TIMEOUT_ARG]);
    let mark = local.proc.stderr_mark();
    let mut c = socks5_connect(local.addr(), &echo.v4().into()).expect("SOCKS5 CONNECT");
    // The client may already be closed if the fake answered the bare header: ignore errors.
    let _ = c.write_all(b"hello through a fake server");
    match read_to_close(&mut c, Duration::from_secs(TIMEOUT_SECS + 10)) {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes reached the client from a fake server"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the client connection was not closed"
        ),
    }
    local.proc.assert_running();
    let mut g = connect(local.addr()).unwrap();
    socks5_greet(&mut g).expect("SOCKS5 greeting after the fake server");
    drop(g);
    expect_logged_once(&local.proc, mark, keyword);
    local.proc.assert_no_panic();
    assert_log_format(&local.proc.stderr());

    // A correctly configured path still works (a second instance, same binary).
    let server = SsServer::start(METHOD, PASSWORD);
    let good = ClientProc::start("local", server.port, METHOD, PASSWORD, &["-t", TIMEOUT_ARG]);
    good_request(&good, &echo, "through a correct server");
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn fake_server_answers_garbage() {
    against_fake_server("fake-garbage", data(666, 4096), "authentication failed");
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn fake_server_closes_mid_chunk() {
    // A salt, then the first 10 bytes of a length chunk (which needs 2 + 16), then FIN.
    against_fake_server(
        "fake-truncated",
        data(667, salt_len(METHOD) + 10),
        "truncated",
    );
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn wrong_password() {
    let Some(s) = setup("wrong-password") else {
        return;
    };
    let mut wrong = ClientProc::start(
        "local",
        s.server.port,
        METHOD,
        "not-the-password",
        &["-t", TIMEOUT_ARG],
    );
    let server_mark = s.server.proc.stderr_mark();
    let mut c = socks5_connect(wrong.addr(), &s.echo.v4().into()).expect("SOCKS5 CONNECT");
    c.write_all(b"hello with the wrong key").unwrap();
    // libev's server says nothing and holds the connection; the client's idle timeout ends it.
    let closed = match read_to_close(&mut c, Duration::from_secs(TIMEOUT_SECS + 10)) {
        Ok(0) => true,
        Ok(n) => panic!("{n} bytes came back with a wrong password"),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    contract(closed, || {
        "the client connection was not closed after the idle timeout".into()
    });
    assert!(
        s.server
            .proc
            .stderr_since(server_mark)
            .contains("authentication error"),
        "ss-server did not report the wrong key:\n{}",
        s.server.proc.stderr_since(server_mark)
    );
    wrong.proc.assert_running();
    let mut g = connect(wrong.addr()).unwrap();
    socks5_greet(&mut g).expect("SOCKS5 greeting after the wrong password");
    wrong.proc.assert_no_panic();
    assert_log_format(&wrong.proc.stderr());
    // The correctly configured instance in front of the same server still works.
    s.good_request("with the right password");
}
