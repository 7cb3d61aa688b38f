#!/usr/bin/env python3
"""Idle memory of a SOCKS5 client (ss-smol local or libev ss-local): RSS of the process at
rest, and the RSS added per established idle connection.

Starts libev's ss-server and a TCP echo server on loopback, then the client under test; opens
N SOCKS5 CONNECTs through it, sends one byte on each and reads the echo (so every connection
is established end to end), waits, and reads VmRSS from /proc. Prints one CSV line:
impl,connections,idle_rss_kib,loaded_rss_kib,per_conn_bytes
"""
import argparse, os, socket, subprocess, sys, threading, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")

def echo_server(port, stop):
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port)); srv.listen(4096); srv.settimeout(0.2)
    conns = []
    while not stop.is_set():
        try:
            c, _ = srv.accept()
        except socket.timeout:
            continue
        c.settimeout(5)
        try:
            c.sendall(c.recv(16))
        except OSError:
            pass
        conns.append(c)
    for c in conns: c.close()
    srv.close()

def wait_port(port, deadline=10):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close(); return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")

def socks_connect(lport, eport):
    s = socket.create_connection(("127.0.0.1", lport), timeout=10)
    s.sendall(b"\x05\x01\x00"); assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + eport.to_bytes(2, "big"))
    assert s.recv(10)[1] == 0
    s.sendall(b"x"); assert s.recv(1) == b"x"
    return s

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["ss-smol", "libev"], default="ss-smol")
    ap.add_argument("--bin", default="target/release/ss-smol")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("-m", default="chacha20-ietf-poly1305")
    a = ap.parse_args()
    sport, lport, eport = free_port(), free_port(), free_port()
    stop = threading.Event()
    threading.Thread(target=echo_server, args=(eport, stop), daemon=True).start()
    procs = [subprocess.Popen(["ss-server", "-s", "127.0.0.1", "-p", str(sport), "-k", "bench", "-m", a.m, "-n", "16000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    cmd = ([a.bin, "local"] if a.impl == "ss-smol" else ["ss-local"]) + \
          ["-s", "127.0.0.1", "-p", str(sport), "-l", str(lport), "-b", "127.0.0.1", "-k", "bench", "-m", a.m, "-n", "16000"]
    client = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(client)
    try:
        wait_port(sport); wait_port(lport, 10)
        # One warm-up connection so lazily initialised state is counted as "idle".
        socks_connect(lport, eport).close()
        time.sleep(1.0)
        idle = rss_kib(client.pid)
        conns = [socks_connect(lport, eport) for _ in range(a.n)]
        time.sleep(1.5)  # past the 500 ms first-payload wait: connections are at rest
        loaded = rss_kib(client.pid)
        per = (loaded - idle) * 1024 / a.n
        print(f"{a.impl},{a.n},{idle},{loaded},{per:.0f}")
        for c in conns: c.close()
    finally:
        stop.set()
        for p in procs:
            p.terminate()
            try: p.wait(5)
            except subprocess.TimeoutExpired: p.kill()

if __name__ == "__main__":
    main()
