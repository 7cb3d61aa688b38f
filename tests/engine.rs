//! Engine behaviour of the client under test that the libev interop tests cannot see: half-close
//! in both directions, what the first write to the server carries, the `-L` address a tunnel
//! sends, buffer-pool backpressure, the connection cap, and how a broken server stream is
//! reported.
//!
//! Most tests run ss-smol against a tiny fake Shadowsocks *server* built here on the library's
//! sans-IO codec (`ss_smol::proto::tcp`): blocking std sockets with timeouts, one thread per
//! connection. It decodes exactly what ss-smol put on the wire, so the tests can check chunk
//! boundaries, FINs and the target address, and can answer whatever they like.

mod support;

use ss_smol::proto::address::Address;
use ss_smol::proto::cipher::{MasterKey, Method};
use ss_smol::proto::tcp::{Decryptor, Encryptor, HEADER_LEN, MAX_PAYLOAD, OVERHEAD};
use ss_smol::proto::ParseError;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use support::*;

const METHOD: &str = "chacha20-ietf-poly1305";
const LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The fake Shadowsocks server

/// One accepted connection, seen through the AEAD codec.
struct SsStream {
    sock: TcpStream,
    dec: Decryptor,
    enc: Encryptor,
    salt_sent: bool,
    /// Received bytes not decoded yet (a partial element).
    wire: Vec<u8>,
    /// Decoded plaintext not consumed yet.
    plain: Vec<u8>,
    /// Payload length of every chunk decoded so far, in order.
    chunks: Vec<usize>,
    /// Sizes of the chunks `send` produces.
    sizes: DataGen,
}

impl SsStream {
    fn new(sock: TcpStream, method: &str, seed: u64) -> SsStream {
        let (m, key) = method_key(method);
        let salt = data(seed, m.salt_len());
        SsStream {
            sock,
            dec: Decryptor::new(m, &key),
            enc: Encryptor::new(m, &key, &salt),
            salt_sent: false,
            wire: Vec::new(),
            plain: Vec::new(),
            chunks: Vec::new(),
            sizes: DataGen::new(seed ^ 0xC0FFEE),
        }
    }

    /// Appends received bytes and decodes every complete element.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.wire.extend_from_slice(bytes);
        loop {
            match self.dec.decode(&mut self.wire) {
                Ok(step) => {
                    if !step.plain.is_empty() {
                        self.chunks.push(step.plain.len());
                        self.plain.extend_from_slice(&self.wire[step.plain]);
                    }
                    self.wire.drain(..step.consumed);
                }
                Err(ParseError::NeedMore(_)) => return Ok(()),
                Err(e) => return Err(format!("client stream does not decode: {e}")),
            }
        }
    }

    /// One read from the socket, decoded. `Ok(false)` on a clean EOF (at a chunk boundary).
    fn fill(&mut self) -> Result<bool, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = self
            .sock
            .read(&mut buf)
            .map_err(|e| format!("reading the client stream: {e}"))?;
        if n == 0 {
            if !self.wire.is_empty() || !self.dec.at_boundary() {
                return Err(format!(
                    "client stream ended mid-element ({} bytes pending)",
                    self.wire.len()
                ));
            }
            return Ok(false);
        }
        self.feed(&buf[..n])?;
        Ok(true)
    }

    /// Reads until the target address at the start of the plaintext is complete; removes it.
    fn read_address(&mut self) -> Result<Address, String> {
        loop {
            match Address::parse(&self.plain) {
                Ok((addr, used)) => {
                    self.plain.drain(..used);
                    return Ok(addr);
                }
                Err(ParseError::NeedMore(_)) => {}
                Err(e) => return Err(format!("bad target address: {e}")),
            }
            if !self.fill()? {
                return Err(format!(
                    "EOF before a complete address ({} plaintext bytes)",
                    self.plain.len()
                ));
            }
        }
    }

    /// Reads everything up to the client's FIN.
    fn read_to_eof(&mut self) -> Result<Vec<u8>, String> {
        while self.fill()? {}
        Ok(std::mem::take(&mut self.plain))
    }

    /// Seals `data` (the salt first if not sent yet) into chunks of varied sizes and sends it.
    fn send(&mut self, data: &[u8]) -> Result<(), String> {
        let mut out = Vec::with_capacity(data.len() + data.len() / 100 + 64);
        if !self.salt_sent {
            out.extend_from_slice(self.enc.salt());
            self.salt_sent = true;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.sizes.range(1, MAX_PAYLOAD).min(rest.len());
            let mut frame = vec![0u8; n + OVERHEAD];
            frame[HEADER_LEN..HEADER_LEN + n].copy_from_slice(&rest[..n]);
            self.enc.seal_chunk(&mut frame).unwrap();
            out.extend_from_slice(&frame);
            rest = &rest[n..];
        }
        self.sock
            .write_all(&out)
            .map_err(|e| format!("sending {} bytes to the client: {e}", data.len()))
    }

    /// Sends raw bytes, unsealed.
    fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.sock
            .write_all(bytes)
            .map_err(|e| format!("sending raw bytes: {e}"))
    }

    /// Echoes plaintext (whatever is buffered, then everything read) until the client's FIN.
    fn echo_to_eof(&mut self) -> Result<usize, String> {
        let mut total = 0;
        loop {
            if !self.plain.is_empty() {
                let chunk = std::mem::take(&mut self.plain);
                total += chunk.len();
                self.send(&chunk)?;
            }
            if !self.fill()? {
                return Ok(total);
            }
        }
    }

    /// Half-closes, then reads until the client closes as well. `Ok(bytes)` received meanwhile.
    fn finish(mut self) -> Result<usize, String> {
        let _ = self.sock.shutdown(Shutdown::Write);
        read_to_close(&mut self.sock, Duration::from_secs(20))
            .map_err(|e| format!("waiting for the client to close: {e}"))
    }
}

