#!/usr/bin/env bash
# Experiment 2: compression sweep (dense, f16, threshold-sign at 5%/1%/0.5%, top-k, scaled
# threshold, scaled sign, QSGD) with the all-reduce and D-PSGD baselines: accuracy vs bytes.
# Writes docs/results/compression_*.{csv,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p murmur-sim -- sweep sim/experiments/compression.toml --out docs/results "$@"
