#!/usr/bin/env bash
# Privacy: accuracy against the peer-level epsilon of differential privacy on MNIST (softmax,
# 16 peers, 100 rounds of 10 local steps, clip 0.03, noise multipliers 1 to 16 and a run
# without privacy, 3 seeds each; sim/experiments/privacy.toml). Writes
# docs/results/privacy/privacy_{metrics,summary}.csv and two PNG plots, prints a table (mean
# over the seeds) and ends with one `summary:` line. Needs python3 for the table.
#   scripts/privacy.sh                 # about 2 minutes on 2 cores
#   scripts/privacy.sh --set rounds=50 # any sweep override
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/results/privacy
mkdir -p "$OUT"
cargo run --release -q -p murmur-sim -- sweep sim/experiments/privacy.toml --out "$OUT" "$@" \
    | grep '^summary:' | sed 's/^summary: /sweep: /'
python3 - "$OUT/privacy_summary.csv" <<'PY'
import csv, sys
from collections import defaultdict

runs = defaultdict(list)
for row in csv.DictReader(open(sys.argv[1])):
    if row.get("baseline", "none") == "none":
        runs[row["variant"]].append(row)

def mean(rows, key):
    return sum(float(r[key]) for r in rows) / len(rows)

def sigma(name):
    return float(name.split("=")[1]) if "=" in name else 0.0

print(f"{'setting':<12} {'epsilon':>9} {'delta':>7} {'acc(avg model)':>15} {'acc(worst peer)':>16} {'seeds':>6}")
kv = []
for name in sorted(runs, key=sigma):
    rows = runs[name]
    eps = rows[0].get("epsilon") or ""
    eps_text = f"{float(eps):9.2f}" if eps else f"{'-':>9}"
    delta = rows[0].get("delta") or "-"
    acc = mean(rows, "accuracy_avg")
    worst = min(float(r["accuracy_worst"]) for r in rows)
    print(f"{name:<12} {eps_text} {delta:>7} {acc:>15.4f} {worst:>16.4f} {len(rows):>6}")
    key = "none" if not eps else f"sigma{sigma(name):g}"
    kv.append(f"accuracy_{key}={acc:.4f}")
    if eps:
        kv.append(f"epsilon_{key}={float(eps):.2f}")
print("summary: experiment=privacy peers=16 rounds=100 delta=1e-5 " + " ".join(kv))
PY
