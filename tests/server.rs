//! ss-smol's server mode (`ss-smol server`): real clients in front of it (shadowsocks-libev's
//! `ss-local` / `ss-tunnel` and ss-smol's own `local` / `tunnel`) for every AEAD method, target
//! names resolved through a dnsmasq on 127.0.0.1, the private-target policy, probe resistance
//! (random bytes, a wrong key, replayed connections), connections that wait (on an incomplete
//! first chunk, on a slow lookup) beside correct clients, bans of sources that keep failing,
//! and an IPv6 listener.
//!
//! Probes and direct checks talk to the server through a tiny Shadowsocks client built here on
//! the library's sans-IO codec (`ss_smol::proto::tcp` and `ss_smol::proto::udp`), with blocking
//! std sockets and timeouts everywhere. Everything runs on loopback.
//!
//! The server under test is always ss-smol (the `SS_SMOL_CLIENT_UNDER_TEST` switch of the other
//! integration tests is not used here: which client runs is explicit in every test).

mod support;

use ss_smol::proto::cipher::{MasterKey, Method};
use ss_smol::proto::tcp::{Decryptor, Encryptor, HEADER_LEN, MAX_PAYLOAD, OVERHEAD};
use ss_smol::proto::{udp, ParseError};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

/// Bytes sent (and echoed back at the same time) on each bulk connection.
const BULK: usize = 32 * 1024 * 1024;
/// Datagram sizes sent through UDP relays.
const UDP_SIZES: [usize; 4] = [1, 512, 1400, 8000];
/// Concurrent connections through ss-smol local, and bytes each echoes.
const CONNS: usize = 20;
const PER_CONN: usize = 256 * 1024;
/// Idle timeout (-t) of servers in the probe tests: a rejected probe is held this long.
const PROBE_IDLE: u64 = 3;
/// How much later than its idle timeout a held probe may be closed.
const CLOSE_MARGIN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Processes: the server under test, clients, dnsmasq

/// `ss-smol server` on 127.0.0.1 (or `host`), TCP and UDP.
struct SmolServer {
    proc: Proc,
    port: u16,
    host: String,
    method: String,
}

impl SmolServer {
    /// `ss-smol server -s 127.0.0.1 -p PORT -k PASSWORD -m METHOD -u` + `extra`.
    fn start(method: &str, extra: &[&str]) -> SmolServer {
        let (proc, port) = spawn_listening(&format!("ss-smol-server-{method}"), |port| {
            server_command("127.0.0.1", port, method, extra)
        });
        SmolServer {
            proc,
            port,
            host: "127.0.0.1".into(),
            method: method.to_owned(),
        }
    }

    /// The same on [::1] (waits for the IPv6 listener).
    fn start_v6(method: &str, extra: &[&str]) -> SmolServer {
        let port = free_port();
        let mut proc = Proc::spawn(
            &format!("ss-smol-server-v6-{method}"),
            server_command("::1", port, method, extra),
        );
        proc.wait_for_tcp(v6(port), START_TIMEOUT);
        SmolServer {
            proc,
            port,
            host: "::1".into(),
            method: method.to_owned(),
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host.parse().unwrap(), self.port)
    }

    /// Asserts: still running, no panic, well-formed log.
    fn assert_healthy(&mut self) {
        self.proc.assert_running();
        self.proc.assert_no_panic();
        assert_log_format(&self.proc.stderr());
    }
}

fn server_command(host: &str, port: u16, method: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(ss_smol_bin());
    cmd.arg("server")
        .args(["-s", host, "-p", &port.to_string()])
        .args(["-k", PASSWORD, "-m", method, "-u"])
        .args(extra);
    cmd
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// shadowsocks-libev's `ss-local` / `ss-tunnel`.
    Libev,
    /// `ss-smol local` / `ss-smol tunnel`.
    Smol,
}

/// A client (`mode` = "local" or "tunnel") on 127.0.0.1 in front of `server`, TCP and UDP.
fn start_client(imp: Client, mode: &str, server: &SmolServer, extra: &[&str]) -> ClientProc {
    start_client_to(imp, mode, &server.host, server.port, &server.method, extra)
}

/// The same for any Shadowsocks server address.
fn start_client_to(
    imp: Client,
    mode: &str,
    host: &str,
    server_port: u16,
    method: &str,
    extra: &[&str],
) -> ClientProc {
    let name = format!("{imp:?}-{mode}-{method}");
    let (proc, port) = spawn_listening(&name, |port| {
        let mut cmd = match imp {
            Client::Libev => {
                let mut cmd = Command::new(format!("ss-{mode}"));
                // libev truncates UDP datagrams larger than 2 × 1397 bytes without it.
                cmd.args(["--mtu", "9000"]);
                cmd
            }
            Client::Smol => {
                let mut cmd = Command::new(ss_smol_bin());
                cmd.arg(mode);
                cmd
            }
        };
        cmd.args(["-s", host, "-p", &server_port.to_string()])
            .args(["-b", "127.0.0.1", "-l", &port.to_string()])
            .args(["-k", PASSWORD, "-m", method, "-u", "-t", "60"])
            .args(extra);
        cmd
    });
    ClientProc { proc, port }
}

fn local(imp: Client, server: &SmolServer) -> ClientProc {
    start_client(imp, "local", server, &[])
}

fn tunnel(imp: Client, server: &SmolServer, to: &str) -> ClientProc {
    start_client(imp, "tunnel", server, &["-L", to])
}

/// dnsmasq on 127.0.0.1 with these records, NXDOMAIN for every other name under `.test`, and
/// nothing forwarded anywhere; it logs its queries to stderr.
///
/// ```text
/// echo.test    A     127.0.0.1
/// mapped.test  AAAA  ::ffff:127.0.0.1   (IPv4-mapped loopback)
/// zero.test    A     0.0.0.0            (connecting there reaches this host)
/// ```
fn start_dnsmasq() -> Option<(Proc, u16)> {
    support::start_dnsmasq(&[
        "--address=/echo.test/127.0.0.1",
        "--address=/mapped.test/::ffff:127.0.0.1",
        "--address=/zero.test/0.0.0.0",
    ])
}

/// The lines of `log` at WARN level (`YYYY-MM-DD HH:MM:SS WARN: …`).
fn warn_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" WARN: ")).collect()
}

/// How ss-smol names a peer on 127.0.0.1 in its log (`127.0.0.1:PORT: …`).
fn peer_tag(port: u16) -> String {
    format!("127.0.0.1:{port}: ")
}

// ---------------------------------------------------------------------------------------------
// A Shadowsocks client on the library's codec

/// A seed no other call in this process (or a recent run) gets: salts must never repeat
/// within one server's life, or its replay filter rightly refuses them.
fn fresh_seed() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 40) ^ N.fetch_add(1, Ordering::SeqCst) << 20
}

fn method_key(method: &str, password: &str) -> (Method, MasterKey) {
    let m = Method::from_name(method).expect("known method");
    (m, MasterKey::from_password(m, password.as_bytes()))
}

/// Both directions of one AEAD TCP stream, client side.
struct Codec {
    enc: Encryptor,
    dec: Decryptor,
    salt_sent: bool,
    /// Received bytes not decoded yet.
    wire: Vec<u8>,
    /// Decoded plaintext not consumed yet.
    plain: Vec<u8>,
}

