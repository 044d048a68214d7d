#!/usr/bin/env bash
# The headline (#14): bytes and time to accuracy of the recipe (1-bit threshold CHOCO-SGD at
# low density) against ring all-reduce and exact dense D-PSGD, on the MNIST CNN (16 peers) and
# the Shakespeare transformer (8 peers), LAN and WAN. Writes docs/results/headline_*.{csv,png}
# and ends with ONE summary line: the MNIST keys (bytes_saved_within_1pt, accuracy,
# allreduce_accuracy, time_speedup_wan, ...) and the transformer's lm_* keys (lm_bytes_saved,
# lm_val_loss, lm_allreduce_val_loss, ...). About 1.5 hours on 2 cores.
#   scripts/headline.sh [--out DIR] [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/results
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
cargo build --release -q -p murmur-sim
log=$(mktemp)
trap 'rm -f "$log"' EXIT
target/release/murmur-sim sweep sim/experiments/headline_mnist.toml sim/experiments/headline_lm.toml \
  --out "$out" "${args[@]}" | tee "$log" | grep -v '^summary: '
# The sweep prints one summary line per file, MNIST's first; keep all of MNIST's keys and the
# transformer's lm_* keys.
mnist=$(grep '^summary: ' "$log" | sed -n 1p | sed 's/^summary: //')
lm=$(grep '^summary: ' "$log" | sed -n 2p | grep -oE ' lm_[a-z_0-9]+=("[^"]*"|[^ ]*)' | tr -d '\n')
echo "summary: $mnist$lm"