fn method_key(method: &str) -> (Method, MasterKey) {
    let m = Method::from_name(method).expect("known method");
    (m, MasterKey::from_password(m, PASSWORD.as_bytes()))
}

type Handler = dyn Fn(usize, SsStream) -> Result<(), String> + Send + Sync;

/// The fake server: accepts on 127.0.0.1 and runs `handler(index, stream)` on a thread per
/// connection; what a handler returns as an error is kept for [`FakeServer::check`].
struct FakeServer {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(
        method: &str,
        handler: impl Fn(usize, SsStream) -> Result<(), String> + Send + Sync + 'static,
    ) -> FakeServer {
        let handler: Arc<Handler> = Arc::new(handler);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind fake server");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let method = method.to_owned();
        let thread = {
            let (stop, accepted, failures) = (stop.clone(), accepted.clone(), failures.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let i = accepted.fetch_add(1, Ordering::SeqCst);
                    let (handler, failures, method) =
                        (handler.clone(), failures.clone(), method.clone());
                    thread::spawn(move || {
                        let _ = set_timeouts(&conn);
                        let seed = 0x5EED_0000 + i as u64 + port as u64 * 1000;
                        if let Err(e) = handler(i, SsStream::new(conn, &method, seed)) {
                            failures
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("fake server connection {i}: {e}"));
                        }
                    });
                }
            })
        };
        FakeServer {
            port,
            stop,
            accepted,
            failures,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Panics with every handler error so far.
    fn check(&self) {
        let f = self.failures();
        assert!(f.is_empty(), "fake server:\n{}", f.join("\n"));
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

/// The handler most tests want: read the address, echo until FIN, half-close, wait for close.
fn echo_handler(_: usize, mut s: SsStream) -> Result<(), String> {
    s.read_address()?;
    s.echo_to_eof()?;
    s.finish()?;
    Ok(())
}

/// Waits for a report from a fake-server handler; on timeout panics with the handler errors.
fn recv<T>(rx: &mpsc::Receiver<T>, fake: &FakeServer, timeout: Duration, what: &str) -> T {
    rx.recv_timeout(timeout).unwrap_or_else(|e| {
        panic!(
            "{what}: no report from the fake server ({e}); its errors: {:?}",
            fake.failures()
        )
    })
}

fn local_against(fake: &FakeServer, extra: &[&str]) -> ClientProc {
    let mut args = vec!["-t", "60"];
    args.extend_from_slice(extra);
    ClientProc::start("local", fake.port, METHOD, PASSWORD, &args)
}

/// The lines of `log` at WARN level (ss-smol's `YYYY-MM-DD HH:MM:SS WARN: …`).
fn warn_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" WARN")).collect()
}

