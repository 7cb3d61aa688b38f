#!/usr/bin/env bash
# Static, stripped `ss-smol` for routers, built here with zig as the C toolchain/linker
# (cargo-zigbuild); no Docker. Installs what it needs when it is missing: the nightly toolchain
# pinned in cross/nightly-toolchain.toml with rust-src, rustup targets, zig (PyPI `ziglang`, in
# a venv) and cargo-zigbuild (crates.io).
#
#   cross/build.sh                       # every target, router flavour (what ships)
#   cross/build.sh mipsel-unknown-linux-musl aarch64-unknown-linux-musl
#   cross/build.sh --debug-panics        # normal panic=abort std: panics print a message
#   cross/build.sh --profile mipsel-unknown-linux-musl   # router build with its symbols
#   cross/build.sh --nightly             # only install the pinned nightly; print its name
#   cross/build.sh --has-zig             # exit 0 if zig (pinned version) needs no install
#
# Flavours:
#   router (default)  nightly, std rebuilt for size (-Zbuild-std … optimize_for_size) and
#                     -Cpanic=immediate-abort: a panic aborts with no message. This is the build
#                     that ships and that cross/size.sh checks against the budget.
#                     → target/cross/<target>/ss-smol
#   --debug-panics    panic=abort with the usual message and location (stable for aarch64 and
#                     x86_64, nightly -Zbuild-std=std,panic_abort for the tier-3 mips targets).
#                     → target/cross-debug-panics/<target>/ss-smol
#   --profile         the router flavour, but not stripped: the symbols cross/qemu_profile.py
#                     and perf need to name functions.
#                     → target/cross-profile/<target>/ss-smol
#
# Each flavour builds in its own CARGO_TARGET_DIR (target/cross-build/<flavour>), so neither
# clobbers the dev build in target/release nor rebuilds the other; the targets of one flavour
# share it so host build scripts and proc macros compile once, and all targets are built by one
# cargo invocation so that cargo overlaps their (single-threaded, LTO) final links.
#
# Environment:
#   SS_SMOL_NIGHTLY   toolchain used for nightly builds (default: the one pinned in
#                     cross/nightly-toolchain.toml, installed with rustup when missing)
#   SS_SMOL_ZIG       zig version, from PyPI's `ziglang` (default 0.17.1, the version checked)
#   SS_SMOL_ZIGBUILD  cargo-zigbuild version (default 0.24.1, the version checked)
#   CARGO_BUILD_JOBS  as usual
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(
    mipsel-unknown-linux-musl
    mips-unknown-linux-musl
    aarch64-unknown-linux-musl
    x86_64-unknown-linux-musl
)
# No prebuilt std from rustup: always nightly + -Zbuild-std.
TIER3=" mipsel-unknown-linux-musl mips-unknown-linux-musl "

ZIG_VERSION=${SS_SMOL_ZIG:-0.17.1}
ZIGBUILD=${SS_SMOL_ZIGBUILD:-0.24.1}

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'cross/build.sh: %s\n' "$*" >&2
    exit 1
}

# zig: the pinned version, from PyPI's ziglang, run as `python3 -m ziglang` (see below).
zig_venv=${XDG_CACHE_HOME:-$HOME/.cache}/ss-smol/ziglang-$ZIG_VERSION
zig_python=
for py in python3 "$zig_venv/bin/python3"; do
    if [[ $("$py" -m ziglang version 2>/dev/null) == "$ZIG_VERSION" ]]; then
        zig_python=$(command -v "$py")
        break
    fi
done

# nightly_toolchain: makes sure the pinned nightly (with rust-src) is there; prints its name.
nightly_toolchain() {
    command -v rustup >/dev/null || die "rustup not found (https://rustup.rs)"
    if [[ -n ${SS_SMOL_NIGHTLY:-} ]]; then
        printf '%s\n' "$SS_SMOL_NIGHTLY"
        return
    fi
    local pin
    pin=$(sed -n 's/^channel *= *"\(nightly-[0-9-]*\)".*/\1/p' cross/nightly-toolchain.toml)
    [[ -n $pin ]] || die "cross/nightly-toolchain.toml: no channel = \"nightly-YYYY-MM-DD\""
    local name=$pin sysroot
    if ! rustup run "$pin" rustc -V >/dev/null 2>&1; then
        # A plain `nightly` installed on the day of the pin is the same toolchain; reuse it
        # rather than download it again (rustup cannot tell: its manifest has the date).
        sysroot=$(rustup run nightly rustc --print sysroot 2>/dev/null) || sysroot=
        if [[ -n $sysroot ]] && grep -qx "date = \"${pin#nightly-}\"" \
            "$sysroot/lib/rustlib/multirust-channel-manifest.toml" 2>/dev/null; then
            name=nightly
        else
            log "installing toolchain $pin (cross/nightly-toolchain.toml)"
            rustup toolchain install "$pin" --profile minimal --component rust-src >&2 ||
                die "cannot install $pin"
        fi
    fi
    sysroot=$(rustup run "$name" rustc --print sysroot)
    if [[ ! -d $sysroot/lib/rustlib/src/rust/library ]]; then
        log "adding rust-src to $name"
        rustup component add rust-src --toolchain "$name" >&2
    fi
    printf '%s\n' "$name"
}

