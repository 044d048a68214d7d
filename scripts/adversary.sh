#!/usr/bin/env bash
# Hostile peers in the simulator: huge values, non-finite values, wrong dimension, replays and
# floods from one of 16 peers, with and without clipping. Writes docs/results/adversary_*.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p murmur-sim -- sweep sim/experiments/adversary.toml --out docs/results "$@"
