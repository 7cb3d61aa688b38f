#!/usr/bin/env bash
# The project's single test command (see README): installs what the tests need, then runs every
# test target with missing tools turned into failures.
#
#   bash tests/run-all.sh            # as root on a fresh Debian machine, or wherever the tools are
#
# Extra arguments are passed to `cargo test` (e.g. `bash tests/run-all.sh -- --test-threads=1`).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# dnsmasq, nft, ip live in sbin; a non-login shell may not have it on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# --- System packages: "command it provides:Debian package", installed only when missing. -------
TOOLS=(
    ss-server:shadowsocks-libev
    ss-local:shadowsocks-libev
    ss-tunnel:shadowsocks-libev
    ss-redir:shadowsocks-libev
    curl:curl
    python3:python3
    socat:socat
    iperf3:iperf3
    dnsmasq:dnsmasq-base
    qemu-mipsel-static:qemu-user-static
    qemu-mips-static:qemu-user-static
    qemu-aarch64-static:qemu-user-static
    file:file
)
missing=()
for entry in "${TOOLS[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "run-all.sh: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # iperf3 asks whether to start a daemon; never.
    echo 'iperf3 iperf3/start_daemon boolean false' | debconf-set-selections 2>/dev/null || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Rust components used by .ci/run. -------------------------------------------------------------
if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi

# --- Static router binaries (cross/): tests/cross_qemu.rs runs them under qemu-user. ----------
log "cross/build.sh (installs nightly rust-src, zig, cargo-zigbuild when missing)"
cross_status=0
bash cross/build.sh || cross_status=1   # on failure the cross_qemu tests fail too (REQUIRE_ALL)

# --- Tests. ---------------------------------------------------------------------------------------
# Every skip ("tool not found") becomes a failure.
export SS_SMOL_REQUIRE_ALL=1
# The development switch that points the tests at libev's ss-local/ss-tunnel must never leak in.
unset SS_SMOL_CLIENT_UNDER_TEST

test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT
log "cargo test --all-targets --no-fail-fast $*"
set +e
cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee "$test_log"
test_status=${PIPESTATUS[0]}
set -e

# --- Fuzz: build every cargo-fuzz target and run each briefly (fails on any crash). ----------
fuzz_status=0
log "fuzz/run.sh (FUZZ_SECONDS=${FUZZ_SECONDS:=10})"
FUZZ_SECONDS=$FUZZ_SECONDS bash fuzz/run.sh || fuzz_status=$?

# --- Summary over every test binary. --------------------------------------------------------------
summary=$(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i
            if ($(i + 1) ~ /^failed/) f += $i
            if ($(i + 1) ~ /^ignored/) s += $i
        }
        n++
    }
    END { printf "%d %d %d %d", n, p, f, s }' "$test_log")
read -r binaries passed failed ignored <<<"$summary"
echo
log "cargo test: ${binaries} test binaries, exit status ${test_status}"
grep -E '^test .* FAILED$' "$test_log" | sed 's/^/    /' || true
echo "tests: ${passed} passed, ${failed} failed, ${ignored} skipped"
log "cross/size.sh (mipsel budget 512 KiB)"
size_status=0
bash cross/size.sh || size_status=1
if ((test_status != 0 || failed != 0 || binaries == 0 || fuzz_status != 0 || cross_status != 0 || size_status != 0)); then
    exit 1
fi
