#!/usr/bin/env bash
# Experiment 4: 10% stragglers (10x slower), round-tagged vs asynchronous gossip, accuracy vs
# simulated time. Writes docs/results/stragglers_*.{csv,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p murmur-sim -- sweep sim/experiments/stragglers.toml --out docs/results "$@"
