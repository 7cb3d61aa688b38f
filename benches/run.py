#!/usr/bin/env python3
"""ss-smol against shadowsocks-libev and shadowsocks-rust, on loopback, in one session.

    python3 benches/run.py                      # everything, 5 runs each (~25 min + installs)
    python3 benches/run.py --runs 1 --seconds 2 --out target/bench/results   # a quick check
    python3 benches/run.py --only tput,memory --impls ss-smol,libev
    python3 benches/run.py --methods 2022chacha20,2022aes256 --impls ss-smol,ssrust  # 2022 only

What it does, in order:
  1. installs what is missing: Debian's shadowsocks-libev, iperf3, python3-matplotlib,
     qemu-user-static (apt, non-interactive); shadowsocks-rust from crates.io
     (`cargo install shadowsocks-rust@1.25.0 --locked`, ~10 min on 2 cores, only when
     `sslocal` is not found; build dir target/bench-peers/target, shared with tests/run-all.sh);
     the x86_64 musl rustup target; Debian's mipsel shadowsocks-libev and its libraries
     unpacked into target/bench-peers/mipsel-root (only when a mipsel ss-smol exists).
     --no-install skips all of that.
  2. builds ss-smol with cross/build.sh: the x86_64 router binary (what ships for x86_64
     routers) and the mipsel one for the mipsel rows; --build musl for `cargo build --release
     --target x86_64-unknown-linux-musl`, --build glibc for plain `cargo build --release`; or
     --bin to measure a given binary.
     Builds benches/connrate.rs (std only) with rustc.
  3. measures, ALTERNATING implementations inside every run (the order rotates run by run).
     Each implementation is paired with its own server, started fresh for every measurement:
       ss-smol tunnel/local + ss-smol server --allow-private-targets
       ss-tunnel/ss-local + ss-server                      (shadowsocks-libev)
       sslocal --protocol tunnel|socks + ssserver          (shadowsocks-rust, default runtime)
     --methods picks the methods (default chacha20-ietf-poly1305, aes-256-gcm and the
     Shadowsocks 2022 2022-blake3-chacha20-poly1305, 2022-blake3-aes-256-gcm; also
     2022-blake3-aes-128-gcm). A 2022 method's key is a random base64 PSK of its length (16 or
     32 bytes), drawn once per session; libev has no Shadowsocks 2022, so the 2022 tests
     compare ss-smol with shadowsocks-rust only (the table says "no 2022" in libev's column).
     tput     iperf3 -c through `tunnel -L 127.0.0.1:IPERF` → server → iperf3 -s, for
              every method, 1 and 8 streams (-P 8), --seconds each.
              Also records client/server CPU seconds and peak RSS (VmHWM) of both processes.
     connrate target/bench/connrate: --conc threads doing sequential connections through the
              tunnel to an echo-and-close server (100-byte request, 100-byte reply, wait for
              EOF), counted over --connrate-seconds after a 0.5 s warm-up. chacha20-ietf-poly1305
              and every 2022 method (test connrate_2022chacha20, …; metrics suffixed likewise).
     memory   SOCKS5 local mode: RSS (VmRSS) of client and server after one warm-up
              connection, then with --idle-conns connections each established end to end to
              an echo server (one byte each way) and left idle. chacha20-ietf-poly1305 and
              every 2022 method (test memory_2022chacha20, …).
     redir    ss-redir against libev's ss-redir in network namespaces with the same nftables
              rules (root): throughput and CPU per GB, UDP request/response rate, RSS per idle
              redirected connection, RSS with 256 UDP flows. See benches/redir.py.
     mipsel   the mipsel ss-smol (--mipsel-bin, from cross/build.sh) and Debian's mipsel
              ss-tunnel, both under qemu-mipsel-static, each with its own native server;
              iperf3 single stream, both AEAD-2017 ciphers; and ss-smol alone with
              2022-blake3-chacha20-poly1305 (against its own chacha20-ietf-poly1305). Skipped with
              a message when the binary is missing, unless --require-mipsel; without the unpacked
              mipsel libev (--no-install) only ss-smol's mipsel rows are measured.
  4. writes OUT/YYYY-MM-DD.csv (one row per run, implementation and metric; overwritten by a
     later session the same day), OUT/YYYY-MM-DD.png (median bars, min/max error bars) and
     prints a Markdown table (median, min–max, ratio ours/peer) plus the project's targets,
     each MET / NOT MET.

Everything listens on and connects to 127.0.0.1 only (redir: addresses inside its own namespaces); every process it starts is stopped when
it ends (also on Ctrl-C). Process logs of a failed measurement stay in target/bench/logs/.
"""

import argparse
import atexit
import base64
import csv
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

if __name__ == "__main__":
    sys.modules.setdefault("run", sys.modules["__main__"])  # benches/redir.py imports it as `run`
    sys.dont_write_bytecode = True  # no __pycache__ in the work tree when it imports redir

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.path.join(ROOT, "target")
PEERS = os.path.join(TARGET, "bench-peers")
MIPSEL_ROOT = os.path.join(PEERS, "mipsel-root")
PASSWORD = "bench-password"
TICK = os.sysconf("SC_CLK_TCK")

IMPLS = ["ss-smol", "libev", "ssrust"]
LABEL = {"ss-smol": "ss-smol", "libev": "shadowsocks-libev", "ssrust": "shadowsocks-rust"}
CIPHERS = {"chacha20": "chacha20-ietf-poly1305", "aes256": "aes-256-gcm"}  # AEAD-2017 (redir.py too)
# Shadowsocks 2022 (SIP022): the key is a base64 PSK of this many bytes, drawn at random for each
# session. shadowsocks-libev has none of them, so their rows are ss-smol and shadowsocks-rust only.
CIPHERS_2022 = {"2022chacha20": "2022-blake3-chacha20-poly1305", "2022aes256": "2022-blake3-aes-256-gcm",
                "2022aes128": "2022-blake3-aes-128-gcm"}
PSK_BYTES = {"2022-blake3-chacha20-poly1305": 32, "2022-blake3-aes-256-gcm": 32,
             "2022-blake3-aes-128-gcm": 16}