flavour=router
targets=()
for arg in "$@"; do
    case $arg in
    --nightly)
        nightly_toolchain
        exit 0
        ;;
    --has-zig) [[ -n $zig_python ]] && exit 0 || exit 1 ;;
    --debug-panics) flavour=debug-panics ;;
    --profile) flavour=profile ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    -*) die "unknown option $arg (see --help)" ;;
    *)
        [[ " ${ALL_TARGETS[*]} " == *" $arg "* ]] ||
            die "unknown target $arg; known: ${ALL_TARGETS[*]}"
        targets+=("$arg")
        ;;
    esac
done
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")

case $flavour in
router) out_root=target/cross ;;
profile)
    out_root=target/cross-profile
    export CARGO_PROFILE_RELEASE_STRIP=false
    ;;
*) out_root=target/cross-debug-panics ;;
esac
export CARGO_TARGET_DIR="$PWD/target/cross-build/$flavour"

# --- Tools, installed only when missing. ---------------------------------------------------------
command -v rustup >/dev/null || die "rustup not found (https://rustup.rs)"
command -v file >/dev/null || die "\`file\` not found (apt-get install file)"

needs_nightly=0
needs_stable_std=()
for t in "${targets[@]}"; do
    if [[ $flavour != debug-panics || $TIER3 == *" $t "* ]]; then
        needs_nightly=1
    else
        needs_stable_std+=("$t")
    fi
done

