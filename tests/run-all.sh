#!/usr/bin/env bash
# The project's single test command (see README): installs what the tests need, then runs every
# test target, the `#[ignore]`d ones (those needing external tools) included.
#
#   bash tests/run-all.sh                  # as root on Debian 12/13 or Ubuntu 24.04, or wherever
#                                          # the tools are already installed
#   bash tests/run-all.sh --install-only   # only the Debian packages, then stop
#
# Needs Rust stable through rustup (https://rustup.rs); installs with apt-get what is missing:
# shadowsocks-libev, simple-obfs, shadowsocks-v2ray-plugin, curl, dnsmasq-base and
# qemu-user-static (the tests' peers), file
# (cross/build.sh), gcc, g++ and libc6-dev (rustc links with `cc`; libfuzzer-sys is C++), and
# python3-venv when cross/build.sh has to install zig; tar, gzip and shellcheck
# (openwrt/build-packages.sh and its test). cross/build.sh and fuzz/run.sh add the
# pinned nightly, zig, cargo-zigbuild and cargo-fuzz themselves; ../shared/vendor/pkgtools/build.sh
# (OpenWrt's opkg and apk-tools 3, for tests/openwrt_packages.rs) installs its own build deps.
# shadowsocks-rust 1.25.0 (sslocal, ssserver: tests/interop_ssrust.rs) comes from crates.io with
# `cargo install` into target/bench-peers, the same build benches/run.py uses (~10 min on 2 cores,
# only when target/bench-peers/bin has no 1.25.0 yet).
#
# Extra arguments are passed to `cargo test`, those after `--` to the test binaries
# (e.g. `bash tests/run-all.sh -- --test-threads=1`).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

install_only=0
if [[ ${1:-} == --install-only ]]; then
    install_only=1
    shift
fi

# dnsmasq lives in sbin; a non-login shell may not have it on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# --- System packages, installed only when missing. -----------------------------------------------
# "command it provides:Debian package"; a command found anywhere in PATH will do.
TOOLS=(
    ss-server:shadowsocks-libev
    ss-local:shadowsocks-libev
    ss-tunnel:shadowsocks-libev
    ss-redir:shadowsocks-libev
    obfs-local:simple-obfs
    obfs-server:simple-obfs
    ss-v2ray-plugin:shadowsocks-v2ray-plugin
    nft:nftables
    iptables-legacy:iptables
    ipset:ipset
    busybox:busybox
    dash:dash
    curl:curl
    dnsmasq:dnsmasq-base
    qemu-mipsel-static:qemu-user-static
    qemu-mips-static:qemu-user-static
    qemu-aarch64-static:qemu-user-static
    file:file
    cc:gcc
    c++:g++
    tar:tar
    gzip:gzip
    shellcheck:shellcheck
)
missing=()
for entry in "${TOOLS[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done
# The C library's headers and crt objects that `cc` links Rust programs with; no command to look
# for, so ask dpkg (on a system without dpkg, cc working is all that can be checked).
if command -v dpkg-query >/dev/null &&
    [[ $(dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null) != *" installed" ]]; then
    missing+=(libc6-dev)
fi
# zig for cross/build.sh: when no python3 has the pinned ziglang yet, the script makes a venv,
# which on Debian takes python3-venv (ensurepip is split out of the system python).
if ! bash cross/build.sh --has-zig && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "run-all.sh: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ((install_only)); then
    log "system packages in place; stopping (--install-only)"
    exit 0
fi

# --- The machine: the tests bind [::1] as well as 127.0.0.1. --------------------------------------
# Without an IPv6 loopback (a container started with IPv6 disabled) those tests would fail with
# "Cannot assign requested address" as though the code were broken; say what is wrong instead.
if ! grep -qiE '^0{31}1 .* lo$' /proc/net/if_inet6 2>/dev/null; then
    echo "run-all.sh: the loopback interface has no IPv6 address ::1, which the tests use." >&2
    echo "  Enable it (sysctl -w net.ipv6.conf.lo.disable_ipv6=0, or start the container" >&2
    echo "  with IPv6 enabled) and run again." >&2
    exit 1