/// No panic, well-formed log, and no warning at all: everything in the test was routine.
fn assert_quiet(proc: &Proc) {
    proc.assert_no_panic();
    assert_log_format(&proc.stderr());
    let err = proc.stderr();
    let warns = warn_lines(&err);
    contract(warns.is_empty(), || {
        format!(
            "{} logged warnings for routine traffic:\n{err}",
            proc.name()
        )
    });
}

/// An address nothing listens on: the fake server never connects anywhere.
fn doc_target(port: u16) -> Target {
    Target::Ip(SocketAddr::from(([192, 0, 2, 1], port)))
}

fn doc_address(port: u16) -> Address {
    Address::Ip(SocketAddr::from(([192, 0, 2, 1], port)))
}

// ---------------------------------------------------------------------------------------------
// 1. Half-close in both directions

#[test]
fn half_close_both_ways() {
    const UP: usize = 3 * 1024 * 1024 + 17;
    const DOWN: usize = 1024 * 1024 + 5;
    let _watchdog = Watchdog::new("half_close_both_ways", LIMIT);
    let (tx, rx) = mpsc::channel::<String>();
    let tx = Mutex::new(tx);
    let fake = FakeServer::start(METHOD, move |_, mut s| {
        let tx = tx.lock().unwrap().clone();
        let addr = s.read_address()?;
        if addr != doc_address(1001) {
            return Err(format!("target {addr}, expected {}", doc_address(1001)));
        }
        // Everything up to the FIN, and only then an answer.
        let got = s.read_to_eof()?;
        let _ = tx.send(format!(
            "EOF after {} bytes, sha1 {}",
            got.len(),
            sha1_hex(&got)
        ));
        // A pause, so the client side has surely processed its own FIN before the answer.
        thread::sleep(Duration::from_millis(200));
        let mut answer = sha1_hex(&got).into_bytes();
        answer.extend_from_slice(&data(2, DOWN));
        s.send(&answer)?;
        let after = s.finish()?;
        let _ = tx.send(format!("closed by the client, {after} bytes after the FIN"));
        Ok(())
    });
    let mut local = local_against(&fake, &[]);

    let up = data(1, UP);
    let mut c = socks5_connect(local.addr(), &doc_target(1001)).expect("SOCKS5 CONNECT");
    let mut sizes = DataGen::new(3);
    let mut rest = &up[..];
    while !rest.is_empty() {
        let n = sizes.range(1, 100_000).min(rest.len());
        c.write_all(&rest[..n]).expect("upload");
        rest = &rest[n..];
    }
    c.shutdown(Shutdown::Write).expect("client half-close");

    // The server saw every byte and then the FIN, before it answered anything.
    let seen = recv(&rx, &fake, Duration::from_secs(30), "upload");
    assert_eq!(
        seen,
        format!("EOF after {UP} bytes, sha1 {}", sha1_hex(&up)),
        "what the server saw before the FIN"
    );

    // The answer still reaches the client, complete, and then the server's FIN.
    let mut got = Vec::new();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("reading the answer after {} bytes: {e}", got.len()));
    let mut expected = sha1_hex(&up).into_bytes();
    expected.extend_from_slice(&data(2, DOWN));
    assert_eq!(
        got.len(),
        expected.len(),
        "answer length after the client's half-close"
    );
    assert!(got == expected, "answer content differs");
    drop(c);

    assert_eq!(
        recv(&rx, &fake, Duration::from_secs(30), "close"),
        "closed by the client, 0 bytes after the FIN"
    );
    fake.check();
    local.proc.assert_running();
    assert_quiet(&local.proc);
}

// ---------------------------------------------------------------------------------------------
// 2. The first write: salt, address and early payload together; or salt and address alone soon