impl Codec {
    fn new(method: &str, password: &str) -> Codec {
        let (m, key) = method_key(method, password);
        let salt = data(fresh_seed(), m.salt_len());
        Codec {
            enc: Encryptor::new(m, &key, &salt),
            dec: Decryptor::new(m, &key),
            salt_sent: false,
            wire: Vec::new(),
            plain: Vec::new(),
        }
    }

    /// `data` sealed into full-size chunks, preceded by the salt the first time.
    fn seal(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.salt_sent {
            out.extend_from_slice(self.enc.salt());
            self.salt_sent = true;
        }
        for piece in data.chunks(MAX_PAYLOAD) {
            let mut frame = vec![0u8; piece.len() + OVERHEAD];
            frame[HEADER_LEN..HEADER_LEN + piece.len()].copy_from_slice(piece);
            self.enc.seal_chunk(&mut frame).unwrap();
            out.extend_from_slice(&frame);
        }
        out
    }

    /// Decodes received bytes.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.wire.extend_from_slice(bytes);
        loop {
            match self.dec.decode(&mut self.wire) {
                Ok(step) => {
                    self.plain.extend_from_slice(&self.wire[step.plain]);
                    self.wire.drain(..step.consumed);
                }
                Err(ParseError::NeedMore(_)) => return Ok(()),
                Err(e) => return Err(format!("server stream does not decode: {e}")),
            }
        }
    }

    /// Reads from `sock` until `n` plaintext bytes are decoded; returns them.
    fn recv_exact(&mut self, sock: &mut TcpStream, n: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; 64 * 1024];
        while self.plain.len() < n {
            match sock.read(&mut buf) {
                Ok(0) => {
                    return Err(format!(
                        "server closed after {} of {n} plaintext bytes",
                        self.plain.len()
                    ))
                }
                Ok(k) => self.feed(&buf[..k])?,
                Err(e) => {
                    return Err(format!(
                        "reading from the server after {} of {n} plaintext bytes: {e}",
                        self.plain.len()
                    ))
                }
            }
        }
        Ok(self.plain.drain(..n).collect())
    }
}

/// The first write of a connection to `target` carrying `payload`: salt + one chunk (or more).
fn first_packet(codec: &mut Codec, target: &Target, payload: &[u8]) -> Vec<u8> {
    let mut plain = target.encode();
    plain.extend_from_slice(payload);
    codec.seal(&plain)
}

/// A correct client straight to the server: connects, asks for `target` (an echo server) with
/// `len` bytes of payload in the first write and more after, and checks the echo.
fn codec_echo(server: SocketAddr, method: &str, target: &Target, len: usize) -> Result<(), String> {
    let mut sock = connect(server).map_err(|e| format!("connect {server}: {e}"))?;
    let mut codec = Codec::new(method, PASSWORD);
    let payload = data(fresh_seed(), len);
    let (head, tail) = payload.split_at(len.min(1000));
    let first = first_packet(&mut codec, target, head);
    sock.write_all(&first)
        .map_err(|e| format!("first write: {e}"))?;
    if !tail.is_empty() {
        let rest = codec.seal(tail);
        sock.write_all(&rest)
            .map_err(|e| format!("second write: {e}"))?;
    }
    let back = codec.recv_exact(&mut sock, len)?;
    if back != payload {
        return Err(format!("the echo of {len} bytes differs"));
    }
    Ok(())
}

/// One UDP request datagram: `salt | seal(address | payload)`.
fn udp_packet(method: &str, password: &str, target: &Target, payload: &[u8]) -> Vec<u8> {
    let (m, key) = method_key(method, password);
    let salt = data(fresh_seed(), m.salt_len());
    let mut plain = target.encode();
    plain.extend_from_slice(payload);
    let mut packet = vec![0u8; udp::overhead(m) + plain.len()];
    packet[m.salt_len()..m.salt_len() + plain.len()].copy_from_slice(&plain);
    udp::seal(m, &key, &salt, &mut packet).expect("room for salt and tag");
    packet
}

/// Opens a reply datagram: (address it names, payload).
fn udp_open(method: &str, packet: &mut [u8]) -> Result<(Target, Vec<u8>), String> {
    let (m, key) = method_key(method, PASSWORD);
    let plain = udp::open(m, &key, packet).map_err(|e| format!("reply does not open: {e:?}"))?;
    let (t, used) =
        Target::decode(&packet[plain.clone()]).map_err(|e| format!("reply address: {e}"))?;
    Ok((t, packet[plain.start + used..plain.end].to_vec()))
}

/// Sends `packet` from `sock` to `server` and waits up to `wait` for a reply; `None` if none.
fn udp_exchange(
    sock: &UdpSocket,
    server: SocketAddr,
    packet: &[u8],
    wait: Duration,
) -> io::Result<Option<Vec<u8>>> {
    sock.send_to(packet, server)?;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 70_000];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(deadline - Instant::now() + Duration::from_millis(1)))?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == server => return Ok(Some(buf[..n].to_vec())),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// A correct UDP client straight to the server: sends `payload` for `target` (a UDP echo) until
/// the reply comes, checks it carries `payload` and names the echo's address (`target` itself
/// unless it is a name).
fn codec_udp_echo(server: SocketAddr, method: &str, target: &Target, payload: &[u8]) {
    codec_udp_echo_from(server, method, target, target, payload)
}