NIGHTLY=
if ((needs_nightly)); then NIGHTLY=$(nightly_toolchain) || exit 1; fi
if ((${#needs_stable_std[@]})); then
    installed=$(rustup target list --installed)
    for t in "${needs_stable_std[@]}"; do
        grep -qx "$t" <<<"$installed" || {
            log "rustup target add $t"
            rustup target add "$t"
        }
    done
fi

# zig: the pinned version, from PyPI's ziglang. cargo-zigbuild tries `python3 -m ziglang` before a
# `zig` in PATH, and CARGO_ZIGBUILD_PYTHON_PATH names that python3. A python3 that already has
# the version is used as it is; otherwise a venv of our own gets it, as Debian 12 and later
# refuse `pip install` into the system python (PEP 668).
if [[ -z $zig_python ]]; then
    command -v python3 >/dev/null || die "python3 not found (apt-get install python3-venv)"
    log "installing zig $ZIG_VERSION (PyPI ziglang) into $zig_venv"
    rm -rf "$zig_venv"
    python3 -m venv "$zig_venv" ||
        die "cannot create a venv (apt-get install python3-venv)"
    "$zig_venv/bin/python3" -m pip install --quiet --disable-pip-version-check \
        "ziglang==$ZIG_VERSION" || die "cannot install ziglang==$ZIG_VERSION"
    zig_python=$zig_venv/bin/python3
fi
export CARGO_ZIGBUILD_PYTHON_PATH=$zig_python
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
    log "cargo install cargo-zigbuild --locked --version $ZIGBUILD (a few minutes)"
    cargo install cargo-zigbuild --locked --version "$ZIGBUILD"
fi

# --- Build. --------------------------------------------------------------------------------------
# Flags per target, through CARGO_TARGET_<TRIPLE>_RUSTFLAGS so that one cargo invocation can build
# every target (and host build scripts and proc macros get none of them). RUSTFLAGS would
# override those variables, so it must not be set.
if [[ -n ${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-} ]]; then
    die "unset RUSTFLAGS/CARGO_ENCODED_RUSTFLAGS: this script sets the flags per target"
fi

# Fully static: +crt-static (the mips musl targets default to dynamic), and zig's crt objects
# rather than Rust's self-contained ones (without link-self-contained=no the mips builds came out
# static-pie and crashed at start).
STATIC_FLAGS="-C target-feature=+crt-static -C link-self-contained=no"
# Router flavour: a panic aborts at once, with no message, no location strings and no unwind
# tables (nothing unwinds); the C library's unwind tables are dropped at link time too
# (cross/discard-eh-frame.ld).
SMALL_FLAGS="-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Cforce-unwind-tables=no"
# mips: non-PIC code (a static executable needs no PIC; MIPS PIC costs a GOT load and a $gp
# set-up per call: -11 % size, +15 % ChaCha20 throughput) and no .pdr section (see the script).
# LLVM's inliner at threshold 10 (opt-level "z" uses 5, the AEAD crates at 3 use 225 unless
# told): mipsel 524,788 -> 520,692 bytes on 2026-12-05, and under qemu-mipsel (cross/throughput.py,
# 8 MiB x 2) ChaCha20 up/down 139.8/119.8 -> 167.8/167.8 MB per client CPU-second, AES-128-GCM
# 17.1/17.5 -> 16.8/17.5: no loss. Only for the mips targets, where the budget is.
MIPS_FLAGS="-Crelocation-model=static -Cllvm-args=-inline-threshold=10"

# rustflags_for FLAVOUR TARGET
rustflags_for() {
    local flags=$STATIC_FLAGS script=
    [[ $1 != debug-panics ]] && flags+=" $SMALL_FLAGS" script=cross/discard-eh-frame.ld
    if [[ $TIER3 == *" $2 "* ]]; then
        flags+=" $MIPS_FLAGS"
        script=cross/mips-discard.ld
        [[ $1 != debug-panics ]] && script=cross/mips-router.ld
    fi
    # One script per link: zig's linker driver keeps only the last -T. The path is relative:
    # rustc runs the linker in the package root.
    [[ -n $script ]] && flags+=" -Clink-arg=-Wl,-T,$script"
    printf '%s' "$flags"
}

# build TOOLCHAIN "EXTRA CARGO ARGS" TARGET...
build() {
    local toolchain=$1 extra=$2
    shift 2
    local args=() envs=() t
    for t in "$@"; do
        args+=(--target "$t")
        envs+=("CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$t")_RUSTFLAGS=$(rustflags_for "$flavour" "$t")")
    done
    # rustc puts the sysroot's library directory of the target on the link line of every linux
    # target (where rustup's rust-std would have put std, libunwind, sanitizer runtimes). With
    # -Zbuild-std nothing is installed for these targets, the directory does not exist, and
    # zig's linker warns "unable to open library directory" once per target. Empty, it holds
    # exactly what the link needs from it: nothing.
    if [[ $extra == *-Zbuild-std* ]]; then
        local libdir
        for t in "$@"; do
            libdir=$(rustc "+$toolchain" --print target-libdir --target "$t")
            # A read-only toolchain only costs the warning.
            mkdir -p "$libdir" 2>/dev/null || log "cannot create $libdir: the linker will warn"
        done
    fi
    log "[$flavour] cargo +$toolchain zigbuild --release --bin ss-smol $extra ${args[*]}"
    local start=$SECONDS
    # shellcheck disable=SC2086 # $extra is a list of flags
    env "${envs[@]}" cargo "+$toolchain" zigbuild --release --bin ss-smol $extra "${args[@]}"
    log "[$flavour] built $* in $((SECONDS - start)) s"
}

total_start=$SECONDS
if [[ $flavour != debug-panics ]]; then
    build "$NIGHTLY" \
        "-Zbuild-std=std,panic_abort,core,alloc -Zbuild-std-features=optimize_for_size" \
        "${targets[@]}"
else
    nightly_targets=() stable_targets=()
    for t in "${targets[@]}"; do
        if [[ $TIER3 == *" $t "* ]]; then nightly_targets+=("$t"); else stable_targets+=("$t"); fi
    done
    if ((${#nightly_targets[@]})); then
        build "$NIGHTLY" "-Zbuild-std=std,panic_abort" "${nightly_targets[@]}"
    fi
    if ((${#stable_targets[@]})); then
        build stable "" "${stable_targets[@]}"
    fi
fi

# --- Check and copy out. -------------------------------------------------------------------------
status=0
for t in "${targets[@]}"; do
    built="$CARGO_TARGET_DIR/$t/release/ss-smol"
    rm -f "$out_root/$t/ss-smol" # never leave an older binary for the tests to pick up
    [[ -f $built ]] || die "$t: $built was not produced"
    desc=$(file -b "$built")
    if [[ $desc != *"statically linked"* || $desc == *"static-pie"* || $desc == *dynamic* ]]; then
        echo "cross/build.sh: $t: not a static (non-PIE) executable: $desc" >&2
        status=1
        continue
    fi
    if [[ $desc == *"not stripped"* && $flavour != profile ]]; then
        echo "cross/build.sh: $t: not stripped: $desc" >&2
        status=1
        continue
    fi
    mkdir -p "$out_root/$t"
    cp -f "$built" "$out_root/$t/ss-smol"
    printf '%-28s %9d bytes  %s\n' "$t" "$(stat -c %s "$built")" "$out_root/$t/ss-smol"
done
log "[$flavour] total $((SECONDS - total_start)) s"
exit "$status"
