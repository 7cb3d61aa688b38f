#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each one briefly from its seed corpus; for CI.
#
#   fuzz/run.sh                  all targets, FUZZ_SECONDS (default 20) each
#   fuzz/run.sh address aead_tcp only these
#
# Environment:
#   FUZZ_SECONDS  libFuzzer -max_total_time per target (default 20)
#   FUZZ_JOBS     targets fuzzed at once (default: number of CPUs, at most 4)
#
# Uses the nightly pinned in cross/nightly-toolchain.toml; installs it and cargo-fuzz when
# missing. Builds with fuzz/Cargo.lock as committed (fails if it is stale). Each target fuzzes
# into a temporary copy of fuzz/corpus/<target>/ (the committed seeds), so nothing a run
# generates lands in the work tree except crash inputs in fuzz/artifacts/<target>/ (ignored).
# Prints one line per target and exits non-zero if any target failed to build or crashed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here" || exit 2
export PATH="$HOME/.cargo/bin:$PATH"

seconds=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
((jobs > 4)) && jobs=4
((jobs < 1)) && jobs=1

say() { printf 'fuzz: %s\n' "$*" >&2; }
start=$SECONDS

# cargo-fuzz needs nightly (-Z sanitizer flags): the one pinned for the router build.
nightly=$(bash "$here/../cross/build.sh" --nightly) || { say "no nightly toolchain"; exit 2; }
if ! cargo "+$nightly" fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked || { say "cannot install cargo-fuzz"; exit 2; }
fi

# `cargo fuzz build` has no --locked and would quietly rewrite a stale Cargo.lock; a locked
# fetch first fails instead, and after it the build has nothing left to change.
if ! cargo "+$nightly" fetch --locked --quiet; then
    say "fuzz/Cargo.lock is not current: run \`cargo +$nightly fetch\` in fuzz/ and commit it"
    exit 1
fi
say "building all targets with $nightly"
if ! cargo "+$nightly" fuzz build; then
    say "build failed"
    exit 1
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo "+$nightly" fuzz list)
fi
triple=$(rustc "+$nightly" -vV | sed -n 's/^host: //p')
bindir="$here/target/$triple/release"

work=$(mktemp -d "${TMPDIR:-/tmp}/ss-smol-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Runs one target; its libFuzzer output goes to $work/<target>.log, its exit code to .rc.
fuzz_one() {
    local t=$1 corpus="$work/corpus-$1"
    mkdir -p "$corpus" "$here/artifacts/$t"
    cp "$here/corpus/$t"/seed-* "$corpus/" 2>/dev/null
    "$bindir/$t" "$corpus" \
        -max_total_time="$seconds" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="$here/artifacts/$t/" \
        >"$work/$t.log" 2>&1
    echo $? >"$work/$t.rc"
}

say "running ${#targets[@]} targets, ${seconds}s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
    if [[ ! -x "$bindir/$t" ]]; then
        echo 2 >"$work/$t.rc"
        echo "no binary $bindir/$t" >"$work/$t.log"
        continue
    fi
    fuzz_one "$t" &
    running=$((running + 1))
    if ((running >= jobs)); then
        wait -n
        running=$((running - 1))
    fi
done
wait

# Details of failures first, then one line per target.
failed=0
summary=()
for t in "${targets[@]}"; do
    rc=$(cat "$work/$t.rc" 2>/dev/null || echo "?")
    log="$work/$t.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [[ $rc == 0 ]]; then
        summary+=("$(printf '%-16s ok      %s runs, %s, corpus %s inputs' "$t" "${runs:-?}" \
            "${cov:-cov: ?}" "$(find "$work/corpus-$t" -type f | wc -l)")")
        continue
    fi
    failed=1
    crash=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
    what=$(grep -m1 -A1 'panicked at' "$log" | tr '\n' ' ')
    [[ -n $what ]] || what=$(grep -m1 -o -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer): [a-z -]+' "$log")
    summary+=("$(printf '%-16s FAILED  exit %s: %s%s' "$t" "$rc" "${what:-see log above}" \
        "${crash:+; input $crash}")")
    {
        echo "---- $t: what libFuzzer said (full log: run the reproduce line) ----"
        grep -A2 'panicked at' "$log" | head -6
        grep -A12 -E '^==[0-9]+==ERROR: (AddressSanitizer|LeakSanitizer)' "$log" | head -14
        grep -E 'ERROR: libFuzzer|^SUMMARY:|^MS: ' "$log"
        if [[ -n $crash && -f $crash ]]; then
            echo "---- $t: crashing input (hex) ----"
            od -An -tx1 -v "$crash" | tr -d ' \n' | fold -w 128
            echo
            echo "reproduce: cd fuzz && cargo +$nightly fuzz run $t $crash"
        fi
    } >&2
done
printf '%s\n' "${summary[@]}"

say "done in $((SECONDS - start))s"
exit $failed