#[test]
fn first_write_carries_salt_address_and_payload() {
    let _watchdog = Watchdog::new("first_write", LIMIT);
    let request = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec();
    let (tx, rx) = mpsc::channel::<Result<(Vec<u8>, Vec<usize>, usize), String>>();
    let tx = Mutex::new(tx);
    let fake = FakeServer::start(METHOD, move |_, mut s| {
        let tx = tx.lock().unwrap().clone();
        // Wait for the first byte, give the rest of a would-be second write time to arrive,
        // then read once.
        let mut one = [0u8; 1];
        s.sock
            .peek(&mut one)
            .map_err(|e| format!("waiting for the first byte: {e}"))?;
        thread::sleep(Duration::from_millis(150));
        let mut buf = vec![0u8; 256 * 1024];
        let n = s
            .sock
            .read(&mut buf)
            .map_err(|e| format!("first read: {e}"))?;
        let decoded = s.feed(&buf[..n]).map(|()| {
            let plain = std::mem::take(&mut s.plain);
            (plain, s.chunks.clone(), s.wire.len())
        });
        let ok = decoded.is_ok();
        let _ = tx.send(decoded);
        if ok {
            s.send(b"HTTP/1.1 200 OK\r\n\r\n")?;
            s.echo_to_eof()?;
            s.finish()?;
        }
        Ok(())
    });
    let mut local = local_against(&fake, &[]);

    let mut c = socks5_connect(local.addr(), &doc_target(80)).expect("SOCKS5 CONNECT");
    c.write_all(&request).unwrap();
    let (plain, chunks, pending) = recv(&rx, &fake, Duration::from_secs(10), "first read")
        .unwrap_or_else(|e| panic!("first read: {e}"));
    let mut expected = doc_address(80).to_wire().to_vec();
    expected.extend_from_slice(&request);
    assert_eq!(
        pending, 0,
        "the first read ended inside an element (a partial chunk)"
    );
    assert_eq!(
        chunks,
        vec![expected.len()],
        "the first read must be salt + one chunk holding address and payload"
    );
    assert_eq!(plain, expected, "first chunk = address ‖ payload");

    let mut answer = [0u8; 19];
    c.read_exact(&mut answer).expect("the answer");
    assert_eq!(&answer, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_echo(c, 4, 10_000, "after the first write");
    fake.check();
    local.proc.assert_running();
    assert_quiet(&local.proc);
}

/// A protocol where the server speaks first (SMTP, SSH banners…): the client sends nothing,
/// yet the server must get salt + address soon, and its banner must reach the client.
#[test]
fn silent_client_still_reaches_the_server() {
    const SILENCE: Duration = Duration::from_secs(2);
    const BANNER: &[u8] = b"220 fake.example ESMTP ready\r\n";
    let _watchdog = Watchdog::new("silent_client", LIMIT);
    let (tx, rx) = mpsc::channel::<Result<(Address, Duration, usize), String>>();
    let tx = Mutex::new(tx);
    let fake = FakeServer::start(METHOD, move |_, mut s| {
        let tx = tx.lock().unwrap().clone();
        let accepted = Instant::now();
        // Bounded: the client stays silent for 2 s, the address must come well before.
        s.sock
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let addr = s.read_address();
        let elapsed = accepted.elapsed();
        let early = s.plain.len();
        let ok = addr.is_ok();
        let _ = tx.send(addr.map(|a| (a, elapsed, early)));
        if ok {
            s.sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.send(BANNER)?;
            s.echo_to_eof()?;
            s.finish()?;
        }
        Ok(())
    });
    let mut local = local_against(&fake, &[]);

    let mut c = socks5_connect(local.addr(), &doc_target(25)).expect("SOCKS5 CONNECT");
    let connected = Instant::now();
    let (addr, elapsed, early) = recv(&rx, &fake, Duration::from_secs(10), "address")
        .unwrap_or_else(|e| {
            panic!("the server did not get the address while the client was silent: {e}")
        });
    assert_eq!(addr, doc_address(25));
    assert_eq!(
        early, 0,
        "plaintext beyond the address from a silent client"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "address arrived {elapsed:?} after the server accepted"
    );
    // The banner arrives while the client is still silent.
    let left = SILENCE
        .checked_sub(connected.elapsed())
        .filter(|d| !d.is_zero())
        .expect("the address report came after the client's silence ended");
    c.set_read_timeout(Some(left)).unwrap();
    let mut banner = vec![0u8; BANNER.len()];
    c.read_exact(&mut banner)
        .expect("banner before the client's silence ends");
    assert_eq!(banner, BANNER);
    assert!(connected.elapsed() < SILENCE, "banner after the silence");
    thread::sleep(SILENCE.saturating_sub(connected.elapsed()));
    // Now the client speaks: later data flows on the same stream (no second salt).
    set_timeouts(&c).unwrap();
    assert_echo(c, 5, 50_000, "after the silence");
    fake.check();
    local.proc.assert_running();
    assert_quiet(&local.proc);
}

// ---------------------------------------------------------------------------------------------
// 3. The tunnel's `-L` address

#[test]
fn tunnel_sends_the_l_address() {
    let _watchdog = Watchdog::new("tunnel -L", LIMIT);
    // Documentation addresses and a reserved name: nothing connects to them.
    let cases = [
        "198.51.100.7:5353",
        "[2001:db8::53]:853",
        "tunnel-target.invalid:8080",
    ];
    let (tx, rx) = mpsc::channel::<(Address, Vec<u8>)>();
    let tx = Mutex::new(tx);
    let fake = FakeServer::start(METHOD, move |_, mut s| {
        let tx = tx.lock().unwrap().clone();
        let addr = s.read_address()?;
        let first = s.plain.clone();
        // Readiness probes close at once: their streams carry the address and nothing else.
        s.echo_to_eof()?;
        let _ = tx.send((addr, first));
        s.finish()?;
        Ok(())
    });
    for (i, arg) in cases.into_iter().enumerate() {
        let expected = Address::from_host_port(arg).unwrap();
        let mut tunnel = ClientProc::start(
            "tunnel",
            fake.port,
            METHOD,
            PASSWORD,
            &["-L", arg, "-t", "60"],
        );
        let payload = format!("ping {i} through {arg}");
        let mut c = connect(tunnel.addr()).unwrap();
        c.write_all(payload.as_bytes()).unwrap();
        let mut back = vec![0u8; payload.len()];
        c.read_exact(&mut back).expect("echo through the tunnel");
        assert_eq!(back, payload.as_bytes());
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_close(&mut c, Duration::from_secs(10)).unwrap(), 0);
        // Every connection this tunnel made (the readiness probe's too) named the -L target.
        let mut saw_payload = false;
        while let Ok((addr, first)) = rx.recv_timeout(Duration::from_millis(500)) {
            assert_eq!(addr, expected, "-L {arg}: address the server received");
            saw_payload |= first.starts_with(payload.as_bytes());
        }
        assert!(
            saw_payload,
            "-L {arg}: the payload's connection was not seen"
        );
        fake.check();
        tunnel.proc.assert_running();
        assert_quiet(&tunnel.proc);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Buffer-pool backpressure

#[test]
#[ignore = "needs shadowsocks-libev (ss-server); bash tests/run-all.sh runs it"]
fn pool_backpressure() {
    const CONNS: usize = 20;
    const PER_CONN: usize = 2 * 1024 * 1024;
    if !require_tool("ss-server") {
        return;
    }
    let _watchdog = Watchdog::new("pool_backpressure", Duration::from_secs(240));
    let echo = EchoServer::start();
    let mut server = SsServer::start(METHOD, PASSWORD);
    let mut local = ClientProc::start(
        "local",
        server.port,
        METHOD,
        PASSWORD,
        &["-t", "60", "--pool-blocks", "1"],
    );
    let proxy = local.addr();
    let barrier = std::sync::Barrier::new(CONNS);
    thread::scope(|scope| {
        for i in 0..CONNS {
            let (barrier, echo) = (&barrier, &echo);
            scope.spawn(move || {
                let s = socks5_connect(proxy, &echo.v4().into())
                    .unwrap_or_else(|e| panic!("connection {i}: SOCKS5 CONNECT: {e}"));
                barrier.wait();
                assert_echo(
                    s,
                    700 + i as u64,
                    PER_CONN,
                    &format!("connection {i} with one pool block"),
                );
            });
        }
    });
    local.proc.assert_running();
    server.proc.assert_running();
    assert_quiet(&local.proc);
}

// ---------------------------------------------------------------------------------------------
// 5. The connection cap

#[test]
fn connection_cap() {
    let _watchdog = Watchdog::new("connection_cap", LIMIT);
    let fake = FakeServer::start(METHOD, echo_handler);
    let mut local = local_against(&fake, &["--max-conns", "2"]);
    let proxy = local.addr();

    // More clients than permits: the later ones wait, none fails.
    thread::scope(|scope| {
        for i in 0..8 {
            scope.spawn(move || {
                let s = socks5_connect(proxy, &doc_target(2000 + i))
                    .unwrap_or_else(|e| panic!("client {i} of 8: SOCKS5 CONNECT: {e}"));
                assert_echo(s, 800 + i as u64, 20_000, &format!("client {i} of 8"));
            });
        }
    });
    fake.check();

    // Two idle connections hold both permits: a third is not even greeted.
    let held1 = socks5_connect(proxy, &doc_target(3001)).expect("held connection 1");
    let held2 = socks5_connect(proxy, &doc_target(3002)).expect("held connection 2");
    let mut third = connect(proxy).unwrap();
    third.write_all(&[5, 1, 0]).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut reply = [0u8; 2];
    match third.read(&mut reply) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("third connection answered while two held the cap: {other:?}"),
    }
    // Closing one frees its permit; the third proceeds.
    drop(held1);
    third.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    third
        .read_exact(&mut reply)
        .expect("greeting answer once a permit is free");
    assert_eq!(reply, [5, 0]);
    let (rep, _) = socks5_request(&mut third, 1, &doc_target(3003)).expect("CONNECT");
    assert_eq!(rep, 0, "CONNECT reply code");
    assert_echo(third, 900, 20_000, "the third connection");
    assert_echo(held2, 901, 20_000, "the held connection");
    fake.check();
    local.proc.assert_running();
    // Reaching the cap is the one thing worth a warning here.
    local.proc.assert_no_panic();
    let err = local.proc.stderr();
    assert_log_format(&err);
    let warns = warn_lines(&err);
    contract(
        !warns.is_empty()
            && warns
                .iter()
                .all(|l| l.contains("connection cap (--max-conns 2)")),
        || format!("expected only connection-cap warnings:\n{err}"),
    );
}

// ---------------------------------------------------------------------------------------------
// 6. A broken server stream is one warning, and the process carries on

#[test]
fn server_garbage_is_one_line() {
    const GARBAGE_PORT: u16 = 6666;
    let _watchdog = Watchdog::new("server_garbage", LIMIT);
    // The target port picks the behaviour: garbage for GARBAGE_PORT, a good echo otherwise.
    let fake = FakeServer::start(METHOD, |_, mut s| {
        let addr = s.read_address()?;
        if addr.port() == GARBAGE_PORT {
            s.send_raw(&data(666, 4096))?;
            // ss-smol may reset the connection once it gives up: errors are fine here.
            let _ = s.finish();
            return Ok(());
        }
        s.echo_to_eof()?;
        s.finish()?;
        Ok(())
    });
    let mut local = local_against(&fake, &[]);
    let mark = local.proc.stderr_mark();

    let mut c = socks5_connect(local.addr(), &doc_target(GARBAGE_PORT)).expect("SOCKS5 CONNECT");
    let _ = c.write_all(b"hello to a garbage server");
    match read_to_close(&mut c, Duration::from_secs(10)) {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes of a garbage stream reached the client"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "the client connection was not closed after the server sent garbage"
        ),
    }
    drop(c);

    // The same process still relays a good connection.
    let s = socks5_connect(local.addr(), &doc_target(7777)).expect("CONNECT after garbage");
    assert_echo(s, 6, 200_000, "good connection after the garbage one");
    fake.check();
    local.proc.assert_running();

    let deadline = Instant::now() + Duration::from_secs(5);
    while !local
        .proc
        .stderr_since(mark)
        .contains("authentication failed")
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(50));
    }
    let log = local.proc.stderr_since(mark);
    let warns = warn_lines(&log);
    assert!(
        warns.len() == 1 && warns[0].contains("authentication failed"),
        "expected exactly one WARN line, mentioning \"authentication failed\"; log:\n{log}"
    );
    assert!(
        warns[0].contains(&format!(":{GARBAGE_PORT}")),
        "the warning does not name the connection's target: {}",
        warns[0]
    );
    let mentions = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .count();
    assert_eq!(mentions, 1, "lines mentioning the failure:\n{log}");
    assert_eq!(fake.accepted(), 2, "connections the fake server accepted");
    local.proc.assert_no_panic();
    assert_log_format(&local.proc.stderr());
}