fi

# --- Rust components used by .ci/run. -------------------------------------------------------------
if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi

# --- shadowsocks-rust, the peer of tests/interop_ssrust.rs (SIP022 methods). ---------------------
# Pinned, so that every run tests against the same peer; built where benches/run.py builds it
# (target/bench-peers), so both share one install. The tests look in SS_SMOL_SSRUST_DIR, then
# target/bench-peers/bin, then PATH; here they get the pinned build, whatever the caller had set.
SSRUST_VERSION=1.25.0
ssrust_bin=target/bench-peers/bin
ssrust_ok() {
    local b
    for b in sslocal ssserver; do
        [[ -x $ssrust_bin/$b ]] || return 1
        "$ssrust_bin/$b" --version 2>/dev/null | grep -qw "$SSRUST_VERSION" || return 1
    done
}
if ssrust_ok; then
    log "shadowsocks-rust $SSRUST_VERSION already in $ssrust_bin"
else
    log "cargo install shadowsocks-rust@$SSRUST_VERSION (about 10 minutes on 2 cores)"
    CARGO_TARGET_DIR=target/bench-peers/target \
        cargo install "shadowsocks-rust@$SSRUST_VERSION" --locked --root target/bench-peers || true
    # On failure the interop_ssrust tests fail too, naming what is missing.
    ssrust_ok ||
        log "no shadowsocks-rust $SSRUST_VERSION in $ssrust_bin: the interop_ssrust tests will fail"
fi
export SS_SMOL_SSRUST_DIR="$PWD/$ssrust_bin"

# --- Static router binaries (cross/): tests/cross_qemu.rs runs them under qemu-user. ----------
log "cross/build.sh (installs nightly rust-src, zig, cargo-zigbuild when missing)"
cross_status=0
bash cross/build.sh || cross_status=1 # on failure the cross_qemu tests fail too

# --- OpenWrt's package managers: tests/openwrt_packages.rs installs the packages with them. ---
# The kit's build.sh installs its build deps with apt-get and builds into the kit's out/, or
# under ${TMPDIR:-/tmp}/pkgtools-out where the kit is read-only (CI); the test looks in both.
log "../shared/vendor/pkgtools/build.sh (opkg and apk-tools 3)"
bash ../shared/vendor/pkgtools/build.sh ||
    log "pkgtools build failed: the openwrt_packages tests will fail"

# --- Tests. ---------------------------------------------------------------------------------------
# The tests that need external tools are #[ignore]d for a plain `cargo test`; here, where the tools
# are installed, they run too, and a missing tool fails its test (tests/support/mod.rs).
# The development switches that point the tests at libev's programs or another rules script must
# never leak in.
unset SS_SMOL_CLIENT_UNDER_TEST SS_SMOL_REDIR_UNDER_TEST SS_SMOL_RULES SS_SMOL_SSRUST_SELF_TEST

# Our arguments: cargo's before the first `--`, the test binaries' after it.
cargo_args=() harness_args=()
while (($#)); do
    if [[ $1 == -- ]]; then
        shift
        harness_args=("$@")
        break
    fi
    cargo_args+=("$1")
    shift
done

test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT
test_cmd=(cargo test --all-targets --no-fail-fast "${cargo_args[@]}"
    -- --include-ignored "${harness_args[@]}")
log "${test_cmd[*]}"
set +e
"${test_cmd[@]}" 2>&1 | tee "$test_log"
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
# With --include-ignored nothing should be left ignored; a count here means a test slipped past.
echo "tests: ${passed} passed, ${failed} failed, ${ignored} skipped"
log "cross/size.sh (mipsel budget 512 KiB)"
size_status=0
bash cross/size.sh || size_status=1
if ((test_status != 0 || failed != 0 || binaries == 0 || ignored != 0 ||
    fuzz_status != 0 || cross_status != 0 || size_status != 0)); then
    exit 1
fi
