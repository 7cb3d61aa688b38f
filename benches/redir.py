"""ss-redir against shadowsocks-libev's ss-redir, in network namespaces, with the same rules.

Run through benches/run.py (root: it creates namespaces and loads nftables rules):

    python3 benches/run.py --only redir --impls ss-smol,libev

Topology (documentation addresses only; nothing leaves the machine; the namespaces are deleted
when the session ends, also on Ctrl-C):

    lan ─────────────── router ──────────────────── wan
    192.0.2.2           192.0.2.1 | 198.51.100.1     198.51.100.2  (+ 203.0.113.2 on lo)
    iperf3 -c,          ss-redir -b 0.0.0.0 -u,      ss-server (shadowsocks-libev, for both),
    redirload clients   openwrt/files/ss-rules       iperf3 -s, redirload echo servers

lan sends to 203.0.113.2 (routed via router to wan); the router's rules (ss-rules start
--backend nft: TCP REDIRECT, UDP TPROXY, the server bypassed) divert it into ss-redir, which
sends it to the Shadowsocks server on wan, which connects to 203.0.113.2 on its own loopback.
Both implementations get the same rules, the same server and the same flags (-u, a 0.0.0.0
listener: libev cannot serve IPv4 UDP on ::). Only ss-redir's process is measured:

  redir_tput   iperf3, one stream, --seconds, chacha20-ietf-poly1305 and aes-256-gcm:
               throughput, ss-redir's CPU seconds per GB received, its peak RSS.
  redir_udp    16 UDP flows, each a sequential 64-byte request/echo (target/bench/redirload
               udp-rr), --seconds: answered requests per second, ss-redir CPU µs per answer.
  redir_memory ss-redir's RSS at rest after one warm-up connection, then with --idle-conns
               redirected TCP connections established end to end (one byte each way) and left
               idle (RSS added per connection), then its peak RSS while 256 UDP flows are active.
"""

import atexit
import json
import os
import select
import shutil
import subprocess
import sys
import time

import run

LAN, ROUTER, WAN = "lan", "router", "wan"
LAN_IP, ROUTER_LAN_IP, ROUTER_WAN_IP, WAN_IP = "192.0.2.2", "192.0.2.1", "198.51.100.1", "198.51.100.2"
TARGET_IP = "203.0.113.2"
SERVER_PORT, REDIR_PORT, IPERF_PORT, HOLD_PORT, UDP_PORT = 8388, 1080, 5201, 7000, 5300
RULES = os.path.join(run.ROOT, "openwrt", "files", "ss-rules")
LOADER_SRC = os.path.join(run.HERE, "redirload.rs")
LOADER = os.path.join(run.TARGET, "bench", "redirload")
UDP_RATE_FLOWS, UDP_MEMORY_FLOWS = 16, 256