/// Clients that stop reading (a paused video, a sleeping phone) while their servers keep sending
/// must not take the buffer pool with them: other connections keep flowing. Here as many
/// clients stall as the pool has blocks.
#[test]
fn stalled_readers_do_not_starve_others() {
    stalled_peers(STALL_BLOCKS, STALL_BLOCKS, Stall::Client);
}

/// The same the other way round: servers that stop reading while their clients upload.
#[test]
fn stalled_servers_do_not_starve_others() {
    stalled_peers(STALL_BLOCKS, STALL_BLOCKS, Stall::Server);
}

const STALL_BLOCKS: usize = 4;
/// Target port meaning "flood the client and never read" to the fake server.
const FLOOD_PORT: u16 = 5001;
/// Target port meaning "read the address, then never read again".
const DEAF_PORT: u16 = 5003;

#[derive(Clone, Copy, Debug)]
enum Stall {
    /// The client does not read; its server floods it.
    Client,
    /// The server does not read; its client floods it.
    Server,
}

/// `stalled` connections whose receiving end never reads while the other end floods it, then
/// one ordinary echo through ss-smol with `--pool-blocks blocks`.
fn stalled_peers(blocks: usize, stalled: usize, how: Stall) {
    let _watchdog = Watchdog::new("stalled peers", LIMIT);
    let stop = Arc::new(AtomicBool::new(false));
    let fake_stop = stop.clone();
    let fake = FakeServer::start(METHOD, move |_, mut s| {
        let addr = s.read_address()?;
        match addr.port() {
            FLOOD_PORT => {
                // Far more than the socket buffers on the way hold; ends when ss-smol closes.
                let block = data(9, 1024 * 1024);
                for _ in 0..64 {
                    if s.send(&block).is_err() {
                        break;
                    }
                }
                let _ = s.finish();
            }
            DEAF_PORT => {
                while !fake_stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(50));
                }
            }
            _ => {
                s.echo_to_eof()?;
                s.finish()?;
            }
        }
        Ok(())
    });
    let blocks_arg = blocks.to_string();
    let mut local = local_against(&fake, &["--pool-blocks", &blocks_arg]);
    let target = match how {
        Stall::Client => FLOOD_PORT,
        Stall::Server => DEAF_PORT,
    };
    let held: Vec<TcpStream> = (0..stalled)
        .map(|i| {
            socks5_connect(local.addr(), &doc_target(target))
                .unwrap_or_else(|e| panic!("CONNECT stalled {i}: {e}"))
        })
        .collect();
    let uploaders: Vec<JoinHandle<()>> = match how {
        Stall::Client => Vec::new(),
        Stall::Server => held
            .iter()
            .map(|c| {
                let mut c = c.try_clone().unwrap();
                thread::spawn(move || {
                    let block = data(11, 1024 * 1024);
                    for _ in 0..64 {
                        if c.write_all(&block).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect(),
    };
    // Let the floods fill every buffer between the flooding and the stalled ends.
    thread::sleep(Duration::from_secs(2));
    let s = socks5_connect(local.addr(), &doc_target(5002)).expect("CONNECT while others stall");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let result = echo_transfer(s, 10, 100_000);
    for c in &held {
        let _ = c.shutdown(Shutdown::Both);
    }
    stop.store(true, Ordering::SeqCst);
    for u in uploaders {
        let _ = u.join();
    }
    drop(held);
    match result {
        Ok((sent, received, got)) => {
            assert_eq!(got, 100_000);
            assert_eq!(sent, received, "echo differs");
        }
        Err(e) => panic!(
            "an echo made no progress within 10 s while {stalled} connections were stalled \
             ({how:?} not reading; --pool-blocks {blocks}, idle timeout 60 s): {e}"
        ),
    }
    local.proc.assert_running();
    local.proc.assert_no_panic();
}