fn codec_udp_echo_from(
    server: SocketAddr,
    method: &str,
    target: &Target,
    reply_from: &Target,
    payload: &[u8],
) {
    let sock = UdpSocket::bind(SocketAddr::new(server.ip(), 0)).expect("bind UDP");
    for _ in 0..5 {
        let packet = udp_packet(method, PASSWORD, target, payload);
        let reply = udp_exchange(&sock, server, &packet, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("UDP to {server}: {e}"));
        if let Some(mut reply) = reply {
            let (from, data) = udp_open(method, &mut reply).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&from, reply_from, "the reply names the echo server");
            assert!(data == payload, "UDP echo payload differs");
            return;
        }
    }
    panic!(
        "no UDP reply from {server} for {} bytes to {target:?}",
        payload.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Probe checks

/// What one probe sends.
enum Probe {
    /// These bytes in one write.
    Bytes(Vec<u8>),
    /// These bytes, then 100 random bytes every 500 ms for `secs` seconds.
    Trickle(Vec<u8>, u64),
}

/// Connects to `server`, sends the probe, and checks the probe-resistant answer: nothing back,
/// still open 1 s after the last byte, closed (silently) within the idle timeout + margin.
/// Returns the probe's local port (how the server's log names it).
fn run_probe(server: SocketAddr, probe: Probe, idle: Duration) -> Result<u16, String> {
    let mut s = connect(server).map_err(|e| format!("connect: {e}"))?;
    let port = s.local_addr().unwrap().port();
    let fail = |e: String| format!("probe from port {port}: {e}");
    let (first, trickle) = match probe {
        Probe::Bytes(b) => (b, 0),
        Probe::Trickle(b, secs) => (b, secs),
    };
    s.write_all(&first).map_err(|e| {
        fail(format!(
            "writing {} bytes: {e} (the server stopped reading?)",
            first.len()
        ))
    })?;
    let mut gen = DataGen::new(fresh_seed());
    for _ in 0..trickle * 2 {
        thread::sleep(Duration::from_millis(500));
        let mut more = [0u8; 100];
        gen.fill(&mut more);
        s.write_all(&more)
            .map_err(|e| fail(format!("trickling: {e}")))?;
    }
    expect_silent_open(&mut s, Duration::from_secs(1)).map_err(fail)?;
    expect_closed_silently(&mut s, idle + CLOSE_MARGIN).map_err(fail)?;
    Ok(port)
}

/// Records everything a client sends through it to the server (one connection at a time, each
/// connection's client→server bytes kept separately).
struct Recorder {
    port: u16,
    streams: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    fn start(server: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let port = listener.local_addr().unwrap().port();
        let streams = Arc::new(Mutex::new(Vec::new()));
        let kept = streams.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                let Ok(upstream) = connect(server) else {
                    continue;
                };
                let _ = set_timeouts(&client);
                let index = {
                    let mut s = kept.lock().unwrap();
                    s.push(Vec::new());
                    s.len() - 1
                };
                let (mut c_read, mut u_write) = (client.try_clone().unwrap(), upstream);
                let mut u_read = u_write.try_clone().unwrap();
                let mut c_write = client;
                let kept = kept.clone();
                thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        kept.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                        if u_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = u_write.shutdown(std::net::Shutdown::Write);
                });
                thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = u_read.read(&mut buf) {
                        if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Recorder { port, streams }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Every cipher: libev and ss-smol clients, SOCKS5 and tunnel, TCP and UDP

fn check_local(proxy: SocketAddr, echo: &EchoServer, seed: u64, what: &str) {
    let t = Instant::now();
    let s = socks5_connect(proxy, &echo.v4().into())
        .unwrap_or_else(|e| panic!("{what}: SOCKS5 CONNECT: {e}"));
    assert_echo(s, seed, BULK, &format!("{what} bulk"));
    let udp = Socks5Udp::associate(proxy).unwrap_or_else(|e| panic!("{what}: UDP ASSOCIATE: {e}"));
    for (i, size) in UDP_SIZES.into_iter().enumerate() {
        let payload = data(seed + 10 + i as u64, size);
        let from = udp
            .echo(&echo.v4().into(), &payload, 5)
            .unwrap_or_else(|e| panic!("{what} UDP: {e}"));
        assert_eq!(from, Target::Ip(echo.v4()), "{what}: reply names the echo");
    }
    eprintln!("{what}: bulk + UDP {:?}", t.elapsed());
}

fn check_tunnel(fwd: SocketAddr, seed: u64, what: &str) {
    let t = Instant::now();
    let s = connect(fwd).unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    assert_echo(s, seed, BULK, &format!("{what} bulk"));
    for (i, size) in UDP_SIZES.into_iter().enumerate() {
        let payload = data(seed + 10 + i as u64, size);
        udp_echo_direct(fwd, &payload, 5).unwrap_or_else(|e| panic!("{what} UDP: {e}"));
    }
    eprintln!("{what}: bulk + UDP {:?}", t.elapsed());
}

/// Opens `n` SOCKS5 connections through `proxy` at once and echoes PER_CONN bytes on each.
fn concurrent(proxy: SocketAddr, target: SocketAddr, n: usize, seed: u64) {
    let barrier = std::sync::Barrier::new(n);
    thread::scope(|scope| {
        for i in 0..n {
            let barrier = &barrier;
            scope.spawn(move || {
                let s = socks5_connect(proxy, &target.into())
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                barrier.wait();
                assert_echo(
                    s,
                    seed + i as u64 * 7919,
                    PER_CONN,
                    &format!("connection {i}"),
                );
            });
        }
    });
}

fn cipher_suite(method: &str) {
    if !require_tools(&["ss-local", "ss-tunnel"]) {
        return;
    }
    let _watchdog = Watchdog::new(&format!("server suite {method}"), Duration::from_secs(300));
    let echo = EchoServer::start();
    let mut server = SmolServer::start(method, &["-t", "60", "--allow-private-targets"]);
    let seed = method.len() as u64 * 1000;
    let to = echo.v4().to_string();

    for (k, imp) in [Client::Libev, Client::Smol].into_iter().enumerate() {
        let seed = seed + k as u64 * 100;
        let mut l = local(imp, &server);
        check_local(l.addr(), &echo, seed, &format!("{method}: {imp:?} local"));
        let mut t = tunnel(imp, &server, &to);
        check_tunnel(t.addr(), seed + 50, &format!("{method}: {imp:?} tunnel"));
        l.proc.assert_running();
        t.proc.assert_running();
    }

    // Many connections at once, through ss-smol local.
    let l = local(Client::Smol, &server);
    let t = Instant::now();
    concurrent(l.addr(), echo.v4(), CONNS, seed + 7);
    eprintln!("{method}: {CONNS} concurrent {:?}", t.elapsed());

    // And the codec client straight to the server, TCP and UDP.
    codec_echo(server.addr(), method, &echo.v4().into(), 100_000)
        .unwrap_or_else(|e| panic!("{method}: codec client: {e}"));
    codec_udp_echo(server.addr(), method, &echo.v4().into(), b"direct");

    server.assert_healthy();
    let err = server.proc.stderr();
    let warns = warn_lines(&err);
    assert!(
        warns.is_empty(),
        "{method}: the server warned about routine traffic:\n{}",
        warns.join("\n")
    );
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-local, ss-tunnel); bash tests/run-all.sh runs it"]
fn every_client_chacha20_ietf_poly1305() {
    cipher_suite("chacha20-ietf-poly1305");
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-local, ss-tunnel); bash tests/run-all.sh runs it"]
fn every_client_aes_128_gcm() {
    cipher_suite("aes-128-gcm");
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-local, ss-tunnel); bash tests/run-all.sh runs it"]
fn every_client_aes_192_gcm() {
    cipher_suite("aes-192-gcm");
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-local, ss-tunnel); bash tests/run-all.sh runs it"]
fn every_client_aes_256_gcm() {
    cipher_suite("aes-256-gcm");
}

#[test]
#[ignore = "needs shadowsocks-libev (ss-local, ss-tunnel); bash tests/run-all.sh runs it"]
fn every_client_xchacha20_ietf_poly1305() {
    cipher_suite("xchacha20-ietf-poly1305");
}

// ---------------------------------------------------------------------------------------------
// 1b. Half-close and the shapes of a first request

/// Reads from `sock` through `codec` until a clean EOF; returns the plaintext.
fn recv_to_eof(codec: &mut Codec, sock: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match sock.read(&mut buf) {
            Ok(0) if codec.wire.is_empty() && codec.dec.at_boundary() => {
                return Ok(std::mem::take(&mut codec.plain))
            }
            Ok(0) => {
                return Err(format!(
                    "EOF inside a chunk after {} plaintext bytes",
                    codec.plain.len()
                ))
            }
            Ok(n) => codec.feed(&buf[..n])?,
            Err(e) => {
                return Err(format!(
                    "reading after {} plaintext bytes: {e}",
                    codec.plain.len()
                ))
            }
        }
    }
}

#[test]
fn half_close_is_relayed_both_ways() {
    const LEN: usize = 1024 * 1024 + 3;
    let _watchdog = Watchdog::new("half close", Duration::from_secs(60));
    let echo = EchoServer::start();
    let method = "aes-256-gcm";
    let mut server = SmolServer::start(method, &["-t", "60", "--allow-private-targets"]);

    // The client half-closes first: everything in flight still comes back, then EOF.
    let mut sock = connect(server.addr()).unwrap();
    let mut codec = Codec::new(method, PASSWORD);
    let payload = data(800, LEN);
    let mut wire = first_packet(&mut codec, &echo.v4().into(), &payload[..100]);
    wire.extend_from_slice(&codec.seal(&payload[100..]));
    let mut writer = sock.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&wire)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let back = recv_to_eof(&mut codec, &mut sock)
        .unwrap_or_else(|e| panic!("after the client's FIN: {e}"));
    sender.join().unwrap().expect("sending, then FIN");
    assert_eq!(back.len(), LEN, "bytes echoed after the client's FIN");
    assert!(back == payload, "echo after the client's FIN differs");

    // The target half-closes first: its FIN reaches the client, which can still send.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    let banner = data(801, 64 * 1024);
    let (tx, rx) = std::sync::mpsc::channel();
    let sent_banner = banner.clone();
    thread::spawn(move || {
        let result = (|| -> io::Result<(usize, String)> {
            let (mut c, _) = target.accept()?;
            set_timeouts(&c)?;
            c.write_all(&sent_banner)?;
            c.shutdown(std::net::Shutdown::Write)?;
            let mut got = Vec::new();
            c.read_to_end(&mut got)?;
            Ok((got.len(), sha1_hex(&got)))
        })();
        let _ = tx.send(result.map_err(|e| e.to_string()));
    });
    let mut sock = connect(server.addr()).unwrap();
    let mut codec = Codec::new(method, PASSWORD);
    sock.write_all(&first_packet(&mut codec, &target_addr.into(), b""))
        .unwrap();
    let got = recv_to_eof(&mut codec, &mut sock)
        .unwrap_or_else(|e| panic!("reading up to the target's FIN: {e}"));
    assert!(got == banner, "what the target sent before its FIN");
    let upload = data(802, LEN);
    let sealed = codec.seal(&upload);
    sock.write_all(&sealed)
        .expect("sending after the target's FIN");
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    let (n, hash) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the target did not finish")
        .unwrap_or_else(|e| panic!("target: {e}"));
    assert_eq!(n, LEN, "bytes the target got after its own FIN");
    assert_eq!(hash, sha1_hex(&upload));
    server.assert_healthy();
}