ALL_CIPHERS = {**CIPHERS, **CIPHERS_2022}
DEFAULT_METHODS = "chacha20,aes256,2022chacha20,2022aes256"
NO_2022 = ("libev",)  # implementations without Shadowsocks 2022
# ss-smol's relay block (src/relay/pool.rs: BLOCK_SIZE, 4 + MAX_SALT_LEN + 2 * MAX_CHUNK rounded up
# to 16), default pool size.
BLOCK_BYTES = -(-(4 + 32 + 2 * (2 + 16 + 0x3FFF + 16)) // 16) * 16
DEFAULT_POOL_BLOCKS = 64

# Metrics shown in the table and chart: key, label, unit, higher is better.
KEY_METRICS = [
    ("tput_chacha20_P1", "throughput, chacha20-ietf-poly1305, 1 stream", "Mbit/s", True),
    ("tput_aes256_P1", "throughput, aes-256-gcm, 1 stream", "Mbit/s", True),
    ("tput_chacha20_P8", "throughput, chacha20-ietf-poly1305, 8 streams", "Mbit/s", True),
    ("tput_aes256_P8", "throughput, aes-256-gcm, 8 streams", "Mbit/s", True),
] + [
    (f"tput_{s}_P{n}", f"throughput, {m}, {n} stream{'s' if n > 1 else ''}", "Mbit/s", True)
    for n in (1, 8) for s, m in CIPHERS_2022.items()
] + [
    ("client_cpu_s_per_GB_chacha20_P1", "client CPU per GB, chacha20, 1 stream", "s/GB", False),
    ("server_cpu_s_per_GB_chacha20_P1", "server CPU per GB, chacha20, 1 stream", "s/GB", False),
] + [
    (f"{side}_cpu_s_per_GB_{s}_P1", f"{side} CPU per GB, {m}, 1 stream", "s/GB", False)
    for s, m in CIPHERS_2022.items() for side in ("client", "server")
] + [
    ("connrate", "connections per second (100 B request/reply)", "conn/s", True),
    ("connrate_client_cpu_us_per_conn", "client CPU per connection", "µs", False),
    ("connrate_server_cpu_us_per_conn", "server CPU per connection", "µs", False),
    ("connrate_client_rss_peak_kib", "client peak RSS, connection-rate test", "KiB", False),
    ("connrate_server_rss_peak_kib", "server peak RSS, connection-rate test", "KiB", False),
] + [
    row for s, m in CIPHERS_2022.items() for row in (
        (f"connrate_{s}", f"connections per second, {m}", "conn/s", True),
        (f"connrate_client_cpu_us_per_conn_{s}", f"client CPU per connection, {m}", "µs", False),
        (f"connrate_server_cpu_us_per_conn_{s}", f"server CPU per connection, {m}", "µs", False))
] + [
    ("client_rss_idle_kib", "client RSS, idle", "KiB", False),
    ("client_per_conn_bytes", "client RSS per idle connection", "bytes", False),
    ("client_rss_conns_kib", "client RSS with the idle connections", "KiB", False),
    ("client_rss_full_kib", "client peak RSS, 8 streams (chacha20)", "KiB", False),
    ("server_rss_idle_kib", "server RSS, idle", "KiB", False),
    ("server_per_conn_bytes", "server RSS per idle connection", "bytes", False),
    ("server_rss_conns_kib", "server RSS with the idle connections", "KiB", False),
    ("server_rss_full_kib", "server peak RSS, 8 streams (chacha20)", "KiB", False),
] + [
    row for s, m in CIPHERS_2022.items() for side in ("client", "server") for row in (
        (f"{side}_rss_idle_kib_{s}", f"{side} RSS, idle, {m}", "KiB", False),
        (f"{side}_per_conn_bytes_{s}", f"{side} RSS per idle connection, {m}", "bytes", False))
] + [
    ("redir_tput_chacha20_P1", "ss-redir throughput, chacha20-ietf-poly1305, 1 stream", "Mbit/s", True),
    ("redir_tput_aes256_P1", "ss-redir throughput, aes-256-gcm, 1 stream", "Mbit/s", True),
    ("redir_cpu_s_per_GB_chacha20_P1", "ss-redir CPU per GB, chacha20", "s/GB", False),
    ("redir_cpu_s_per_GB_aes256_P1", "ss-redir CPU per GB, aes-256-gcm", "s/GB", False),
    ("redir_udp_rr", "ss-redir UDP requests answered per second (16 flows)", "req/s", True),
    ("redir_udp_cpu_us_per_rr", "ss-redir CPU per UDP request/response", "µs", False),
    ("redir_rss_idle_kib", "ss-redir RSS, idle", "KiB", False),
    ("redir_per_conn_bytes", "ss-redir RSS per idle redirected connection", "bytes", False),
    ("redir_rss_conns_kib", "ss-redir RSS with the idle connections", "KiB", False),
    ("redir_rss_udp256_kib", "ss-redir peak RSS, 256 UDP flows", "KiB", False),
    ("mipsel_tput_chacha20_P1", "mipsel client under qemu, chacha20, 1 stream", "Mbit/s", True),
    ("mipsel_tput_aes256_P1", "mipsel client under qemu, aes-256-gcm, 1 stream", "Mbit/s", True),
    ("mipsel_client_cpu_s_per_GB_chacha20_P1", "mipsel client CPU per GB (qemu), chacha20", "s/GB", False),
    ("mipsel_tput_2022chacha20_P1", "mipsel client under qemu, 2022-blake3-chacha20-poly1305, 1 stream",
     "Mbit/s", True),
    ("mipsel_client_cpu_s_per_GB_2022chacha20_P1",
     "mipsel client CPU per GB (qemu), 2022-blake3-chacha20-poly1305", "s/GB", False),
]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- processes

class Procs:
    """Every child process this harness starts; all are stopped on exit or signal."""

    def __init__(self):
        self.live = []
        self.logdir = None

    def start(self, name, cmd, env=None):
        logf = open(os.path.join(self.logdir, f"{name}.log"), "ab")
        logf.write(("$ " + " ".join(cmd) + "\n").encode())
        logf.flush()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             env=env)
        logf.close()
        p.bench_name = name
        self.live.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(self.live):
            self.stop(p)


PROCS = Procs()
atexit.register(PROCS.stop_all)


def _on_signal(signum, _frame):
    PROCS.stop_all()
    sys.exit(128 + signum)


def free_port():
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


def listening(port, proto="tcp", pid="self"):
    """Is `port` bound (TCP: listening) in the network namespace of `pid`? Read from /proc, so
    nothing connects to it (a probe connection through a tunnel would reach iperf3 as a bogus
    client)."""
    want = f":{port:04X}"
    for path in (f"/proc/{pid}/net/{proto}", f"/proc/{pid}/net/{proto}6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(want) and (proto == "udp" or parts[3] == "0A"):
                        return True
        except OSError:
            pass
    return False


def wait_listen(port, proc, timeout=15, proto="tcp"):
    """Waits until `proc` (or anything in its network namespace) has bound `port`."""
    end = time.time() + timeout
    while time.time() < end:
        if listening(port, proto, proc.pid):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.bench_name} exited with {proc.returncode} before listening "
                               f"on {proto} {port}: {log_tail(proc)}")
        time.sleep(0.02)
    raise RuntimeError(f"{proc.bench_name} never listened on {proto} {port}: {log_tail(proc)}")


