#!/usr/bin/env bash
# Runs the four simulator experiments (see docs/results/README.md).
set -euo pipefail
cd "$(dirname "$0")"
./topology_sweep.sh
./compression_sweep.sh
./averaging_period.sh
./stragglers.sh
./adversary.sh