#[test]
fn first_request_in_pieces_or_with_a_large_payload() {
    let _watchdog = Watchdog::new("first request shapes", Duration::from_secs(60));
    let echo = EchoServer::start();
    let method = "xchacha20-ietf-poly1305";
    let mut server = SmolServer::start(method, &["-t", "60", "--allow-private-targets"]);

    // Salt, length, address and payload one byte per write.
    let mut sock = connect(server.addr()).unwrap();
    let mut codec = Codec::new(method, PASSWORD);
    let first = first_packet(&mut codec, &echo.v4().into(), b"one byte at a time");
    for b in &first {
        sock.write_all(std::slice::from_ref(b)).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    let back = codec
        .recv_exact(&mut sock, 18)
        .unwrap_or_else(|e| panic!("request sent byte by byte: {e}"));
    assert_eq!(back, b"one byte at a time");

    // A first write far larger than a relay buffer: address + 300 KB in many chunks.
    let mut sock = connect(server.addr()).unwrap();
    let mut codec = Codec::new(method, PASSWORD);
    let payload = data(810, 300_000);
    let first = first_packet(&mut codec, &echo.v4().into(), &payload);
    let mut writer = sock.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&first));
    let back = codec
        .recv_exact(&mut sock, payload.len())
        .unwrap_or_else(|e| panic!("large first write: {e}"));
    sender.join().unwrap().expect("large first write");
    assert!(back == payload, "echo of a large first write differs");

    server.assert_healthy();
    let err = server.proc.stderr();
    assert!(warn_lines(&err).is_empty(), "warnings:\n{err}");
}

// ---------------------------------------------------------------------------------------------
// 2. Domain targets through dnsmasq