def log_tail(proc, n=5):
    try:
        with open(os.path.join(PROCS.logdir, f"{proc.bench_name}.log"), "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return " | ".join(lines[-n:])
    except OSError:
        return "(no log)"


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ---------------------------------------------------------------- implementations

class Impls:
    """Command lines of each implementation; flags differ between them (see the report)."""

    def __init__(self, args, smol_bin, ssrust_dir):
        self.args = args
        self.smol = smol_bin
        self.sslocal = os.path.join(ssrust_dir, "sslocal") if ssrust_dir else None
        self.ssserver = os.path.join(ssrust_dir, "ssserver") if ssrust_dir else None
        # One random PSK per Shadowsocks 2022 method for the whole session, shared by every
        # client/server pair; AEAD-2017 methods take the password.
        self.keys = {m: base64.b64encode(os.urandom(n)).decode() for m, n in PSK_BYTES.items()}

    def key(self, method):
        return self.keys.get(method, PASSWORD)

    def smol_extra(self):
        return ["--pool-blocks", str(self.args.pool_blocks)] if self.args.pool_blocks else []

    def ssrust_extra(self):
        t = self.args.ssrust_threads
        if t == 0:
            return []
        return ["--single-threaded"] if t == 1 else ["--worker-threads", str(t)]

    def server(self, impl, port, method):
        if impl == "ss-smol":
            return [self.smol, "server", "-s", "127.0.0.1", "-p", str(port), "-k", self.key(method),
                    "-m", method, "--allow-private-targets"] + self.smol_extra()
        if impl == "libev":
            return ["ss-server", "-s", "127.0.0.1", "-p", str(port), "-k", self.key(method), "-m", method]
        return [self.ssserver, "-s", f"127.0.0.1:{port}", "-k", self.key(method), "-m", method] + \
            self.ssrust_extra()

    def client(self, impl, mode, sport, lport, method, forward=None, mipsel=False):
        """mode: 'tunnel' (to `forward`) or 'socks'."""
        common = ["-s", "127.0.0.1", "-p", str(sport), "-b", "127.0.0.1", "-l", str(lport),
                  "-k", self.key(method), "-m", method]
        fwd = ["-L", forward] if mode == "tunnel" else []
        if impl == "ss-smol":
            if mipsel:
                return ["qemu-mipsel-static", self.args.mipsel_bin,
                        "tunnel" if mode == "tunnel" else "local"] + common + fwd
            return [self.smol, "tunnel" if mode == "tunnel" else "local"] + common + fwd + \
                self.smol_extra()
        if impl == "libev":
            prog = "ss-tunnel" if mode == "tunnel" else "ss-local"
            if mipsel:
                libs = ":".join(os.path.join(MIPSEL_ROOT, d) for d in
                                ("usr/lib/mipsel-linux-gnu", "lib/mipsel-linux-gnu"))
                return ["qemu-mipsel-static", "-L", MIPSEL_ROOT, "-E", f"LD_LIBRARY_PATH={libs}",
                        os.path.join(MIPSEL_ROOT, "usr/bin", prog)] + common + fwd
            return [prog] + common + fwd
        cmd = [self.sslocal, "-b", f"127.0.0.1:{lport}", "-s", f"127.0.0.1:{sport}",
               "-k", self.key(method), "-m", method, "--protocol", mode]
        if mode == "tunnel":
            cmd += ["--forward-addr", forward]
        return cmd + self.ssrust_extra()


# ---------------------------------------------------------------- measurements

class RssSampler(threading.Thread):
    """Highest VmRSS seen for some pids, sampled every 100 ms."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.peak, self.stop = pids, {p: 0 for p in pids}, threading.Event()

    def run(self):
        while not self.stop.is_set():
            for p in self.pids:
                try:
                    self.peak[p] = max(self.peak[p], proc_status(p, "VmRSS"))
                except (OSError, RuntimeError):
                    pass
            self.stop.wait(0.1)


def measure_tput(impls, impl, method, streams, seconds, mipsel=False):
    iport, sport, tport = free_port(), free_port(), free_port()
    started = []
    try:
        ip = PROCS.start("iperf3-server", ["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(iport)])
        started.append(ip)
        srv = PROCS.start(f"{impl}-server", impls.server(impl, sport, method))
        started.append(srv)
        cli = PROCS.start(f"{impl}-tunnel", impls.client(impl, "tunnel", sport, tport, method,
                                                         forward=f"127.0.0.1:{iport}", mipsel=mipsel))
        started.append(cli)
        wait_listen(iport, ip)
        wait_listen(sport, srv)
        wait_listen(tport, cli, timeout=30 if mipsel else 15)
        c0, s0 = cpu_seconds(cli.pid), cpu_seconds(srv.pid)
        sampler = RssSampler([cli.pid, srv.pid])
        sampler.start()
        r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(tport), "-t", str(seconds),
                            "-P", str(streams), "-J"], capture_output=True, text=True,
                           timeout=seconds + 60)
        sampler.stop.set()
        sampler.join()
        c1, s1 = cpu_seconds(cli.pid), cpu_seconds(srv.pid)
        chwm, shwm = proc_status(cli.pid, "VmHWM"), proc_status(srv.pid, "VmHWM")
        try:
            j = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"iperf3 gave no JSON (exit {r.returncode}): {r.stderr.strip()[:300]}")
        if "error" in j:
            raise RuntimeError(f"iperf3: {j['error']}; client log: {log_tail(cli)}; "
                               f"server log: {log_tail(srv)}")
        recv = j["end"]["sum_received"]
        gb = recv["bytes"] / 1e9
        out = {
            "mbps": recv["bits_per_second"] / 1e6,
            "client_cpu_s": c1 - c0,
            "server_cpu_s": s1 - s0,
            "client_cpu_s_per_GB": (c1 - c0) / gb if gb else float("nan"),
            "server_cpu_s_per_GB": (s1 - s0) / gb if gb else float("nan"),
            "server_rss_peak_kib": max(shwm, sampler.peak[srv.pid]),
        }
        if not mipsel:  # under qemu the emulator's RSS says nothing about the binary
            out["client_rss_peak_kib"] = max(chwm, sampler.peak[cli.pid])
        return out
    finally:
        for p in reversed(started):
            PROCS.stop(p)


def measure_connrate(impls, impl, method, conc, seconds, connrate_bin):
    eport, sport, tport = free_port(), free_port(), free_port()
    started = []
    try:
        echo = PROCS.start("connrate-serve", [connrate_bin, "serve", str(eport), "16"])
        started.append(echo)
        srv = PROCS.start(f"{impl}-server", impls.server(impl, sport, method))
        started.append(srv)
        cli = PROCS.start(f"{impl}-tunnel", impls.client(impl, "tunnel", sport, tport, method,
                                                         forward=f"127.0.0.1:{eport}"))
        started.append(cli)
        wait_listen(eport, echo)
        wait_listen(sport, srv)
        wait_listen(tport, cli)
        c0, s0 = cpu_seconds(cli.pid), cpu_seconds(srv.pid)
        r = subprocess.run([connrate_bin, "client", str(tport), str(conc), str(seconds)],
                           capture_output=True, text=True, timeout=seconds + 60)
        c1, s1 = cpu_seconds(cli.pid), cpu_seconds(srv.pid)
        chwm, shwm = proc_status(cli.pid, "VmHWM"), proc_status(srv.pid, "VmHWM")
        try:
            kv = dict(x.split("=") for x in r.stdout.split())
        except ValueError:
            raise RuntimeError(f"connrate client said {r.stdout!r} {r.stderr!r}")
        ok, err = int(kv["ok"]), int(kv["err"])
        if ok == 0:
            raise RuntimeError(f"no connection completed (errors {err}); client log: {log_tail(cli)}; "
                               f"server log: {log_tail(srv)}")
        return {
            "connrate": float(kv["rate"]),
            "connrate_errors": err,
            "connrate_client_cpu_us_per_conn": (c1 - c0) / ok * 1e6,
            "connrate_server_cpu_us_per_conn": (s1 - s0) / ok * 1e6,
            "connrate_client_rss_peak_kib": chwm,
            "connrate_server_rss_peak_kib": shwm,
        }
    finally:
        for p in reversed(started):
            PROCS.stop(p)


class EchoServer(threading.Thread):
    """Accepts, echoes the first bytes, then holds every connection open until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop = port, threading.Event()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(4096)
        self.srv.settimeout(0.2)

    def run(self):
        conns = []
        while not self.stop.is_set():
            try:
                c, _ = self.srv.accept()
            except socket.timeout:
                continue
            c.settimeout(5)
            try:
                c.sendall(c.recv(16))
            except OSError:
                pass
            conns.append(c)
        for c in conns:
            c.close()
        self.srv.close()


def socks_connect(lport, eport):
    s = socket.create_connection(("127.0.0.1", lport), timeout=10)
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        raise RuntimeError("SOCKS5 method negotiation failed")
    s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + eport.to_bytes(2, "big"))
    rep = b""
    while len(rep) < 10:
        d = s.recv(10 - len(rep))
        if not d:
            raise RuntimeError("SOCKS5 reply cut short")
        rep += d
    if rep[1] != 0:
        raise RuntimeError(f"SOCKS5 CONNECT refused ({rep[1]})")
    s.sendall(b"x")
    if s.recv(1) != b"x":
        raise RuntimeError("no echo through the proxy")
    return s