def sh(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {(r.stderr or r.stdout).strip()}")
    return r.stdout


class Topology:
    """Three namespaces wired as in the module doc; `delete()` removes them."""

    def __init__(self):
        self.names = {role: f"ssbench{os.getpid()}-{role}" for role in (LAN, ROUTER, WAN)}
        self.made = []
        try:
            self._build()
        except Exception:
            self.delete()
            raise

    def ns(self, role):
        return self.names[role]

    def cmd(self, role, argv):
        return ["ip", "netns", "exec", self.ns(role)] + argv

    def ip(self, role, *args):
        sh(["ip", "-n", self.ns(role)] + list(args))

    def _build(self):
        for role in (LAN, ROUTER, WAN):
            sh(["ip", "netns", "add", self.ns(role)])
            self.made.append(self.ns(role))
            self.ip(role, "link", "set", "lo", "up")
        sh(self.cmd(ROUTER, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
        self.ip(LAN, "link", "add", "eth0", "type", "veth", "peer", "name", "lan0",
                "netns", self.ns(ROUTER))
        self.ip(ROUTER, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0",
                "netns", self.ns(WAN))
        for role, dev, addr in ((LAN, "eth0", LAN_IP), (ROUTER, "lan0", ROUTER_LAN_IP),
                                (ROUTER, "wan0", ROUTER_WAN_IP), (WAN, "eth0", WAN_IP)):
            self.ip(role, "addr", "add", f"{addr}/24", "dev", dev)
            self.ip(role, "link", "set", dev, "up")
        self.ip(WAN, "addr", "add", f"{TARGET_IP}/32", "dev", "lo")
        self.ip(LAN, "route", "add", "default", "via", ROUTER_LAN_IP)
        self.ip(ROUTER, "route", "add", "203.0.113.0/24", "via", WAN_IP)
        self.ip(WAN, "route", "add", "192.0.2.0/24", "via", ROUTER_WAN_IP)
        sh(self.cmd(ROUTER, ["sh", RULES, "start", "--backend", "nft", "--family", "4",
                             "--tcp-port", str(REDIR_PORT), "--udp-port", str(REDIR_PORT),
                             "--server", WAN_IP, "--dst-default", "forward",
                             "--ifnames", "lan0"]))

    def delete(self):
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.made = []


TOPO = None


def _cleanup():
    run.PROCS.stop_all()  # first: nothing may keep running in a namespace being deleted
    if TOPO:
        TOPO.delete()


def setup():
    """Root check, tools, the load generator, the topology. Returns None or why not."""
    if os.geteuid() != 0:
        return "the ss-redir benchmark needs root (network namespaces, nftables)"
    for tool in ("ip", "nft", "ss-redir", "ss-server", "iperf3"):
        if not shutil.which(tool):
            return f"{tool} not found"
    if not os.path.exists(LOADER) or os.path.getmtime(LOADER) < os.path.getmtime(LOADER_SRC):
        os.makedirs(os.path.dirname(LOADER), exist_ok=True)
        run.run_cmd(["rustc", "--edition", "2021", "-C", "opt-level=3", "-o", LOADER, LOADER_SRC])
    global TOPO
    atexit.register(_cleanup)
    TOPO = Topology()
    return None


# ---------------------------------------------------------------- processes

def start(role, name, argv):
    return run.PROCS.start(name, TOPO.cmd(role, argv))


def wait_bound(proc, ports):
    for proto, port in ports:
        run.wait_listen(port, proc, proto=proto)


def server(method):
    p = start(WAN, "ss-server", ["ss-server", "-s", WAN_IP, "-p", str(SERVER_PORT), "-k",
                                 run.PASSWORD, "-m", method, "-u"])
    wait_bound(p, [("tcp", SERVER_PORT), ("udp", SERVER_PORT)])
    return p


def redir(I, impl, method):
    common = ["-s", WAN_IP, "-p", str(SERVER_PORT), "-b", "0.0.0.0", "-l", str(REDIR_PORT),
              "-k", run.PASSWORD, "-m", method, "-u"]
    argv = [I.smol, "redir"] + common + I.smol_extra() if impl == "ss-smol" else ["ss-redir"] + common
    p = start(ROUTER, f"{impl}-redir", argv)
    wait_bound(p, [("tcp", REDIR_PORT), ("udp", REDIR_PORT)])
    return p


def udp_rr(flows, seconds):
    r = subprocess.run(TOPO.cmd(LAN, [LOADER, "udp-rr", f"{TARGET_IP}:{UDP_PORT}", str(flows),
                                      str(seconds)]),
                       capture_output=True, text=True, timeout=seconds + 30)
    try:
        kv = dict(x.split("=") for x in r.stdout.split())
        return int(kv["ok"]), int(kv["lost"]), float(kv["rate"])
    except (ValueError, KeyError):
        raise RuntimeError(f"redirload udp-rr said {r.stdout!r} {r.stderr!r}")


class Holder:
    """`redirload tcp-open` in lan: N redirected connections held until `close()`."""

    def __init__(self, n, timeout=60):
        self.p = subprocess.Popen(TOPO.cmd(LAN, [LOADER, "tcp-open", f"{TARGET_IP}:{HOLD_PORT}",
                                                 str(n)]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        run.PROCS.live.append(self.p)
        self.p.bench_name = "tcp-open"
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if ready else ""
        if line.strip() != f"ready {n}":
            err = self.p.stderr.read() if self.p.poll() is not None else "(still running)"
            self.close()
            raise RuntimeError(f"{n} redirected connections not established: {line!r} {err.strip()}")

    def close(self):
        if self.p.stdin:
            self.p.stdin.close()
            self.p.stdin = None
        run.PROCS.stop(self.p)


def stopping(started):
    for p in reversed(started):
        run.PROCS.stop(p)


# ---------------------------------------------------------------- measurements

def measure_tput(I, impl, short, seconds):
    method = run.CIPHERS[short]
    started = []
    try:
        started.append(server(method))
        ip = start(WAN, "iperf3-server", ["iperf3", "-s", "-1", "-B", TARGET_IP, "-p",
                                          str(IPERF_PORT)])
        started.append(ip)
        wait_bound(ip, [("tcp", IPERF_PORT)])
        rd = redir(I, impl, method)
        started.append(rd)
        c0 = run.cpu_seconds(rd.pid)
        sampler = run.RssSampler([rd.pid])
        sampler.start()
        r = subprocess.run(TOPO.cmd(LAN, ["iperf3", "-c", TARGET_IP, "-p", str(IPERF_PORT),
                                          "-t", str(seconds), "-J"]),
                           capture_output=True, text=True, timeout=seconds + 60)
        sampler.stop.set()
        sampler.join()
        c1 = run.cpu_seconds(rd.pid)
        hwm = run.proc_status(rd.pid, "VmHWM")
        try:
            j = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"iperf3 gave no JSON (exit {r.returncode}): {r.stderr.strip()[:300]}")
        if "error" in j:
            raise RuntimeError(f"iperf3: {j['error']}; ss-redir log: {run.log_tail(rd)}")
        recv = j["end"]["sum_received"]
        gb = recv["bytes"] / 1e9
        return {
            f"redir_tput_{short}_P1": recv["bits_per_second"] / 1e6,
            f"redir_cpu_s_per_GB_{short}_P1": (c1 - c0) / gb if gb else float("nan"),
            f"redir_rss_peak_kib_{short}_P1": max(hwm, sampler.peak[rd.pid]),
        }
    finally:
        stopping(started)


def measure_udp(I, impl, seconds):
    method = run.CIPHERS["chacha20"]
    started = []
    try:
        started.append(server(method))
        echo = start(WAN, "udp-echo", [LOADER, "udp-echo", f"{TARGET_IP}:{UDP_PORT}"])
        started.append(echo)
        wait_bound(echo, [("udp", UDP_PORT)])
        rd = redir(I, impl, method)
        started.append(rd)
        c0 = run.cpu_seconds(rd.pid)
        ok, lost, rate = udp_rr(UDP_RATE_FLOWS, seconds)
        c1 = run.cpu_seconds(rd.pid)
        if ok == 0:
            raise RuntimeError(f"no UDP request answered ({lost} lost); log: {run.log_tail(rd)}")
        return {"redir_udp_rr": rate, "redir_udp_lost": lost,
                "redir_udp_cpu_us_per_rr": (c1 - c0) / ok * 1e6}
    finally:
        stopping(started)


def measure_memory(I, impl, n):
    method = run.CIPHERS["chacha20"]
    started, holders = [], []
    try:
        started.append(server(method))
        hold = start(WAN, "tcp-hold", [LOADER, "tcp-hold", f"{TARGET_IP}:{HOLD_PORT}"])
        started.append(hold)
        echo = start(WAN, "udp-echo", [LOADER, "udp-echo", f"{TARGET_IP}:{UDP_PORT}"])
        started.append(echo)
        wait_bound(hold, [("tcp", HOLD_PORT)])
        wait_bound(echo, [("udp", UDP_PORT)])
        rd = redir(I, impl, method)
        started.append(rd)
        # One warm-up connection so lazily initialised state counts as "idle".
        Holder(1).close()
        time.sleep(1.0)
        idle = run.proc_status(rd.pid, "VmRSS")
        holders.append(Holder(n))
        time.sleep(1.5)  # past ss-smol's first-payload wait: the connections are at rest
        loaded = run.proc_status(rd.pid, "VmRSS")
        holders.pop().close()
        time.sleep(1.0)
        sampler = run.RssSampler([rd.pid])
        sampler.start()
        ok, lost, _rate = udp_rr(UDP_MEMORY_FLOWS, 3)
        sampler.stop.set()
        sampler.join()
        if ok == 0:
            raise RuntimeError(f"no UDP request answered with {UDP_MEMORY_FLOWS} flows")
        return {"redir_rss_idle_kib": idle, "redir_rss_conns_kib": loaded,
                "redir_per_conn_bytes": (loaded - idle) * 1024 / n,
                "redir_rss_udp256_kib": sampler.peak[rd.pid], "redir_udp256_lost": lost}
    finally:
        for h in holders:
            h.close()
        stopping(started)


def plan(args):
    """benches/run.py's (test name, impls, callable) for the redir tests."""
    impls = [i for i in args.impls if i in ("ss-smol", "libev")]
    tests = []
    for short in run.CIPHERS:
        tests.append((f"redir_tput_{short}", impls,
                      lambda I, impl, s=short: measure_tput(I, impl, s, args.seconds)))
    tests.append(("redir_udp", impls, lambda I, impl: measure_udp(I, impl, args.seconds)))
    tests.append(("redir_memory", impls, lambda I, impl: measure_memory(I, impl, args.idle_conns)))
    return tests


if __name__ == "__main__":
    sys.exit("run it as: python3 benches/run.py --only redir --impls ss-smol,libev")
