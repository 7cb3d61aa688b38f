#!/usr/bin/env python3
"""Guest-instruction profile of ss-smol as `ss-tunnel` under qemu-user: where a router's CPU goes.

    cross/build.sh --profile mipsel-unknown-linux-musl      # unstripped router build
    python3 cross/qemu_profile.py --method chacha20-ietf-poly1305 --mib 1
    python3 cross/qemu_profile.py --bin target/cross-profile/mips-unknown-linux-musl/ss-smol \\
        --qemu qemu-mips-static --method aes-256-gcm --mib 0.25 --direction down

perf cannot see into qemu's translated code, and qemu 7.2 (Debian 12) has no -perfmap. But
qemu can log every translated block with its guest instructions (`-d in_asm`) and every block
it executes (`-d exec`, with `nochain` so that chained blocks are logged too). Weighting each
block's instruction count by its executions gives exact guest instruction counts per function
(the binary must keep its symbol table: build it with `cross/build.sh --profile`).

The client runs twice, once idle and once moving --mib through the tunnel to a sink behind
shadowsocks-libev's native `ss-server`; the difference, per byte moved, is the relay's cost.
Instruction counts are what qemu executes, not time: an instruction qemu emulates with a helper
call (MIPS `swl`/`swr`, say) counts once here and costs far more, so compare with
cross/throughput.py's CPU time too. The log is large (about 400 MB per MiB moved) and goes to a
temporary directory that is removed afterwards.
"""

import argparse
import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import throughput  # noqa: E402  (the sink server and helpers)

PASSWORD = "profile-test"


def run_client(args, server_port, sink_port, nbytes, log):
    tunnel_port = throughput.free_port()
    cmd = [args.qemu, "-d", "in_asm,exec,nochain", "-D", log, args.bin, "tunnel",
           "-s", "127.0.0.1", "-p", str(server_port), "-b", "127.0.0.1", "-l", str(tunnel_port),
           "-k", PASSWORD, "-m", args.method, "-L", f"127.0.0.1:{sink_port}"]
    client = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        throughput.wait_port(tunnel_port, client, timeout=60)
        if nbytes:
            payload = os.urandom(throughput.CHUNK)
            throughput.run_once(args.direction, tunnel_port, client.pid, nbytes, payload)
        time.sleep(0.3)
    finally:
        throughput.stop(client, grace=10)


def instructions_by_function(log):
    """Guest instructions executed per function (the symbol qemu names for each block)."""
    size, name, runs = {}, {}, collections.Counter()
    block, symbol = None, None
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("IN:"):
                symbol, block = line[3:].strip() or "?", None
            elif line.startswith("0x") and symbol is not None:
                pc = int(line.split(":", 1)[0], 16)
                if block is None:
                    block = pc
                    size[block], name[block] = 0, symbol
                size[block] += 1
            elif line.startswith("Trace"):
                # Trace 0: 0x7f...  [00000000/<guest pc>/<flags>/<cflags>] symbol
                runs[int(line.split("[", 1)[1].split("/")[1], 16)] += 1
                symbol = None
    per = collections.Counter()
    for pc, n in runs.items():
        per[name.get(pc, "?")] += n * size.get(pc, 0)
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(
        os.path.dirname(HERE), "target", "cross-profile", "mipsel-unknown-linux-musl", "ss-smol"),
        help="unstripped ss-smol (default: cross/build.sh --profile's mipsel build)")
    ap.add_argument("--qemu", default="qemu-mipsel-static")
    ap.add_argument("--method", default="chacha20-ietf-poly1305")
    ap.add_argument("--mib", type=float, default=1.0, help="MiB moved in the measured run")
    ap.add_argument("--direction", choices=["up", "down"], default="up",
                    help="up: the client seals; down: it opens")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    for tool in (args.qemu, "ss-server"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found")
    if not os.path.isfile(args.bin):
        sys.exit(f"{args.bin} not found: run cross/build.sh --profile first")

    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(16)
    threading.Thread(target=throughput.serve, args=(sink, os.urandom(throughput.CHUNK)),
                     daemon=True).start()
    server_port = throughput.free_port()
    server = subprocess.Popen(["ss-server", "-s", "127.0.0.1", "-p", str(server_port),
                               "-k", PASSWORD, "-m", args.method],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nbytes = int(args.mib * 1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="ss-smol-qemu-profile-") as tmp:
        try:
            throughput.wait_port(server_port, server)
            idle_log, busy_log = os.path.join(tmp, "idle.log"), os.path.join(tmp, "busy.log")
            run_client(args, server_port, sink.getsockname()[1], 0, idle_log)
            run_client(args, server_port, sink.getsockname()[1], nbytes, busy_log)
            idle, busy = instructions_by_function(idle_log), instructions_by_function(busy_log)
        finally:
            server.terminate()
            server.wait()
    moved = collections.Counter({k: v - idle.get(k, 0) for k, v in busy.items()})
    total = sum(v for v in moved.values() if v > 0)
    print(f"{args.method} {args.direction}, {args.mib} MiB: {total:,} guest instructions, "
          f"{total / nbytes:.2f} per byte")
    for fn, n in moved.most_common(args.top):
        print(f"{100 * n / total:6.2f}%  {n / nbytes:8.3f}/B  {fn[:140]}")


if __name__ == "__main__":
    main()