def measure_memory(impls, impl, method, n):
    eport, sport, lport = free_port(), free_port(), free_port()
    echo = EchoServer(eport)
    echo.start()
    started, conns = [], []
    try:
        srv = PROCS.start(f"{impl}-server", impls.server(impl, sport, method))
        started.append(srv)
        cli = PROCS.start(f"{impl}-local", impls.client(impl, "socks", sport, lport, method))
        started.append(cli)
        wait_listen(sport, srv)
        wait_listen(lport, cli)
        # One warm-up connection so lazily initialised state counts as "idle".
        socks_connect(lport, eport).close()
        time.sleep(1.0)
        c_idle, s_idle = proc_status(cli.pid, "VmRSS"), proc_status(srv.pid, "VmRSS")
        for _ in range(n):
            conns.append(socks_connect(lport, eport))
        time.sleep(1.5)  # past ss-smol's 500 ms first-payload wait: connections are at rest
        c_load, s_load = proc_status(cli.pid, "VmRSS"), proc_status(srv.pid, "VmRSS")
        return {
            "client_rss_idle_kib": c_idle,
            "client_rss_conns_kib": c_load,
            "client_per_conn_bytes": (c_load - c_idle) * 1024 / n,
            "server_rss_idle_kib": s_idle,
            "server_rss_conns_kib": s_load,
            "server_per_conn_bytes": (s_load - s_idle) * 1024 / n,
        }
    finally:
        for c in conns:
            c.close()
        for p in reversed(started):
            PROCS.stop(p)
        echo.stop.set()
        echo.join()


# ---------------------------------------------------------------- setup

def run_cmd(cmd, **kw):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def apt_install(pkgs):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if "iperf3" in pkgs:  # its debconf question: do not start a daemon
        subprocess.run(["debconf-set-selections"], input="iperf3 iperf3/start_daemon boolean false\n",
                       text=True, check=False)
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q",
           "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"] + pkgs
    log("$ " + " ".join(cmd))
    if subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL).returncode != 0:
        run_cmd(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"], env=env)
        run_cmd(cmd, env=env, stdin=subprocess.DEVNULL)


def have_matplotlib(python):
    return subprocess.run([python, "-c", "import matplotlib"], capture_output=True).returncode == 0


def find_ssrust():
    cands = [os.path.dirname(shutil.which("sslocal") or ""),
             os.path.expanduser("~/.cargo/bin"), os.path.join(PEERS, "bin")]
    for d in cands:
        if d and all(os.access(os.path.join(d, b), os.X_OK) for b in ("sslocal", "ssserver")):
            return d
    return None


def install_ssrust():
    log("installing shadowsocks-rust from crates.io (about 10 minutes on 2 cores)")
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(PEERS, "target"))
    run_cmd(["cargo", "install", "shadowsocks-rust@1.25.0", "--locked", "--root", PEERS], env=env)


