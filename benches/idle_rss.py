#!/usr/bin/env python3
"""Idle memory of a SOCKS5 client (ss-smol local, libev ss-local or shadowsocks-rust sslocal),
each paired with its own server: RSS of the client at rest, and the RSS added per established
idle connection. The measurement is benches/run.py's `memory` test, run once:

    python3 benches/idle_rss.py -n 1000 --bin target/x86_64-unknown-linux-musl/release/ss-smol
    python3 benches/idle_rss.py -n 300 --impl libev

Starts the implementation's server and a TCP echo server on loopback, then the client under
test; opens N SOCKS5 CONNECTs through it, sends one byte on each and reads the echo (so every
connection is established end to end), waits, and reads VmRSS from /proc. Prints one CSV line:
impl,connections,idle_rss_kib,loaded_rss_kib,per_conn_bytes,server_idle_rss_kib,server_loaded_rss_kib,server_per_conn_bytes
"""
import argparse
import os
import resource
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=run.IMPLS, default="ss-smol")
    ap.add_argument("--bin", default="target/release/ss-smol", help="ss-smol binary")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("-m", default="chacha20-ietf-poly1305")
    ap.add_argument("--pool-blocks", type=int)
    ap.add_argument("--ssrust-threads", type=int, default=0)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    impls = run.Impls(a, os.path.abspath(a.bin), run.find_ssrust())
    with tempfile.TemporaryDirectory() as d:
        run.PROCS.logdir = d
        r = run.measure_memory(impls, a.impl, a.m, a.n)
    print(f"{a.impl},{a.n},{r['client_rss_idle_kib']},{r['client_rss_conns_kib']},"
          f"{r['client_per_conn_bytes']:.0f},{r['server_rss_idle_kib']},{r['server_rss_conns_kib']},"
          f"{r['server_per_conn_bytes']:.0f}")


if __name__ == "__main__":
    main()
