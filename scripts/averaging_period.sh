#!/usr/bin/env bash
# Experiment 3: averaging period H = 1, 5, 10, 20 local steps per gossip round, same step budget.
# Writes docs/results/averaging_period_*.{csv,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p murmur-sim -- sweep sim/experiments/averaging_period.toml --out docs/results "$@"
