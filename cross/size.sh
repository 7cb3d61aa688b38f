#!/usr/bin/env bash
# Sizes of the router binaries built by cross/build.sh, as a table, and the size budget check:
# exits non-zero when the mipsel binary (every mode compiled in) is missing or over 512 KiB.
#
#   cross/size.sh                   # target/cross (router flavour)
#   cross/size.sh --markdown        # the same as a Markdown table (README)
#   SS_SMOL_CROSS_DIR=target/cross-debug-panics SS_SMOL_SIZE_BUDGET=0 cross/size.sh
#                                   # the --debug-panics flavour, no budget
#
# Environment: SS_SMOL_CROSS_DIR (default target/cross), SS_SMOL_SIZE_BUDGET (bytes, default
# 524288 = 512 KiB; 0 = no check).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(
    mipsel-unknown-linux-musl
    mips-unknown-linux-musl
    aarch64-unknown-linux-musl
    x86_64-unknown-linux-musl
)
BUDGET_TARGET=mipsel-unknown-linux-musl
BUDGET=${SS_SMOL_SIZE_BUDGET:-524288}
DIR=${SS_SMOL_CROSS_DIR:-target/cross}

markdown=0
case ${1:-} in
--markdown) markdown=1 ;;
"") ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
    ;;
esac

kib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1024 }'; }

if ((markdown)); then
    echo "| target | bytes | KiB |"
    echo "|---|---:|---:|"
else
    printf '%-28s %10s %9s  %s\n' target bytes KiB note
fi
status=0
for t in "${TARGETS[@]}"; do
    f="$DIR/$t/ss-smol"
    note=""
    if [[ -f $f ]]; then
        bytes=$(stat -c %s "$f")
        size_kib=$(kib "$bytes")
        if [[ $t == "$BUDGET_TARGET" ]] && ((BUDGET > 0)); then
            if ((bytes > BUDGET)); then
                note="OVER BUDGET by $((bytes - BUDGET)) bytes (budget $BUDGET)"
                status=1
            else
                note="budget $BUDGET: $((BUDGET - bytes)) bytes left"
            fi
        fi
    else
        bytes="-" size_kib="-" note="missing: cross/build.sh $t"
        [[ $t == "$BUDGET_TARGET" ]] && ((BUDGET > 0)) && status=1
    fi
    if ((markdown)); then
        echo "| \`$t\` | $bytes | $size_kib |"
    else
        printf '%-28s %10s %9s  %s\n' "$t" "$bytes" "$size_kib" "$note"
    fi
done
if ((status)); then
    echo "cross/size.sh: $BUDGET_TARGET binary in $DIR is missing or over the budget of $BUDGET bytes" >&2
fi
exit "$status"