#[test]
#[ignore = "needs dnsmasq and shadowsocks-libev (ss-local); bash tests/run-all.sh runs it"]
fn domain_targets_resolve_through_the_nameserver() {
    if !require_tools(&["ss-local"]) {
        return;
    }
    let _watchdog = Watchdog::new("domain targets", Duration::from_secs(120));
    let Some((dnsmasq, dns_port)) = start_dnsmasq() else {
        return;
    };
    let echo = EchoServer::start();
    let ns = format!("127.0.0.1:{dns_port}");
    let method = "aes-256-gcm";
    let mut server = SmolServer::start(method, &["-t", "60", "--allow-private-targets", "-d", &ns]);
    let name = Target::Domain("echo.test".into(), echo.port);

    // SOCKS5 CONNECT and UDP to the name, through both clients.
    for (k, imp) in [Client::Smol, Client::Libev].into_iter().enumerate() {
        let l = local(imp, &server);
        let s = socks5_connect(l.addr(), &name)
            .unwrap_or_else(|e| panic!("{imp:?} local: CONNECT echo.test: {e}"));
        assert_echo(
            s,
            300 + k as u64,
            1024 * 1024,
            &format!("{imp:?} echo.test"),
        );
        let udp = Socks5Udp::associate(l.addr()).expect("UDP ASSOCIATE");
        for size in UDP_SIZES {
            let from = udp
                .echo(&name, &data(310 + size as u64, size), 5)
                .unwrap_or_else(|e| panic!("{imp:?} local: UDP to echo.test: {e}"));
            assert_eq!(
                from,
                Target::Ip(echo.v4()),
                "the reply names the resolved address"
            );
        }
    }

    // A tunnel whose -L is a name: the server resolves it.
    let t = tunnel(Client::Smol, &server, &format!("echo.test:{}", echo.port));
    assert_echo(
        connect(t.addr()).unwrap(),
        320,
        1024 * 1024,
        "tunnel to echo.test",
    );
    udp_echo_direct(t.addr(), b"via a name", 5).expect("tunnel UDP to echo.test");

    // The codec client, straight.
    codec_echo(server.addr(), method, &name, 50_000).expect("codec client to echo.test");
    // The UDP reply names the address the datagram came from, not the name.
    codec_udp_echo_from(server.addr(), method, &name, &echo.v4().into(), b"named");

    // A name the nameserver does not know: the connection is closed, nothing relayed.
    let accepted = echo.accepted();
    let mut s = connect(server.addr()).unwrap();
    let mut codec = Codec::new(method, PASSWORD);
    let nx = Target::Domain("nx.test".into(), echo.port);
    s.write_all(&first_packet(&mut codec, &nx, b"hello"))
        .unwrap();
    expect_closed_silently(&mut s, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("CONNECT nx.test: {e}"));
    assert_eq!(echo.accepted(), accepted, "nx.test reached the echo server");
    assert!(
        server
            .proc
            .wait_for_stderr("nx.test", Duration::from_secs(5)),
        "no log line about nx.test"
    );

    // The queries went to dnsmasq (and not, say, to /etc/hosts only).
    assert!(
        dnsmasq.wait_for_stderr("echo.test", Duration::from_secs(5)),
        "dnsmasq saw no query for echo.test; its log:\n{}",
        dnsmasq.stderr()
    );
    server.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// 3. Private targets are refused by default

#[test]
#[ignore = "needs dnsmasq; bash tests/run-all.sh runs it"]
fn private_targets_are_refused_by_default() {
    let _watchdog = Watchdog::new("private targets", Duration::from_secs(120));
    let Some((_dnsmasq, dns_port)) = start_dnsmasq() else {
        return;
    };
    let echo = EchoServer::start();
    let ns = format!("127.0.0.1:{dns_port}");
    let method = "chacha20-ietf-poly1305";
    // Idle timeout far longer than the test waits: a close is the refusal, not a timeout.
    let mut server = SmolServer::start(method, &["-t", "60", "-d", &ns]);
    let l = local(Client::Smol, &server);

    let ip = |s: &str| Target::Ip(SocketAddr::new(s.parse().unwrap(), echo.port));
    let name = |s: &str| Target::Domain(s.into(), echo.port);
    // Every one of these reaches the echo server if connected to.
    let targets = [
        ip("127.0.0.1"),
        ip("::1"),
        ip("::ffff:127.0.0.1"),
        ip("0.0.0.0"),
        ip("::"),
        name("echo.test"),
        name("mapped.test"),
        name("zero.test"),
    ];
    let mut failures = Vec::new();
    for target in &targets {
        let mark = server.proc.stderr_mark();
        // Through ss-smol local: the CONNECT may be answered, but nothing comes back and the
        // connection closes.
        if let Ok(mut s) = socks5_connect(l.addr(), target) {
            let _ = s.write_all(b"hello?");
            if let Err(e) = expect_closed_silently(&mut s, Duration::from_secs(20)) {
                failures.push(format!("CONNECT {target:?} via ss-smol local: {e}"));
            }
        }
        // Straight from the codec client: closed, nothing sent back.
        let mut s = connect(server.addr()).unwrap();
        let mut codec = Codec::new(method, PASSWORD);
        s.write_all(&first_packet(&mut codec, target, b"hello?"))
            .unwrap();
        if let Err(e) = expect_closed_silently(&mut s, Duration::from_secs(20)) {
            failures.push(format!("CONNECT {target:?} direct: {e}"));
        }
        // One log line saying why, per connection.
        let deadline = Instant::now() + Duration::from_secs(5);
        let lines = loop {
            let since = server.proc.stderr_since(mark);
            let n = since.lines().filter(|l| l.contains("private")).count();
            if n >= 2 || Instant::now() > deadline {
                break n;
            }
            thread::sleep(Duration::from_millis(20));
        };
        if lines < 2 {
            failures.push(format!(
                "CONNECT {target:?}: {lines} log lines with \"private\" for 2 refusals"
            ));
        }
    }

    // UDP to the same targets: dropped.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for target in &targets {
        let packet = udp_packet(method, PASSWORD, target, b"udp hello?");
        let reply = udp_exchange(&sock, server.addr(), &packet, Duration::from_secs(1)).unwrap();
        if reply.is_some() {
            failures.push(format!("UDP to {target:?} got a reply"));
        }
    }

    let err = server.proc.stderr();
    assert!(
        failures.is_empty(),
        "private targets:\n{}\nserver log:\n{err}",
        failures.join("\n")
    );
    assert_eq!(echo.accepted(), 0, "a refused target was connected to");
    server.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// 4. Probe resistance

fn probe_suite(method: &str) {
    let _watchdog = Watchdog::new(&format!("probes {method}"), Duration::from_secs(120));
    let echo = EchoServer::start();
    let idle = Duration::from_secs(PROBE_IDLE);
    let mut server = SmolServer::start(
        method,
        &["-t", &PROBE_IDLE.to_string(), "--allow-private-targets"],
    );
    let addr = server.addr();
    let salt = salt_len(method);
    let target: Target = echo.v4().into();
    let mut legit = 0; // connections that should reach the echo server

    // A replay of the codec client's first write, after the original went through.
    let mut codec = Codec::new(method, PASSWORD);
    let recorded_first = first_packet(&mut codec, &target, b"replay me");
    let mut original = connect(addr).unwrap();
    original.write_all(&recorded_first).unwrap();
    let back = codec
        .recv_exact(&mut original, 9)
        .unwrap_or_else(|e| panic!("the original connection: {e}"));
    assert_eq!(back, b"replay me");
    legit += 1;

    // A replay of everything ss-smol local sent on a whole connection.
    let recorder = Recorder::start(addr);
    let via = start_client_to(
        Client::Smol,
        "local",
        "127.0.0.1",
        recorder.port,
        method,
        &[],
    );
    let s = socks5_connect(via.addr(), &target).expect("CONNECT via the recorder");
    assert_echo(s, 400, 64 * 1024, "recorded connection");
    legit += 1;
    let recorded_stream = {
        let streams = recorder.streams.lock().unwrap();
        assert_eq!(streams.len(), 1, "connections through the recorder");
        streams[0].clone()
    };
    drop(via);

    // (probe, what its WARN line must say, or None if it cannot fail authentication)
    let mut rng = DataGen::new(fresh_seed());
    let mut random = |n: usize| {
        let mut v = vec![0u8; n];
        rng.fill(&mut v);
        v
    };
    let mut wrong = Codec::new(method, "not-the-password");
    let probes: Vec<(String, Probe, Option<&str>)> = vec![
        // Too short to authenticate anything (salt + sealed length need salt + 18 bytes): a
        // failure once the handshake deadline (here the idle timeout) passes.
        (
            "random 1 byte".into(),
            Probe::Bytes(random(1)),
            Some("no complete first chunk"),
        ),
        (
            format!("random {} bytes", salt + 17),
            Probe::Bytes(random(salt + 17)),
            Some("no complete first chunk"),
        ),
        ("random 50 bytes".into(), Probe::Bytes(random(50)), Some("")),
        (
            "random 100 bytes".into(),
            Probe::Bytes(random(100)),
            Some(""),
        ),
        (
            "random 1000 bytes".into(),
            Probe::Bytes(random(1000)),
            Some(""),
        ),
        (
            "random 8 MiB (the server must keep reading)".into(),
            Probe::Bytes(random(8 << 20)),
            Some(""),
        ),
        (
            "random 100 bytes then a trickle longer than the timeout".into(),
            Probe::Trickle(random(100), PROBE_IDLE + 2),
            Some(""),
        ),
        (
            "wrong key".into(),
            Probe::Bytes(first_packet(&mut wrong, &target, b"GET / HTTP/1.1\r\n\r\n")),
            Some("authentication failed"),
        ),
        (
            "replayed first write".into(),
            Probe::Bytes(recorded_first.clone()),
            Some("replay"),
        ),
        (
            "replayed ss-smol local connection".into(),
            Probe::Bytes(recorded_stream),
            Some("replay"),
        ),
    ];

    // All probes at once, and a correct client meanwhile.
    let results: Vec<(String, Option<&str>, Result<u16, String>)> = thread::scope(|scope| {
        let handles: Vec<_> = probes
            .into_iter()
            .map(|(what, probe, warn)| {
                let h = scope.spawn(move || run_probe(addr, probe, idle));
                (what, warn, h)
            })
            .collect();
        thread::sleep(Duration::from_millis(500));
        for _ in 0..3 {
            codec_echo(addr, method, &target, 200_000)
                .unwrap_or_else(|e| panic!("correct client while probes are held: {e}"));
            thread::sleep(Duration::from_millis(400));
        }
        handles
            .into_iter()
            .map(|(what, warn, h)| (what, warn, h.join().expect("probe thread")))
            .collect()
    });
    legit += 3;
    drop(original);

    let err = server.proc.stderr();
    let warns = warn_lines(&err);
    let mut failures = Vec::new();
    let mut expected_warns = 0;
    for (what, warn, result) in &results {
        match result {
            Err(e) => failures.push(format!("{what}: {e}")),
            Ok(port) => {
                let tag = peer_tag(*port);
                let mine: Vec<&&str> = warns.iter().filter(|l| l.contains(&tag)).collect();
                match warn {
                    Some(word) => {
                        expected_warns += 1;
                        if mine.len() != 1 || !mine[0].contains(word) {
                            failures.push(format!(
                                "{what}: expected one WARN line naming {tag:?} and saying \
                                 {word:?}, got {mine:?}"
                            ));
                        }
                    }
                    None => eprintln!("{what}: held and closed; log lines: {mine:?}"),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{method}: probes:\n{}\nserver log:\n{err}",
        failures.join("\n")
    );
    assert_eq!(
        warns.len(),
        expected_warns,
        "{method}: WARN lines other than one per failed probe:\n{}",
        warns.join("\n")
    );
    assert_eq!(
        echo.accepted(),
        legit,
        "{method}: connections that reached the echo server (a replay got through?)"
    );
    server.assert_healthy();
}

#[test]
fn probes_get_silence_then_idle_close_chacha20() {
    probe_suite("chacha20-ietf-poly1305");
}

#[test]
fn probes_get_silence_then_idle_close_aes_128_gcm() {
    probe_suite("aes-128-gcm");
}

// ---------------------------------------------------------------------------------------------
// 4b. Connections that wait (for a first chunk, for a lookup) and everyone else

/// Runs `f` on a thread; `Err` if it fails or takes longer than `limit`.
fn within(
    limit: Duration,
    f: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<Duration, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = Instant::now();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(())) => Ok(t.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// Connections that send the start of a first chunk and then nothing must not keep correct
/// clients waiting: each may cost the server a socket until it times out, but relaying for
/// everyone else goes on.
#[test]
fn incomplete_first_chunks_do_not_starve_correct_clients() {
    // More than the default --pool-blocks (64).
    const STALLED: usize = 100;
    let limit = Duration::from_secs(5);
    let _watchdog = Watchdog::new("stalled first chunks", Duration::from_secs(90));
    let echo = EchoServer::start();
    let method = "chacha20-ietf-poly1305";
    let mut server = SmolServer::start(method, &["-t", "20", "--allow-private-targets"]);
    let addr = server.addr();
    let target: Target = echo.v4().into();
    let salt = salt_len(method);

    // A correct connection, established before the stalls.
    let mut established = connect(addr).unwrap();
    let mut codec = Codec::new(method, PASSWORD);
    established
        .write_all(&first_packet(&mut codec, &target, b"before"))
        .unwrap();
    assert_eq!(codec.recv_exact(&mut established, 6).unwrap(), b"before");

    let mut stalled = Vec::new();
    let mut gen = DataGen::new(fresh_seed());
    for i in 0..STALLED {
        let mut s = connect(addr).unwrap();
        // Half of them random bytes, half a correct salt and all but the last byte of a
        // correct first chunk: either way too little to decide anything.
        let bytes = if i % 2 == 0 {
            let mut v = vec![0u8; 1 + i % salt];
            gen.fill(&mut v);
            v
        } else {
            let mut c = Codec::new(method, PASSWORD);
            let mut first = first_packet(&mut c, &target, b"never finished");
            first.truncate(first.len() - 1);
            first
        };
        s.write_all(&bytes).unwrap();
        stalled.push(s);
    }
    thread::sleep(Duration::from_millis(500));
    server.proc.assert_running();

    let mut failures = Vec::new();
    // The established connection keeps relaying.
    let more = data(820, 50_000);
    let check = more.clone();
    let mut est = established.try_clone().unwrap();
    let sealed = codec.seal(&more);
    let r = within(limit, move || {
        est.write_all(&sealed).map_err(|e| e.to_string())?;
        let back = codec.recv_exact(&mut est, check.len())?;
        (back == check).then_some(()).ok_or("echo differs".into())
    });
    match r {
        Ok(t) => eprintln!("established connection served in {t:?}"),
        Err(e) => failures.push(format!("the connection established before: {e}")),
    }
    // A new correct client is served.
    match within(limit, move || codec_echo(addr, method, &target, 100_000)) {
        Ok(t) => eprintln!("new correct client served in {t:?}"),
        Err(e) => failures.push(format!("a new correct client: {e}")),
    }
    // UDP is relayed.
    let udp_target = echo.v4().into();
    match within(limit, move || {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let packet = udp_packet(method, PASSWORD, &udp_target, b"udp");
        udp_exchange(&sock, addr, &packet, Duration::from_secs(4))
            .map_err(|e| e.to_string())?
            .map(|_| ())
            .ok_or_else(|| "no UDP reply".to_string())
    }) {
        Ok(t) => eprintln!("UDP served in {t:?}"),
        Err(e) => failures.push(format!("a correct UDP datagram: {e}")),
    }
    assert!(
        failures.is_empty(),
        "with {STALLED} connections sitting on incomplete first chunks (server -t 20, default \
         --pool-blocks 64):\n{}",
        failures.join("\n")
    );
    for s in &mut stalled {
        expect_silent_open(s, Duration::from_millis(1)).expect("stalled probes are still held");
    }
    server.assert_healthy();
}

/// Authenticated connections whose target name takes long to resolve (a nameserver that never
/// answers) must not keep other clients waiting either.
#[test]
fn slow_target_lookups_do_not_starve_other_clients() {
    const SLOW: usize = 100;
    let _watchdog = Watchdog::new("slow lookups", Duration::from_secs(90));
    // A "nameserver" that reads queries and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ns = silent.local_addr().unwrap().to_string();
    let echo = EchoServer::start();
    let method = "chacha20-ietf-poly1305";
    let mut server = SmolServer::start(method, &["-t", "30", "--allow-private-targets", "-d", &ns]);
    let addr = server.addr();
    let mut waiting = Vec::new();
    for i in 0..SLOW {
        let mut s = connect(addr).unwrap();
        let mut codec = Codec::new(method, PASSWORD);
        let name = Target::Domain(format!("host{i}.slow.test"), echo.port);
        s.write_all(&first_packet(&mut codec, &name, b"GET / HTTP/1.1\r\n\r\n"))
            .unwrap();
        waiting.push(s);
    }
    thread::sleep(Duration::from_millis(300));
    // A lookup gives up after 2 rounds of 2 s; a client that needs no lookup must not wait
    // for that.
    let target: Target = echo.v4().into();
    let r = within(Duration::from_millis(2500), move || {
        codec_echo(addr, method, &target, 10_000)
    });
    match r {
        Ok(t) => eprintln!("served in {t:?} beside {SLOW} slow lookups"),
        Err(e) => panic!(
            "a correct client to an IP target beside {SLOW} connections waiting on a silent \
             nameserver: {e}"
        ),
    }
    drop(waiting);
    drop(silent);
    server.assert_healthy();
}

/// Connections to `Domain(hostI.slow.test)` for I in `range`, each sent its whole first chunk.
fn connect_to_slow_names(
    addr: SocketAddr,
    method: &str,
    range: std::ops::Range<usize>,
) -> Vec<TcpStream> {
    range
        .map(|i| {
            let mut s = connect(addr).unwrap();
            let mut codec = Codec::new(method, PASSWORD);
            let name = Target::Domain(format!("host{i}.slow.test"), 9);
            s.write_all(&first_packet(&mut codec, &name, b"x")).unwrap();
            s
        })
        .collect()
}

/// Waits on every connection for the server to close it; returns the seconds each took from
/// `since`, or the first that did not close by `deadline`.
fn close_times(
    conns: Vec<TcpStream>,
    since: Instant,
    deadline: Instant,
) -> Result<Vec<f32>, String> {
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            thread::spawn(move || {
                let left = deadline.saturating_duration_since(Instant::now());
                expect_closed_silently(&mut s, left).map(|_| since.elapsed().as_secs_f32())
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        match h.join().unwrap() {
            Ok(t) => times.push(t),
            Err(e) => errors.push(e),
        }
    }
    times.sort_by(f32::total_cmp);
    if errors.is_empty() {
        Ok(times)
    } else {
        Err(format!(
            "{} of {} not closed in time ({}); the others closed after {times:.1?} s",
            errors.len(),
            errors.len() + times.len(),
            errors[0]
        ))
    }
}

/// Linux (x86, ARM) signal numbers, to pause the server: whatever happens to its sockets and
/// timers meanwhile is handled in one go when it resumes, as on a busy router.
const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;

/// Pauses `server` for `secs` seconds.
fn pause(server: &mut SmolServer, secs: f32) {
    server.proc.signal(SIGSTOP);
    thread::sleep(Duration::from_secs_f32(secs));
    server.proc.signal(SIGCONT);
}

/// ss-server with `pool_blocks` relay buffers whose nameserver is a UDP socket that never
/// answers (returned: keep it alive for as long as the test needs lookups to hang).
fn server_with_silent_nameserver(method: &str, pool_blocks: usize) -> (UdpSocket, SmolServer) {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ns = silent.local_addr().unwrap().to_string();
    let blocks = pool_blocks.to_string();
    let server = SmolServer::start(
        method,
        &[
            "-t",
            "60",
            "--allow-private-targets",
            "-d",
            &ns,
            "--pool-blocks",
            &blocks,
        ],
    );
    (silent, server)
}

/// Lookups that fail (a nameserver that never answers: 2 rounds of 2 s, each query holding one
/// of the resolver's 64 query slots throughout) free their slots together; then every lookup
/// waiting for a slot must get one, not one waiter after another.
#[test]
fn failed_lookups_beyond_the_query_limit_finish_together() {
    let _watchdog = Watchdog::new("lookups beyond the limit", Duration::from_secs(90));
    let method = "chacha20-ietf-poly1305";
    // A pool far larger than needed: relay buffers play no part here.
    let (_silent, mut server) = server_with_silent_nameserver(method, 1000);
    // 40 lookups, 80 queries: 64 get slots, 16 wait.
    let conns = connect_to_slow_names(server.addr(), method, 0..40);
    thread::sleep(Duration::from_millis(500));
    // Pausing the server across the end of each round makes all 64 timeouts of the round
    // fire at once (the first pause lines the second round up).
    pause(&mut server, 2.5);
    thread::sleep(Duration::from_millis(300));
    pause(&mut server, 2.5);
    // The 64 slots are free now: the 16 waiting queries run side by side, fail within 4 s.
    let freed = Instant::now();
    match close_times(conns, freed, freed + Duration::from_secs(8)) {
        Ok(t) => eprintln!("40 failed lookups closed after {t:.1?} s"),
        Err(e) => panic!(
            "after 64 query slots came free at once, the 8 lookups (16 queries) waiting for \
             slots should all fail ~4 s later (2 rounds × 2 s): {e}"
        ),
    }
    server.assert_healthy();
}

/// When several relay buffers come back at once, every connection waiting for one gets one:
/// the pool must not wake its waiters one at a time.
#[test]
fn pool_waiters_all_wake_when_blocks_return() {
    let _watchdog = Watchdog::new("pool waiters", Duration::from_secs(90));
    let method = "chacha20-ietf-poly1305";
    let (_silent, mut server) = server_with_silent_nameserver(method, 4);
    let addr = server.addr();
    // Four connections that each hold a block (an incomplete first chunk)…
    let mut holders = Vec::new();
    for _ in 0..4 {
        let mut s = connect(addr).unwrap();
        s.write_all(b"x").unwrap();
        holders.push(s);
    }
    thread::sleep(Duration::from_millis(300));
    // …four authenticated connections waiting for a block, whose lookups will take 4 s…
    let waiters = connect_to_slow_names(addr, method, 0..4);
    thread::sleep(Duration::from_millis(300));
    // …and the four blocks coming back at once (the server paused while the holders close):
    // all four lookups run side by side.
    server.proc.signal(SIGSTOP);
    drop(holders);
    thread::sleep(Duration::from_millis(300));
    let released = Instant::now();
    server.proc.signal(SIGCONT);
    match close_times(waiters, released, released + Duration::from_secs(7)) {
        Ok(t) => eprintln!("waiters closed after {t:.1?} s"),
        Err(e) => panic!(
            "4 connections waiting for the 4 blocks released together (each then holds its \
             block through a 4 s failing lookup) should all close ~4 s later: {e}"
        ),
    }
    server.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// 5. Bans

#[test]
fn repeated_failures_ban_the_source_for_a_while() {
    const BAN_TIME: u64 = 3;
    let _watchdog = Watchdog::new("ban", Duration::from_secs(120));
    let echo = EchoServer::start();
    let method = "chacha20-ietf-poly1305";
    let mut server = SmolServer::start(
        method,
        &[
            // Longer than the checks below wait: a quick close is the ban, not the timeout.
            "-t",
            "6",
            "--allow-private-targets",
            "--ban-failures",
            "3",
            "--ban-window",
            "30",
            "--ban-time",
            &BAN_TIME.to_string(),
        ],
    );
    let addr = server.addr();
    let target: Target = echo.v4().into();
    codec_echo(addr, method, &target, 10_000).expect("a correct client before any failure");

    // Three failed authentications; each is held open (silently) meanwhile.
    let mut held = Vec::new();
    for i in 0..3u64 {
        let mut s = connect(addr).unwrap();
        let port = s.local_addr().unwrap().port();
        s.write_all(&data(fresh_seed() ^ i, 100)).unwrap();
        assert!(
            server
                .proc
                .wait_for_stderr(&peer_tag(port), Duration::from_secs(10)),
            "no log line for failed authentication {i}"
        );
        held.push(s);
    }
    let needle = "too many failed authentications";
    assert!(
        server.proc.wait_for_stderr(needle, Duration::from_secs(5)),
        "no ban after 3 failures; log:\n{}",
        server.proc.stderr()
    );
    let banned_at = Instant::now();
    let err = server.proc.stderr();
    let line = err.lines().find(|l| l.contains(needle)).unwrap();
    assert!(
        line.contains(" WARN: ") && line.contains("127.0.0.1") && line.contains("closed at once"),
        "the ban line should be a WARN naming 127.0.0.1 and saying its failures are closed at \
         once: {line:?}"
    );
    for s in &mut held {
        expect_silent_open(s, Duration::from_millis(1)).expect("held probes stay open");
    }

    // Banned: a failure is closed at once instead of held.
    let quick = Duration::from_secs(1);
    let hint = |checked: Duration| {
        if checked >= Duration::from_secs(BAN_TIME) {
            " (but the ban had already run out: inconclusive, machine too slow)"
        } else {
            ""
        }
    };
    let mut s = connect(addr).expect("a banned source still gets accepted");
    s.write_all(&data(fresh_seed(), 100)).unwrap();
    expect_closed_silently(&mut s, quick).unwrap_or_else(|e| {
        panic!(
            "a failed authentication while banned: {e}{}",
            hint(banned_at.elapsed())
        )
    });
    // A correct client from the banned address (one behind the same NAT) still gets through.
    codec_echo(addr, method, &target, 10_000)
        .expect("a correct client while its address is banned");
    assert_eq!(echo.accepted(), 2, "the correct client was not relayed");

    // The ban ends: failures are held again.
    let deadline = banned_at + Duration::from_secs(BAN_TIME) + Duration::from_secs(10);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut s = connect(addr).unwrap();
        s.write_all(&data(fresh_seed(), 100)).unwrap();
        if expect_silent_open(&mut s, quick).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "failures still closed at once {:?} after the ban began",
                banned_at.elapsed()
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "ban lifted after {:?} ({attempts} attempts)",
        banned_at.elapsed()
    );
    let l = local(Client::Smol, &server);
    let s = socks5_connect(l.addr(), &target).expect("CONNECT after the ban");
    assert_echo(s, 500, 256 * 1024, "ss-smol local after the ban");

    server.assert_healthy();
    let err = server.proc.stderr();
    assert_eq!(err.matches(needle).count(), 1, "ban lines; log:\n{err}");
}

#[test]
fn udp_garbage_does_not_ban() {
    let _watchdog = Watchdog::new("udp garbage", Duration::from_secs(60));
    let echo = EchoServer::start();
    let method = "aes-128-gcm";
    let mut server = SmolServer::start(
        method,
        &[
            "-t",
            "60",
            "--allow-private-targets",
            "--ban-failures",
            "3",
            "--ban-window",
            "60",
            "--ban-time",
            "60",
        ],
    );
    let addr = server.addr();
    let target: Target = echo.v4().into();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut gen = DataGen::new(fresh_seed());
    for i in 0..50 {
        let packet = if i % 2 == 0 {
            let mut v = vec![0u8; gen.range(1, 2000)];
            gen.fill(&mut v);
            v
        } else {
            udp_packet(method, "not-the-password", &target, b"garbage")
        };
        sock.send_to(&packet, addr).unwrap();
    }
    // A correct datagram from the same socket: answered (and, the server being one thread
    // reading one socket in order, only after all the garbage was handled).
    let packet = udp_packet(method, PASSWORD, &target, b"after the garbage");
    let mut reply = udp_exchange(&sock, addr, &packet, Duration::from_secs(5))
        .unwrap()
        .expect("no reply to a correct datagram after the garbage");
    let (from, payload) = udp_open(method, &mut reply).unwrap();
    assert_eq!(from, target);
    assert_eq!(payload, b"after the garbage");
    // Not banned: TCP from the same address still works.
    codec_echo(addr, method, &target, 100_000).expect("TCP after UDP garbage");
    let l = local(Client::Smol, &server);
    let s = socks5_connect(l.addr(), &target).expect("CONNECT after UDP garbage");
    assert_echo(s, 600, 256 * 1024, "ss-smol local after UDP garbage");

    server.assert_healthy();
    let err = server.proc.stderr();
    assert!(
        !err.contains("too many failed"),
        "UDP garbage led to a ban:\n{err}"
    );
}

#[test]
fn udp_replayed_datagram_is_dropped() {
    let _watchdog = Watchdog::new("udp replay", Duration::from_secs(60));
    let echo = EchoServer::start();
    let method = "chacha20-ietf-poly1305";
    let mut server = SmolServer::start(method, &["-t", "60", "--allow-private-targets"]);
    let target: Target = echo.v4().into();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let packet = udp_packet(method, PASSWORD, &target, b"once only");
    let reply = udp_exchange(&sock, server.addr(), &packet, Duration::from_secs(5)).unwrap();
    assert!(reply.is_some(), "no reply to the original datagram");
    let again = udp_exchange(&sock, server.addr(), &packet, Duration::from_secs(2)).unwrap();
    assert!(again.is_none(), "a replayed datagram was relayed");
    // A fresh datagram still goes through.
    codec_udp_echo(server.addr(), method, &target, b"fresh");
    server.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// 6. IPv6 listener

#[test]
#[ignore = "needs shadowsocks-libev (ss-local); bash tests/run-all.sh runs it"]
fn ipv6_listener() {
    if !require_tools(&["ss-local"]) {
        return;
    }
    let _watchdog = Watchdog::new("ipv6 listener", Duration::from_secs(120));
    let echo = EchoServer::start();
    let method = "xchacha20-ietf-poly1305";
    let mut server = SmolServer::start_v6(method, &["-t", "60", "--allow-private-targets"]);
    for (k, imp) in [Client::Smol, Client::Libev].into_iter().enumerate() {
        let seed = 700 + k as u64 * 10;
        let l = local(imp, &server);
        for (i, to) in [echo.v4(), echo.v6()].into_iter().enumerate() {
            let s = socks5_connect(l.addr(), &to.into())
                .unwrap_or_else(|e| panic!("{imp:?} local via [::1]: CONNECT {to}: {e}"));
            assert_echo(
                s,
                seed + i as u64,
                4 << 20,
                &format!("{imp:?} via [::1] to {to}"),
            );
        }
        let udp = Socks5Udp::associate(l.addr()).expect("UDP ASSOCIATE");
        for size in UDP_SIZES {
            udp.echo(&echo.v4().into(), &data(seed + 5, size), 5)
                .unwrap_or_else(|e| panic!("{imp:?} local via [::1]: UDP: {e}"));
        }
    }
    let t = tunnel(Client::Smol, &server, &echo.v4().to_string());
    assert_echo(connect(t.addr()).unwrap(), 790, 1 << 20, "tunnel via [::1]");
    udp_echo_direct(t.addr(), b"tunnel via [::1]", 5).expect("tunnel UDP via [::1]");
    codec_echo(server.addr(), method, &echo.v6().into(), 50_000).expect("codec client on [::1]");
    codec_udp_echo(server.addr(), method, &echo.v4().into(), b"v6 socket");
    server.assert_healthy();
}
