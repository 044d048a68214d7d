#!/usr/bin/env bash
# Soak test (opt-in, not part of `cargo test`): 16 `murmur run` daemons on 127.0.0.1 train the
# digits shards for 10 minutes; every node's resident memory (VmRSS) must stay within 10% of
# its value after the warm-up. Prints a table and ends with one `summary:` line; exits non-zero
# when a node died or grew past the bound.
#
#   scripts/soak.sh                      # 16 daemons, 10 minutes, 2-minute warm-up
#   PEERS=4 MINUTES=2 WARMUP=30 scripts/soak.sh   # a quick look
#   MURMUR_BIN=target/debug/murmur scripts/soak.sh  # skip the release build
#
# Everything binds to 127.0.0.1 with ephemeral ports; data lives in a temp dir removed at the
# end (KEEP=1 keeps it). Extra `murmur run` flags can follow `--`.
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=${PEERS:-16}
MINUTES=${MINUTES:-10}
WARMUP=${WARMUP:-120}          # seconds before the reference RSS sample
INTERVAL=${INTERVAL:-15}       # seconds between samples
BOUND=${BOUND:-0.10}           # allowed relative growth after warm-up
EXTRA=("$@")

if [[ -n "${MURMUR_BIN:-}" ]]; then
    BIN=$MURMUR_BIN                 # a binary built already (any profile)
else
    echo "== build (release)"
    cargo build --release -p murmur-daemon --bin murmur >/dev/null
    BIN="${CARGO_TARGET_DIR:-target}/release/murmur"
fi

DIR=$(mktemp -d -t murmur-soak-XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 2
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$DIR"; else echo "kept $DIR"; fi
}
trap cleanup EXIT

json_field() { # file key -> first string value (or first tcp listen address)
    python3 - "$1" "$2" <<'PY' 2>/dev/null || sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p" "$1"
import json, sys
doc = json.load(open(sys.argv[1]))
v = doc[sys.argv[2]]
if isinstance(v, list):
    v = next(a for a in v if "/tcp/" in a)
print(v)
PY
}

start_node() { # index [bootstrap]
    local i=$1 dir="$DIR/node-$1"
    mkdir -p "$dir"
    local args=(run --data-dir "$dir" --listen /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0
        --shard "$i" --shards "$PEERS" --min-peers "$PEERS" --checkpoint-every 200)
    [[ -n "${2:-}" ]] && args+=(--bootstrap "$2")
    RUST_LOG=warn "$BIN" "${args[@]}" "${EXTRA[@]}" >"$dir/node.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 300); do
        [[ -s "$dir/node.json" ]] && return 0
        sleep 0.1
    done
    echo "node $i did not start; log:" >&2
    tail -20 "$dir/node.log" >&2
    exit 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

echo "== start $PEERS daemons"
start_node 0
BOOT=$(json_field "$DIR/node-0/node.json" listen)
for i in $(seq 1 $((PEERS - 1))); do start_node "$i" "$BOOT"; done
echo "bootstrap $BOOT; data in $DIR"

declare -a REF
worst=0
END=$((SECONDS + MINUTES * 60))
WARM_END=$((SECONDS + WARMUP))
printf "%6s %8s %10s %10s %10s\n" t_s round rss_min_MiB rss_max_MiB growth
while ((SECONDS < END)); do
    sleep "$INTERVAL"
    growth=0
    min=999999999 max=0
    for k in "${!PIDS[@]}"; do
        pid=${PIDS[$k]}
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "node $k (pid $pid) died; log tail:" >&2
            tail -20 "$DIR/node-$k/node.log" >&2
            echo "summary: peers=$PEERS minutes=$MINUTES died=1 max_rss_growth=nan ok=false"
            exit 1
        fi
        r=$(rss_kib "$pid")
        ((r < min)) && min=$r
        ((r > max)) && max=$r
        if ((SECONDS >= WARM_END)); then
            [[ -z "${REF[$k]:-}" ]] && REF[$k]=$r
            g=$(awk -v a="$r" -v b="${REF[$k]}" 'BEGIN { printf "%.4f", (a - b) / b }')
            growth=$(awk -v a="$g" -v b="$growth" 'BEGIN { print (a > b) ? a : b }')
        fi
    done
    worst=$(awk -v a="$growth" -v b="$worst" 'BEGIN { print (a > b) ? a : b }')
    http=$(json_field "$DIR/node-0/node.json" http)
    round=$(curl -s --max-time 2 "http://$http/status" | sed -n 's/.*"round": *\([0-9]*\).*/\1/p' || true)
    printf "%6d %8s %10.1f %10.1f %10s\n" "$SECONDS" "${round:-?}" "$(awk -v k="$min" 'BEGIN{print k/1024}')" \
        "$(awk -v k="$max" 'BEGIN{print k/1024}')" "$growth"
done
ok=$(awk -v g="$worst" -v b="$BOUND" 'BEGIN { print (g <= b) ? "true" : "false" }')
echo "summary: peers=$PEERS minutes=$MINUTES died=0 max_rss_growth=$worst bound=$BOUND ok=$ok"
[[ "$ok" == true ]]
