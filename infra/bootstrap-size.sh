#!/usr/bin/env bash
# `make size`: builds every function's bootstrap with the release profile (one cargo
# invocation, so two fat-LTO links run at once on two cores; dependency features are unified
# across the seven, and LTO drops what a function does not call),
# prints name / size / budget and fails when one is over its budget.
# Extra arguments go to cargo (e.g. `--config …`). Sizes are x86_64 here; sam builds arm64.
set -euo pipefail
cd "$(dirname "$0")/.."

# Bytes (1 MB = 1,000,000). A bootstrap is downloaded and mapped on every cold start.
declare -A BUDGET=(
    [api]=10000000
    [billing-worker]=10000000
    [billing-run]=10000000
    [payment-worker]=10000000
    [stripe-webhook]=10000000
    [webhook-fanout]=10000000
    [document-renderer]=10000000
)
FUNCTIONS=(api billing-worker billing-run payment-worker stripe-webhook webhook-fanout document-renderer)

target_dir=$(cargo metadata --format-version 1 --no-deps "$@" |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
packages=()
for function in "${FUNCTIONS[@]}"; do packages+=(-p "$function"); done
cargo build --release --locked "${packages[@]}" "$@"

mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1000000 }'; }
status=0
printf '| function | size | budget | within |\n|---|---|---|---|\n'
for function in "${FUNCTIONS[@]}"; do
    size=$(stat -c %s "$target_dir/release/$function")
    budget=${BUDGET[$function]}
    verdict=yes
    if ((size > budget)); then
        verdict="**no**"
        status=1
    fi
    printf '| `%s` | %s (%d bytes) | %s | %s |\n' "$function" "$(mb "$size")" "$size" "$(mb "$budget")" "$verdict"
done
if ((status != 0)); then
    echo "a bootstrap is over its budget (see README, Bootstrap size)" >&2
fi
exit "$status"