def mipsel_lib_closure():
    """shadowsocks-libev:mipsel and the library packages it needs, recursively."""
    seen, todo = set(), ["shadowsocks-libev"]
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        out = subprocess.run(["apt-cache", "depends", "--no-recommends", "--no-suggests",
                              "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                              f"{pkg}:mipsel"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            line = line.strip()
            if not (line.startswith("Depends:") or line.startswith("PreDepends:")):
                continue
            name = line.split(":", 1)[1].strip()
            if name.startswith("<"):
                continue
            name = name.split(":")[0]
            # Shared libraries only: not tools such as libcap2-bin or init helpers.
            if name.startswith("lib") and not name.endswith(("-bin", "-utils", "-common")):
                todo.append(name)
    return sorted(seen)


def install_mipsel_libev():
    if os.path.exists(os.path.join(MIPSEL_ROOT, "usr/bin/ss-tunnel")):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    archs = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                           text=True).stdout.split()
    if "mipsel" not in archs:
        run_cmd(["dpkg", "--add-architecture", "mipsel"])
        run_cmd(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"], env=env)
    try:
        pkgs = mipsel_lib_closure()
    except subprocess.CalledProcessError:
        run_cmd(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"], env=env)
        pkgs = mipsel_lib_closure()
    debs = os.path.join(PEERS, "mipsel-debs")
    shutil.rmtree(debs, ignore_errors=True)
    os.makedirs(debs)
    run_cmd(["apt-get", "-o", "APT::Sandbox::User=root", "download"] + [f"{p}:mipsel" for p in pkgs],
            cwd=debs)
    tmp = MIPSEL_ROOT + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for d in sorted(os.listdir(debs)):
        run_cmd(["dpkg", "-x", os.path.join(debs, d), tmp])
    shutil.rmtree(MIPSEL_ROOT, ignore_errors=True)
    os.rename(tmp, MIPSEL_ROOT)


def setup(args):
    if not args.no_install:
        need = []
        if not shutil.which("ss-server"):
            need.append("shadowsocks-libev")
        if not shutil.which("iperf3"):
            need.append("iperf3")
        if not have_matplotlib(sys.executable) and not os.path.exists("/usr/lib/python3/dist-packages/matplotlib"):
            need.append("python3-matplotlib")
        if not shutil.which("nft") and "redir" in args.only:
            need.append("nftables")
        if not shutil.which("qemu-mipsel-static") and "mipsel" in args.only:
            need.append("qemu-user-static")
        if need:
            apt_install(need)
        if "ssrust" in args.impls and not find_ssrust():
            install_ssrust()
    ssrust = find_ssrust()
    if "ssrust" in args.impls and not ssrust:
        sys.exit("shadowsocks-rust (sslocal, ssserver) not found: run without --no-install, "
                 "or leave it out with --impls ss-smol,libev")
    for tool in ("iperf3",) + (("ss-server", "ss-tunnel", "ss-local") if "libev" in args.impls else ()):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: run without --no-install")

    # ss-smol
    if args.bin:
        smol = os.path.abspath(args.bin)
    elif args.build == "router":
        # What an x86_64 router runs, built by the same script as the mipsel binary (which the
        # mipsel rows measure, so it is brought up to date too).
        targets = ["x86_64-unknown-linux-musl"]
        if "mipsel" in args.only and not args.mipsel_bin_given:
            targets.append("mipsel-unknown-linux-musl")
        run_cmd(["bash", os.path.join(ROOT, "cross", "build.sh")] + targets, cwd=ROOT)
        smol = os.path.join(TARGET, "cross", "x86_64-unknown-linux-musl", "ss-smol")
    elif args.build == "musl":
        tgt = "x86_64-unknown-linux-musl"
        if not args.no_install:
            installed = subprocess.run(["rustup", "target", "list", "--installed"],
                                       capture_output=True, text=True).stdout.split()
            if tgt not in installed:
                run_cmd(["rustup", "target", "add", tgt])
        run_cmd(["cargo", "build", "--release", "--target", tgt], cwd=ROOT)
        smol = os.path.join(TARGET, tgt, "release", "ss-smol")
    else:
        run_cmd(["cargo", "build", "--release"], cwd=ROOT)
        smol = os.path.join(TARGET, "release", "ss-smol")
    if not os.access(smol, os.X_OK):
        sys.exit(f"ss-smol binary {smol} not found")

    # connection-rate tool
    src = os.path.join(HERE, "connrate.rs")
    connrate = os.path.join(TARGET, "bench", "connrate")
    if not os.path.exists(connrate) or os.path.getmtime(connrate) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(connrate), exist_ok=True)
        run_cmd(["rustc", "--edition", "2021", "-C", "opt-level=3", "-o", connrate, src])

    # mipsel
    mipsel_ok = False
    args.mipsel_libev = "libev" in args.impls
    if "mipsel" in args.only:
        msg = None
        if not os.access(args.mipsel_bin, os.X_OK):
            msg = (f"mipsel ss-smol not found at {args.mipsel_bin} (build it with cross/build.sh "
                   f"mipsel-unknown-linux-musl, or give --mipsel-bin)")
        else:
            if not args.no_install:
                try:
                    install_mipsel_libev()
                except (subprocess.CalledProcessError, OSError) as e:
                    msg = f"could not unpack Debian's mipsel shadowsocks-libev: {e}"
            if msg is None and not shutil.which("qemu-mipsel-static"):
                msg = "qemu-mipsel-static not found (apt-get install qemu-user-static)"
            if msg is None and "libev" in args.impls and \
                    not os.path.exists(os.path.join(MIPSEL_ROOT, "usr/bin/ss-tunnel")):
                if args.require_mipsel:
                    msg = f"no mipsel shadowsocks-libev in {MIPSEL_ROOT}: run without --no-install"
                else:  # ss-smol's mipsel rows (2017 and 2022) are still worth having
                    log(f"no mipsel shadowsocks-libev in {MIPSEL_ROOT} (run without --no-install): "
                        f"the mipsel rows measure ss-smol only")
                    args.mipsel_libev = False
        if msg is None:
            mipsel_ok = True
        elif args.require_mipsel:
            sys.exit(msg)
        else:
            log(f"SKIPPING the mipsel comparison: {msg}")
    if "redir" in args.only:
        import redir
        why = redir.setup()
        if why:
            sys.exit(f"cannot run the redir tests: {why}")
    return smol, ssrust, connrate, mipsel_ok


def versions(smol, ssrust, args, mipsel_ok):
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    def deb(pkg):
        return out(["dpkg-query", "-W", "-f", "${Version}", pkg])

    v = {"ss-smol": out([smol, "--version"]) + f" ({args.bin or args.build + ' build'})",
         "libev": "shadowsocks-libev " + deb("shadowsocks-libev") + " (Debian)",
         "ssrust": (out([os.path.join(ssrust, "sslocal"), "--version"]) if ssrust else "-") +
         (" (crates.io, default runtime)" if args.ssrust_threads == 0 else
          " (crates.io, --single-threaded)" if args.ssrust_threads == 1 else
          f" (crates.io, --worker-threads {args.ssrust_threads})")}
    v = {k: x for k, x in v.items() if k in args.impls}
    v["iperf3"] = out(["iperf3", "--version"])
    if mipsel_ok:
        libev = f"; shadowsocks-libev:mipsel {deb_version_in_root()}" if args.mipsel_libev else ""
        v["mipsel"] = (f"ss-smol {args.mipsel_bin}{libev} under "
                       f"{out(['qemu-mipsel-static', '--version'])}")
    return v


def deb_version_in_root():
    debs = os.path.join(PEERS, "mipsel-debs")
    for d in sorted(os.listdir(debs)) if os.path.isdir(debs) else []:
        if d.startswith("shadowsocks-libev_"):
            return d.split("_")[1]
    return "?"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {len(os.sched_getaffinity(0))} cores, Linux {platform.release()}"


def busy_jiffies():
    """Non-idle CPU time of the whole machine (all cores), in seconds, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user). irq and softirq
    # are left out: loopback TCP is processed in softirq, charged there rather than to the
    # processes of the session, so it would count as "others" in proportion to throughput.
    return (v[0] + v[1] + v[2] + (v[7] if len(v) > 7 else 0)) / TICK


def own_cpu():
    """CPU seconds of this harness and of every child it has waited for."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ---------------------------------------------------------------- session

def impls_for(args, short):
    """The implementations that take part in a test of method `short`: no libev for 2022."""
    if short in CIPHERS_2022:
        return [i for i in args.impls if i not in NO_2022]
    return args.impls


def plan(args, mipsel_ok):
    """(test name, impls, callable(impls_obj, impl) -> {metric: value}) in session order.
    The AEAD-2017 tests keep their historical names (connrate, memory: chacha20 only); the 2022
    ones carry the method: connrate_2022chacha20, memory_2022chacha20, …"""
    tests = []
    methods = [(s, ALL_CIPHERS[s]) for s in args.methods]
    if "tput" in args.only:
        for streams in (1, 8):
            for short, method in methods:
                name = f"tput_{short}_P{streams}"
                tests.append((name, impls_for(args, short),
                              lambda I, impl, m=method, s=streams: measure_tput(I, impl, m, s, args.seconds)))
    # connection rate and idle memory: chacha20 (AEAD-2017) as before, and every 2022 method
    per_conn = [(s, m) for s, m in methods if s == "chacha20" or s in CIPHERS_2022]
    if "connrate" in args.only:
        for short, method in per_conn:
            tests.append(("connrate" if short == "chacha20" else f"connrate_{short}", impls_for(args, short),
                          lambda I, impl, m=method: measure_connrate(I, impl, m, args.conc,
                                                                     args.connrate_seconds, I.connrate)))
    if "memory" in args.only:
        for short, method in per_conn:
            tests.append(("memory" if short == "chacha20" else f"memory_{short}", impls_for(args, short),
                          lambda I, impl, m=method: measure_memory(I, impl, m, args.idle_conns)))
    if "redir" in args.only:
        import redir  # loaded by setup() already
        tests += redir.plan(args)
    if mipsel_ok:
        # AEAD-2017: ss-smol and (when unpacked) Debian's mipsel libev. 2022 ChaCha20: ss-smol
        # alone, set against its own AEAD-2017 ChaCha20 (a target), so that row is measured too
        # when only 2022chacha20 was asked for. 2022 AES is left out: software AES on mipsel is
        # what the aes256 row shows already.
        mimpls = [i for i in args.impls if i == "ss-smol" or (i == "libev" and args.mipsel_libev)]
        mipsel = [(s, m, mimpls) for s, m in methods if s in CIPHERS]
        if "2022chacha20" in args.methods:
            if "chacha20" not in args.methods:
                mipsel.insert(0, ("chacha20", CIPHERS["chacha20"], ["ss-smol"]))
            mipsel.append(("2022chacha20", CIPHERS_2022["2022chacha20"], ["ss-smol"]))
        for short, method, who in mipsel:
            tests.append((f"mipsel_tput_{short}_P1", who,
                          lambda I, impl, m=method: measure_tput(I, impl, m, 1, args.seconds, mipsel=True)))
    return tests


def metrics_of(test, res):
    """Flatten one measurement into {metric: value}."""
    if test == "memory":
        return dict(res)
    if test == "connrate" or test.startswith("redir"):
        return dict(res)
    if test.startswith(("connrate_", "memory_")):  # a 2022 method: its metrics carry it
        tail = test.split("_", 1)[1]
        return {f"{k}_{tail}": v for k, v in res.items()}
    # throughput tests: tput_chacha20_P1 / mipsel_tput_chacha20_P1
    prefix = "mipsel_" if test.startswith("mipsel_") else ""
    tail = test.split("tput_", 1)[1]  # chacha20_P1
    m = {f"{prefix}tput_{tail}": res["mbps"]}
    for k, v in res.items():
        if k != "mbps":
            m[f"{prefix}{k}_{tail}"] = v
    if test == "tput_chacha20_P8":
        m["client_rss_full_kib"] = res.get("client_rss_peak_kib")
        m["server_rss_full_kib"] = res.get("server_rss_peak_kib")
    return {k: v for k, v in m.items() if v is not None}


def unit_of(metric):
    for key, _label, unit, _hib in KEY_METRICS:
        if key == metric:
            return unit
    for suffix, unit in (("_kib", "KiB"), ("_bytes", "bytes"), ("_per_GB", "s/GB"), ("cpu_s", "s"),
                         ("_per_conn", "µs"), ("errors", "count"), ("lost", "count")):
        if suffix in metric:
            return unit
    return "Mbit/s" if "tput" in metric else ""


def estimate_seconds(args, tests):
    per = 0
    for name, impls, _ in tests:
        if name.startswith("mipsel"):
            each = args.seconds + 5
        elif name.startswith("tput"):
            each = args.seconds + 2
        elif name.startswith("connrate"):
            each = args.connrate_seconds + 2
        elif name.startswith("redir_memory"):
            each = 10 + args.idle_conns / 300
        elif name.startswith("redir"):
            each = args.seconds + 3
        else:
            each = 4 + args.idle_conns / 500
        per += each * len(impls)
    return per * args.runs


def session(args, I, tests, csv_path, context):
    rows = []
    fields = ["date", "time", "run", "test", "impl", "metric", "value", "unit", "other_cpu_pct",
              "loadavg", "version"]
    f = open(csv_path, "w", newline="")
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    failures = []
    for run in range(1, args.runs + 1):
        for name, impls, fn in tests:
            # rotate the order every run so no implementation always goes first
            k = (run - 1) % len(impls)
            order = impls[k:] + impls[:k]
            for impl in order:
                la = loadavg()
                b0, o0, w0 = busy_jiffies(), own_cpu(), time.time()
                try:
                    res = fn(I, impl)
                except Exception as e:  # one failed measurement must not end the session
                    failures.append((run, name, impl, str(e)))
                    log(f"run {run} {name} {impl}: FAILED: {e}  (logs in {PROCS.logdir})")
                    continue
                # CPU that processes other than this session's used meanwhile, as a share of
                # the machine: the noise indicator (other engineers compiling, …).
                other = max(0.0, (busy_jiffies() - b0) - (own_cpu() - o0))
                other_pct = 100 * other / ((time.time() - w0) * len(os.sched_getaffinity(0)))
                context["other_cpu"].append(other_pct)
                m = metrics_of(name, res)
                brief = ", ".join(f"{k}={v:.4g}" for k, v in m.items()
                                  if k in dict((x[0], 1) for x in KEY_METRICS) or k == "connrate_errors")
                log(f"run {run} {name:22} {impl:8} {brief} [others used {other_pct:.0f}% CPU]")
                now = datetime.datetime.now()
                for metric, value in m.items():
                    row = {"date": now.date().isoformat(), "time": now.strftime("%H:%M:%S"), "run": run,
                           "test": name, "impl": impl, "metric": metric, "value": f"{value:.6g}",
                           "unit": unit_of(metric), "other_cpu_pct": f"{other_pct:.1f}",
                           "loadavg": f"{la:.2f}",
                           "version": context["versions"].get(impl, "")}
                    w.writerow(row)
                    rows.append(row)
                f.flush()
    f.close()
    return rows, failures


# ---------------------------------------------------------------- report

def summarise(rows):
    """{metric: {impl: (min, median, max, n)}}"""
    vals = {}
    for r in rows:
        vals.setdefault(r["metric"], {}).setdefault(r["impl"], []).append(float(r["value"]))
    return {m: {i: (min(v), statistics.median(v), max(v), len(v)) for i, v in d.items()}
            for m, d in vals.items()}


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def markdown(summary, impls, context, args):
    peers = [i for i in impls if i != "ss-smol"]
    head = ["metric"] + [LABEL[i] for i in impls] + [f"ss-smol / {LABEL[p]}" for p in peers]
    oc = context["other_cpu"]
    busy = (f"other processes used {statistics.median(oc):.0f}% (max {max(oc):.0f}%) of the CPU "
            f"during measurements" if oc else "")
    lines = [f"Measured {context['date']} on {context['machine']}, loopback ({busy}); "
             f"{args.runs} run(s) per implementation, alternating; median (min–max).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, unit, _hib in KEY_METRICS:
        if key not in summary or "ss-smol" not in summary[key]:
            continue
        d = summary[key]
        cells = [f"{label} ({unit})"]
        for i in impls:
            if i in d:
                lo, med, hi, n = d[i]
                cells.append(f"{fmt(med)} ({fmt(lo)}–{fmt(hi)})" if n > 1 else fmt(med))
            elif i in NO_2022 and "2022" in key:
                cells.append("no 2022")
            else:
                cells.append("–")
        for p in peers:
            if p in d and d[p][1]:
                cells.append(f"{d['ss-smol'][1] / d[p][1]:.2f}×")
            else:
                cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Ratios are of medians; for CPU and RSS rows lower is better, so a ratio below 1× "
                 "favours ss-smol.")
    if any("2022" in k for k in summary):
        lines.append("")
        lines.append("Shadowsocks 2022 rows (2022-blake3-…): ss-smol against shadowsocks-rust only, "
                     "shadowsocks-libev has no Shadowsocks 2022 (“no 2022”); the key is a random "
                     "base64 PSK (16 bytes for aes-128-gcm, 32 otherwise), new each session.")
        same = []
        for new, old, what in (("tput_2022chacha20_P1", "tput_chacha20_P1", "ChaCha20, 1 stream"),
                               ("tput_2022aes256_P1", "tput_aes256_P1", "AES-256-GCM, 1 stream"),
                               ("mipsel_tput_2022chacha20_P1", "mipsel_tput_chacha20_P1",
                                "mipsel (qemu) ChaCha20, 1 stream")):
            for i in impls:
                a, b = summary.get(new, {}).get(i), summary.get(old, {}).get(i)
                if a and b and b[1]:
                    same.append(f"{LABEL[i]} {what}: {a[1] / b[1]:.2f}×")
        if same:
            lines.append("2022 / AEAD-2017 throughput of the same implementation: " + "; ".join(same) + ".")
    lines.append("")
    lines.append("Versions: " + "; ".join(f"{k}: {v}" for k, v in context["versions"].items()))
    return "\n".join(lines)


def targets(summary, args):
    """[(description, status, detail)]"""
    out = []

    def med(metric, impl):
        return summary.get(metric, {}).get(impl, (None, None))[1]

    def ratio_check(metric, peer, need, what):
        a, b = med(metric, "ss-smol"), med(metric, peer)
        if a is None or b is None:
            out.append((what, "n/a", "not measured"))
        else:
            r = a / b
            out.append((what, "MET" if r >= need else "NOT MET", f"{r:.2f}× (need ≥ {need}×)"))

    for short, method in CIPHERS.items():
        ratio_check(f"tput_{short}_P1", "libev", 1.5, f"single-stream throughput {method} ≥ 1.5× libev")
        ratio_check(f"tput_{short}_P1", "ssrust", 1.0,
                    f"single-stream throughput {method} ≥ 1.0× shadowsocks-rust")
    v = med("client_rss_idle_kib", "ss-smol")
    out.append(("client idle RSS ≤ 1 MiB", "n/a" if v is None else ("MET" if v <= 1024 else "NOT MET"),
                "not measured" if v is None else f"{v:.0f} KiB"))
    v = med("client_per_conn_bytes", "ss-smol")
    out.append((f"client RSS per idle connection ≤ 4 KiB ({args.idle_conns} connections)",
                "n/a" if v is None else ("MET" if v <= 4096 else "NOT MET"),
                "not measured" if v is None else f"{v:.0f} bytes"))
    blocks = args.pool_blocks or DEFAULT_POOL_BLOCKS
    for side in ("client", "server"):
        idle, full = med(f"{side}_rss_idle_kib", "ss-smol"), med(f"{side}_rss_full_kib", "ss-smol")
        # README: peak buffer memory is blocks × block size, plus as much again of spilled bytes;
        # add 4 KiB for each of the 9 iperf3 connections (8 streams + control).
        if idle is None or full is None:
            out.append((f"{side} RSS at full load bounded by the pool", "n/a", "not measured"))
            continue
        bound = idle + (2 * blocks * BLOCK_BYTES + 9 * 4096) / 1024
        out.append((f"{side} RSS at full load bounded by the pool ({blocks} blocks)",
                    "MET" if full <= bound else "NOT MET",
                    f"peak {full:.0f} KiB ≤ idle {idle:.0f} + 2×{blocks}×{BLOCK_BYTES / 1024:.1f} KiB "
                    f"+ 9×4 KiB = {bound:.0f} KiB"))
    ratio_check("connrate", "libev", 1.0, "connection rate ≥ libev")
    for short, method in CIPHERS.items():
        ratio_check(f"redir_tput_{short}_P1", "libev", 1.0, f"ss-redir throughput {method} ≥ libev")
        a, b = med(f"redir_cpu_s_per_GB_{short}_P1", "ss-smol"), med(f"redir_cpu_s_per_GB_{short}_P1", "libev")
        what = f"ss-redir CPU per GB {method} ≤ 0.67× libev"
        out.append((what, "n/a", "not measured") if a is None or b is None else
                   (what, "MET" if a / b <= 0.67 else "NOT MET", f"{a / b:.2f}× (need ≤ 0.67×)"))
    v = med("redir_per_conn_bytes", "ss-smol")
    out.append((f"ss-redir RSS per idle redirected connection ≤ 3 KiB ({args.idle_conns} connections)",
                "n/a" if v is None else ("MET" if v <= 3072 else "NOT MET"),
                "not measured" if v is None else f"{v:.0f} bytes"))
    for short, method in CIPHERS.items():
        ratio_check(f"mipsel_tput_{short}_P1", "libev", 1.5,
                    f"mipsel (qemu) single-stream throughput {method} ≥ 1.5× libev mipsel")
    # Shadowsocks 2022
    ratio_check("tput_2022chacha20_P1", "ssrust", 1.1,
                "single-stream throughput 2022-blake3-chacha20-poly1305 ≥ 1.1× shadowsocks-rust")
    for short, method in CIPHERS_2022.items():
        v = med(f"client_per_conn_bytes_{short}", "ss-smol")
        if v is None and short != "2022chacha20":
            continue  # only the ChaCha20 one is reported when not measured
        out.append((f"client RSS per idle connection with {method} ≤ 3 KiB ({args.idle_conns} connections)",
                    "n/a" if v is None else ("MET" if v <= 3072 else "NOT MET"),
                    "not measured" if v is None else f"{v:.0f} bytes"))
    a, b = med("mipsel_tput_2022chacha20_P1", "ss-smol"), med("mipsel_tput_chacha20_P1", "ss-smol")
    what = ("mipsel (qemu) single-stream throughput 2022-blake3-chacha20-poly1305 ≥ 1.0× "
            "ss-smol's own chacha20-ietf-poly1305")
    out.append((what, "n/a", "not measured") if a is None or b is None else
               (what, "MET" if a / b >= 1.0 else "NOT MET", f"{a / b:.2f}× (need ≥ 1.0×)"))
    return out


def chart(csv_path, png_path, title):
    script = os.path.join(HERE, "chart.py")
    for py in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(py) and have_matplotlib(py):
            r = subprocess.run([py, script, csv_path, png_path, title])
            return r.returncode == 0
    log("matplotlib not found (apt-get install python3-matplotlib): no chart")
    return False


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per implementation and test (default 5)")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t (default 5)")
    ap.add_argument("--connrate-seconds", type=float, default=5, help="connection-rate window (default 5)")
    ap.add_argument("--conc", type=int, default=16, help="concurrent connection-rate clients (default 16)")
    ap.add_argument("--idle-conns", type=int, default=1000, help="idle connections for memory (default 1000)")
    ap.add_argument("--impls", default="ss-smol,libev,ssrust",
                    help="comma-separated subset of ss-smol,libev,ssrust")
    ap.add_argument("--only", default="tput,connrate,memory,mipsel",
                    help="comma-separated subset of tput,connrate,memory,mipsel,redir (redir: root, "
                         "network namespaces; not in the default set)")
    ap.add_argument("--methods", default=DEFAULT_METHODS,
                    help=f"comma-separated methods, short or full names: {', '.join(ALL_CIPHERS)} "
                         f"(default {DEFAULT_METHODS}). AEAD-2017: tput (chacha20 also connrate and "
                         f"memory, aes256 tput only) against libev and shadowsocks-rust. 2022: tput, "
                         f"connrate and memory against shadowsocks-rust only (libev has no 2022), "
                         f"with a random PSK per session; 2022chacha20 also on mipsel")
    ap.add_argument("--bin", help="ss-smol binary to measure (default: build it)")
    ap.add_argument("--build", choices=["router", "musl", "glibc"], default="router",
                    help="what to build when --bin is not given: cross/build.sh's x86_64 router "
                         "binary (default: what ships), `cargo build --release --target "
                         "x86_64-unknown-linux-musl`, or plain `cargo build --release`")
    ap.add_argument("--mipsel-bin", default=None,
                    help="mipsel ss-smol (default target/cross/mipsel-unknown-linux-musl/ss-smol)")
    ap.add_argument("--require-mipsel", action="store_true", help="fail instead of skipping mipsel")
    ap.add_argument("--pool-blocks", type=int, help="pass --pool-blocks N to ss-smol (default: its own)")
    ap.add_argument("--ssrust-threads", type=int, default=0,
                    help="shadowsocks-rust worker threads: 0 = its default runtime (default), "
                         "1 = --single-threaded, N = --worker-threads N")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="results directory")
    ap.add_argument("--no-install", action="store_true", help="install nothing; fail if a peer is missing")
    args = ap.parse_args()
    args.impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    full = {m: s for s, m in ALL_CIPHERS.items()}
    methods = []
    for m in (t.strip() for t in args.methods.split(",") if t.strip()):
        m = full.get(m, m)
        if m not in ALL_CIPHERS:
            ap.error(f"unknown method {m} (one of {', '.join(list(ALL_CIPHERS) + list(full))})")
        if m not in methods:
            methods.append(m)
    args.methods = methods
    for i in args.impls:
        if i not in IMPLS:
            ap.error(f"unknown implementation {i}")
    if "ss-smol" not in args.impls:
        ap.error("ss-smol must be among --impls")
    args.mipsel_bin_given = args.mipsel_bin is not None
    args.mipsel_bin = os.path.abspath(
        args.mipsel_bin or os.path.join(TARGET, "cross", "mipsel-unknown-linux-musl", "ss-smol"))

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 65536:
        hard = 65536
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    if hard < 4 * args.idle_conns + 200:
        sys.exit(f"open-file limit {hard} too low for {args.idle_conns} connections")

    t0 = time.time()
    smol, ssrust, connrate, mipsel_ok = setup(args)
    I = Impls(args, smol, ssrust)
    I.connrate = connrate
    tests = plan(args, mipsel_ok)
    date = datetime.date.today().isoformat()
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, f"{date}.csv")
    png_path = os.path.join(args.out, f"{date}.png")
    PROCS.logdir = os.path.join(TARGET, "bench", "logs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(PROCS.logdir, exist_ok=True)
    context = {"date": date, "machine": machine(), "load_before": loadavg(),
               "versions": versions(smol, ssrust, args, mipsel_ok), "other_cpu": []}
    log(f"machine: {context['machine']}; load average {context['load_before']:.2f}")
    for k, v in context["versions"].items():
        log(f"  {k}: {v}")
    log(f"setup took {time.time() - t0:.0f} s; measuring {len(tests)} tests × {args.runs} run(s), "
        f"about {estimate_seconds(args, tests) / 60:.0f} minutes")
    t1 = time.time()
    rows, failures = session(args, I, tests, csv_path, context)
    context["load_after"] = loadavg()
    log(f"measuring took {time.time() - t1:.0f} s")
    summary = summarise(rows)
    title = f"ss-smol vs peers, {date}, {context['machine']}"
    chart_ok = chart(csv_path, png_path, title)

    print()
    print(markdown(summary, args.impls, context, args))
    print()
    print("Targets (medians):")
    for what, status, detail in targets(summary, args):
        print(f"  [{status:7}] {what}: {detail}")
    oc = context["other_cpu"]
    if oc and max(oc) > 10:
        print(f"\nNOTE: the machine was busy: other processes used a median {statistics.median(oc):.0f}% "
              f"(max {max(oc):.0f}%) of the CPU during measurements (column other_cpu_pct in the "
              f"CSV); numbers are noisy. Re-run on a quiet machine for the README.")
    if failures:
        print(f"\n{len(failures)} measurement(s) failed (process logs in {PROCS.logdir}):")
        for run, name, impl, err in failures:
            print(f"  run {run} {name} {impl}: {err}")
    else:
        shutil.rmtree(PROCS.logdir, ignore_errors=True)
    print(f"\nCSV: {csv_path}" + (f"\nchart: {png_path}" if chart_ok else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
