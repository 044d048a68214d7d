#!/usr/bin/env bash
# The three-node simultaneous-bootstrap start, repeated 20 times (issue: one-sided links):
# every try must give symmetric neighbour sets within 5 s of the last start.
# Ends with `summary: tries=20 symmetric=20 worst_agreement_s=...`.
set -euo pipefail
cd "$(dirname "$0")/.."
MURMUR_EDGE_TRIES="${TRIES:-20}" cargo test --release -p murmur-daemon --test edges -- --nocapture 2>&1 \
    | grep -E '^(summary:|test result|one-sided|try )'
