#!/usr/bin/env python3
"""Bulk TCP throughput of an ss-smol binary as `ss-tunnel`, natively or under qemu-user.

    python3 cross/throughput.py --bin target/cross/x86_64-unknown-linux-musl/ss-smol
    python3 cross/throughput.py --bin target/cross/mipsel-unknown-linux-musl/ss-smol \
        --qemu qemu-mipsel-static --mib 16

Everything runs on loopback: a sink/source server, shadowsocks-libev's `ss-server` (native) and
the binary under test as a tunnel to the sink. For each method, `up` sends N MiB through the
tunnel (the client seals), `down` receives N MiB (the client opens). Reported per run:

    wall MB/s      bytes / elapsed time (the whole chain, so also ss-server and Python)
    client MB/cpu-s bytes / CPU time (user + system) the client process used: the number that
                   compares builds, since a router's client is CPU-bound, and it is not much
                   disturbed by other load on the machine. Under qemu it is the emulator's CPU
                   time, so compare builds of one target with each other, not across targets.

The best of --repeat runs is printed.
"""

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

PASSWORD = "throughput-test"
CHUNK = 64 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    # TCP and UDP both free on 127.0.0.1.
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def wait_port(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


def stop(proc, grace=5):
    """Terminates `proc`, killing it if it has not exited within `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; after the ")" split they are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / TICK


def recv_exact(conn, n):
    buf = bytearray()
    while len(buf) < n:
        part = conn.recv(n - len(buf))
        if not part:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += part
    return bytes(buf)


def serve(listener, payload):
    """'U' + u64 len: read len bytes, answer b'OK'. 'D' + u64 len: send len bytes."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(conn, payload), daemon=True).start()


def handle(conn, payload):
    with conn:
        try:
            conn.settimeout(120)
            head = recv_exact(conn, 9)
            (n,) = struct.unpack(">Q", head[1:])
            if head[:1] == b"U":
                left = n
                while left:
                    part = conn.recv(min(left, 1 << 20))
                    if not part:
                        return
                    left -= len(part)
                conn.sendall(b"OK")
            else:
                left = n
                while left:
                    m = min(left, len(payload))
                    conn.sendall(payload[:m])
                    left -= m
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)
        except (OSError, EOFError):
            pass


def run_once(direction, port, client_pid, nbytes, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cpu0, t0 = cpu_seconds(client_pid), time.monotonic()
        if direction == "up":
            s.sendall(b"U" + struct.pack(">Q", nbytes))
            left = nbytes
            while left:
                m = min(left, len(payload))
                s.sendall(payload[:m])
                left -= m
            if recv_exact(s, 2) != b"OK":
                raise RuntimeError("sink did not confirm")
        else:
            s.sendall(b"D" + struct.pack(">Q", nbytes))
            left = nbytes
            while left:
                part = s.recv(min(left, 1 << 20))
                if not part:
                    raise EOFError(f"EOF with {left} bytes to go")
                left -= len(part)
        t1 = time.monotonic()
        # Let the client finish its bookkeeping for this connection before reading its CPU.
        time.sleep(0.05)
        cpu1 = cpu_seconds(client_pid)
    return t1 - t0, cpu1 - cpu0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="ss-smol binary")
    ap.add_argument("--qemu", help="qemu-user emulator, e.g. qemu-mipsel-static")
    ap.add_argument("--methods", default="chacha20-ietf-poly1305,aes-128-gcm,aes-256-gcm")
    ap.add_argument("--mib", type=int, default=64, help="MiB per direction per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--label", default="", help="printed in front of every line")
    args = ap.parse_args()

    if not shutil.which("ss-server"):
        sys.exit("ss-server (shadowsocks-libev) not found")
    nbytes = args.mib * 1024 * 1024
    payload = os.urandom(CHUNK)

    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(16)
    threading.Thread(target=serve, args=(sink, payload), daemon=True).start()
    sink_port = sink.getsockname()[1]

    for method in args.methods.split(","):
        server_port, tunnel_port = free_port(), free_port()
        server = subprocess.Popen(
            ["ss-server", "-s", "127.0.0.1", "-p", str(server_port), "-k", PASSWORD,
             "-m", method],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client_cmd = ([args.qemu] if args.qemu else []) + [
            args.bin, "tunnel", "-s", "127.0.0.1", "-p", str(server_port),
            "-b", "127.0.0.1", "-l", str(tunnel_port), "-k", PASSWORD, "-m", method,
            "-L", f"127.0.0.1:{sink_port}"]
        client = subprocess.Popen(client_cmd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            wait_port(server_port, server)
            wait_port(tunnel_port, client)
            for direction in ("up", "down"):
                best = None
                for _ in range(args.repeat):
                    wall, cpu = run_once(direction, tunnel_port, client.pid, nbytes, payload)
                    if best is None or cpu < best[1]:
                        best = (wall, cpu)
                wall, cpu = best
                mb = nbytes / 1e6
                print(f"{args.label}{method:24} {direction:4} {args.mib} MiB  "
                      f"wall {mb / wall:8.1f} MB/s  client {mb / max(cpu, 1e-9):8.1f} MB/cpu-s",
                      flush=True)
        finally:
            for p in (client, server):
                stop(p)
    sink.close()


if __name__ == "__main__":
    main()
