//! Connection-rate load generator and echo-and-close server for benches/run.py (std only, so
//! the harness builds it with a bare `rustc -O`, no Cargo.toml entry).
//!
//!   connrate serve PORT [THREADS]
//!       Listen on 127.0.0.1:PORT; for each connection read the 100-byte request (or up to
//!       EOF), echo it, close. THREADS accept loops (default 16).
//!   connrate client PORT CONCURRENCY SECONDS [WARMUP_SECONDS]
//!       CONCURRENCY threads, each doing sequential connections to 127.0.0.1:PORT: connect,
//!       send 100 bytes, read the 100-byte echo, read to EOF, close. Counts the
//!       connections that completed correctly within SECONDS after a warm-up (default 0.5 s).
//!       Prints one line: `ok=N err=N secs=S rate=R` (rate = ok / secs).
//!
//! Only loopback addresses are used; both modes stop by themselves (the server when its parent
//! kills it, the client after SECONDS).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const REQ: usize = 100;

fn serve(port: u16, threads: usize) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let listener = Arc::new(listener);
    let mut handles = Vec::new();
    for _ in 0..threads {
        let l = Arc::clone(&listener);
        handles.push(thread::spawn(move || loop {
            let (mut s, _) = match l.accept() {
                Ok(x) => x,
                Err(_) => continue,
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.set_nodelay(true);
            let mut buf = [0u8; REQ];
            let mut got = 0;
            while got < REQ {
                match s.read(&mut buf[got..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            let _ = s.write_all(&buf[..got]);
            let _ = s.shutdown(Shutdown::Both);
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}

fn one(addr: &SocketAddr, req: &[u8], buf: &mut [u8]) -> bool {
    let mut s = match TcpStream::connect_timeout(addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(_) => return false,
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_nodelay(true);
    if s.write_all(req).is_err() {
        return false;
    }
    let mut got = 0;
    while got < req.len() {
        match s.read(&mut buf[got..req.len()]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    if buf[..req.len()] != *req {
        return false;
    }
    // The server closes after the reply: wait for that EOF so the whole chain has torn down.
    let mut tail = [0u8; 16];
    matches!(s.read(&mut tail), Ok(0))
}

fn client(port: u16, conc: usize, secs: f64, warmup: f64) {
    let size = REQ;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let ok = Arc::new(AtomicU64::new(0));
    let err = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..conc {
        let (ok, err, counting, stop) = (ok.clone(), err.clone(), counting.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let req: Vec<u8> = (0..size).map(|i| (i + t) as u8).collect();
            let mut buf = vec![0u8; size];
            while !stop.load(Ordering::Relaxed) {
                let good = one(&addr, &req, &mut buf);
                if counting.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    if good {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        err.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !good {
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }));
    }
    thread::sleep(Duration::from_secs_f64(warmup));
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    let okn = ok.load(Ordering::Relaxed);
    let errn = err.load(Ordering::Relaxed);
    let el = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!(
        "ok={okn} err={errn} secs={el:.3} rate={:.1}",
        okn as f64 / el
    );
    for h in handles {
        let _ = h.join();
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: connrate serve PORT [THREADS] | connrate client PORT CONC SECS [WARMUP]";
    let num = |i: usize, d: f64| -> f64 { a.get(i).map(|s| s.parse().expect(usage)).unwrap_or(d) };
    match a.get(1).map(String::as_str) {
        Some("serve") => serve(num(2, f64::NAN) as u16, num(3, 16.0) as usize),
        Some("client") => client(
            num(2, f64::NAN) as u16,
            num(3, 16.0) as usize,
            num(4, 5.0),
            num(5, 0.5),
        ),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
