//! Traffic for the ss-redir benchmark (benches/redir.py), std only so the harness builds it with
//! a bare `rustc -O`. Every mode runs inside one of the benchmark's network namespaces; the
//! addresses are the benchmark's documentation addresses, given on the command line.
//!
//!   redirload udp-echo ADDR
//!       Answer every datagram to ADDR with the same bytes. Runs until killed.
//!   redirload tcp-hold ADDR
//!       Accept on ADDR; echo each connection's first byte and keep the connection open (no
//!       thread per connection: the test holds a thousand). Runs until killed.
//!   redirload tcp-open ADDR N
//!       Open N connections to ADDR, send one byte on each and wait for its echo (so each is
//!       established end to end through the proxy), print `ready N`, then hold them until stdin
//!       closes.
//!   redirload udp-rr ADDR FLOWS SECONDS
//!       FLOWS sockets (one thread each), each sending a 64-byte request to ADDR and waiting up
//!       to 1 s for its echo, again and again, for SECONDS after a 0.5 s warm-up. Prints
//!       `ok=N lost=N secs=S rate=R` (rate = answered requests per second, all flows together).
//!
//! Bad arguments end the program with a usage line; it never talks to anything but ADDR.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: redirload udp-echo ADDR | tcp-hold ADDR | tcp-open ADDR N | \
                     udp-rr ADDR FLOWS SECONDS";

fn fail(msg: &str) -> ! {
    eprintln!("redirload: {msg}");
    std::process::exit(2);
}

fn udp_echo(addr: SocketAddr) {
    let sock = UdpSocket::bind(addr).unwrap_or_else(|e| fail(&format!("bind {addr}: {e}")));
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], peer);
        }
    }
}

fn tcp_hold(addr: SocketAddr) {
    let listener =
        TcpListener::bind(addr).unwrap_or_else(|e| fail(&format!("listen {addr}: {e}")));
    let mut held = Vec::new();
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut b = [0u8; 1];
        if matches!(s.read(&mut b), Ok(1)) && s.write_all(&b).is_ok() {
            held.push(s);
        }
    }
}

fn tcp_open(addr: SocketAddr, n: usize) {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| fail(&format!("connection {i} to {addr}: {e}")));
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut b = [b'x'];
        if s.write_all(&b).is_err() || !matches!(s.read(&mut b), Ok(1)) || b != [b'x'] {
            fail(&format!("connection {i} to {addr}: no echo"));
        }
        held.push(s);
    }
    println!("ready {n}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    while matches!(std::io::stdin().lock().read_line(&mut line), Ok(k) if k > 0) {
        line.clear();
    }
}

fn udp_rr(addr: SocketAddr, flows: usize, secs: f64) {
    let ok = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for f in 0..flows {
        let (ok, lost, counting, stop) = (ok.clone(), lost.clone(), counting.clone(), stop.clone());
        let local: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or_else(|_| fail("address"))
        } else {
            "[::]:0".parse().unwrap_or_else(|_| fail("address"))
        };
        let sock = UdpSocket::bind(local).unwrap_or_else(|e| fail(&format!("bind: {e}")));
        let _ = sock.set_read_timeout(Some(Duration::from_secs(1)));
        handles.push(thread::spawn(move || {
            let mut req = [0u8; 64];
            let mut buf = [0u8; 2048];
            let mut seq: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                req[..8].copy_from_slice(&(f as u64).to_be_bytes());
                req[8..16].copy_from_slice(&seq.to_be_bytes());
                if sock.send_to(&req, addr).is_err() {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
                // Late answers to an earlier request are skipped, not counted.
                let answered = loop {
                    match sock.recv_from(&mut buf) {
                        Ok((n, _)) if buf[..n] == req => break true,
                        Ok(_) => continue,
                        Err(_) => break false,
                    }
                };
                if counting.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    if answered {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    thread::sleep(Duration::from_millis(500));
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    let okn = ok.load(Ordering::Relaxed);
    let lostn = lost.load(Ordering::Relaxed);
    let el = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!(
        "ok={okn} lost={lostn} secs={el:.3} rate={:.1}",
        okn as f64 / el
    );
    for h in handles {
        let _ = h.join();
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or_else(|| fail(USAGE));
    let addr = |i: usize| -> SocketAddr { arg(i).parse().unwrap_or_else(|_| fail(USAGE)) };
    let num = |i: usize| -> f64 { arg(i).parse().unwrap_or_else(|_| fail(USAGE)) };
    match arg(1) {
        "udp-echo" => udp_echo(addr(2)),
        "tcp-hold" => tcp_hold(addr(2)),
        "tcp-open" => tcp_open(addr(2), num(3) as usize),
        "udp-rr" => udp_rr(addr(2), num(3) as usize, num(4)),
        _ => fail(USAGE),
    }
}
