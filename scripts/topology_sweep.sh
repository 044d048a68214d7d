#!/usr/bin/env bash
# Experiment 1: topology sweep (ring, torus, exponential, one-peer exponential, random 4-regular,
# complete; n = 16..1024). Measured consensus rate vs 1 - spectral gap, accuracy vs rounds.
# Writes docs/results/topology_*.{csv,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p murmur-sim -- sweep sim/experiments/topology_consensus.toml sim/experiments/topology_accuracy.toml --out docs/results "$@"
