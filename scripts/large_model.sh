#!/usr/bin/env bash
# Large model end to end (opt-in, not part of `cargo test`, a few minutes): 4 `murmur run`
# daemons on 127.0.0.1 train a model of >= 10M parameters (default `mlp:4096,2560` on the
# bundled digits, 10.78M parameters, 43 MB as f32); a fifth joins mid-run and must adopt the
# swarm's model (the mean of its neighbours' public copies, streamed in chunks from all of them
# in parallel) before its first step; then one of the four is killed with SIGKILL and restarted,
# and must resume from its last checkpoint and train on. Prints a table and ends with one
# `summary:` line:
#
#   params          parameters of the model
#   join_s          seconds from the joiner's start to its adoption (process start included)
#   join_donors     neighbours whose copies the joiner's model is made of (>= 2 expected)
#   restart_ok      1 when the killed node resumed from its checkpoint and completed rounds
#   rss_per_model   peak resident memory of any node (VmHWM) over 4 x params bytes
#   overhead_share  gossip work (decode, mix) over local-step time, worst node (/status timing)
#
#   scripts/large_model.sh
#   MODEL=mlp:1024,1024 scripts/large_model.sh       # 1.13M parameters, quicker
#   MURMUR_BIN=target/debug/murmur scripts/large_model.sh
#
# Everything binds to 127.0.0.1 with ephemeral ports; data lives in a temp dir removed at the
# end (KEEP=1 keeps it). Extra `murmur run` flags can follow `--`.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-mlp:4096,2560}
WARM_ROUNDS=${WARM_ROUNDS:-15}   # rounds the four train before the fifth joins
AFTER_ROUNDS=${AFTER_ROUNDS:-10} # rounds the restarted node must complete after resuming
TIMEOUT=${TIMEOUT:-900}          # seconds for the whole run
EXTRA=("$@")
PEERS=4

if [[ -n "${MURMUR_BIN:-}" ]]; then
    BIN=$MURMUR_BIN
else
    echo "== build (release)"
    cargo build --release -p murmur-daemon --bin murmur >/dev/null
    BIN="${CARGO_TARGET_DIR:-target}/release/murmur"
fi

DIR=$(mktemp -d -t murmur-large-XXXXXX)
declare -A PIDS
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # A final checkpoint of a large model takes a moment; then whatever is left is killed.
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.2
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$DIR"; else echo "kept $DIR"; fi
}
trap cleanup EXIT
DEADLINE=$((SECONDS + TIMEOUT))

fail() {
    echo "error: $*" >&2
    for d in "$DIR"/node-*; do
        echo "--- $d/node.log (tail)" >&2
        tail -5 "$d/node.log" >&2 || true
    done
    echo "summary: params=${PARAMS:-nan} join_s=nan join_donors=0 restart_ok=0 rss_per_model=nan overhead_share=nan ok=false"
    exit 1
}

node_json() { # index key
    python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
print(next(a for a in v if "/tcp/" in a) if isinstance(v, list) else v)' "$DIR/node-$1/node.json" "$2"
}

status() { # index python-expression over the /status document `s` -> printed value
    local http
    http=$(node_json "$1" http) || return 1
    curl -s --max-time 5 "http://$http/status" | python3 -c "
import json, sys
s = json.load(sys.stdin)
print($2)" 2>/dev/null
}

start_node() { # index shard [bootstrap]
    local i=$1 dir="$DIR/node-$1"
    mkdir -p "$dir"
    rm -f "$dir/node.json"
    local args=(run --data-dir "$dir" --listen /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0
        --model "$MODEL" --shard "$2" --shards $((PEERS + 1)) --min-peers 2
        --checkpoint-every 5 --eval-every 1000000)
    [[ -n "${3:-}" ]] && args+=(--bootstrap "$3")
    RUST_LOG=${RUST_LOG:-warn} "$BIN" "${args[@]}" "${EXTRA[@]}" >>"$dir/node.log" 2>&1 &
    PIDS[$i]=$!
    for _ in $(seq 1 600); do
        [[ -s "$dir/node.json" ]] && return 0
        kill -0 "${PIDS[$i]}" 2>/dev/null || fail "node $i exited at start"
        sleep 0.1
    done
    fail "node $i did not start"
}

wait_for() { # index python-condition what
    while ((SECONDS < DEADLINE)); do
        [[ "$(status "$1" "bool($2)" || echo False)" == True ]] && return 0
        kill -0 "${PIDS[$1]}" 2>/dev/null || fail "node $1 died waiting for $3"
        sleep 0.5
    done
    fail "timed out waiting for $3"
}

peak_rss() { awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }

echo "== start $PEERS daemons ($MODEL)"
start_node 0 0
BOOT=$(node_json 0 listen)
for i in $(seq 1 $((PEERS - 1))); do start_node "$i" "$i" "$BOOT"; done
wait_for 0 "s['round'] >= $WARM_ROUNDS" "round $WARM_ROUNDS"
PARAMS=$(status 0 "s['model_bytes'] // 4")
echo "params=$PARAMS; the four reached round $WARM_ROUNDS"

echo "== a fifth node joins"
T0=$SECONDS
T0_NS=$(date +%s%N)
start_node 4 4 "$BOOT"
wait_for 4 "s['adopted'] is not None" "the joiner's adoption"
JOIN_S=$(awk -v a="$T0_NS" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
JOIN_DONORS=$(status 4 "s.get('adopted_donors') or 0")
STEPS_BEFORE=$(status 4 "s['steps_before_adoption']")
echo "joined in ${JOIN_S}s (upper bound: polled every 0.5 s) from $JOIN_DONORS donors, $STEPS_BEFORE local steps before"

echo "== kill -9 node 1 and restart it"
wait_for 1 "s['last_checkpoint'] is not None" "node 1's first checkpoint"
KILLED_AT=$(status 1 "s['round']")
RSS_KILLED=$(peak_rss "${PIDS[1]}")
kill -KILL "${PIDS[1]}"
wait "${PIDS[1]}" 2>/dev/null || true  # reaped here, so bash reports nothing later
start_node 1 1 "$BOOT"
wait_for 1 "s['resumed_from'] is not None" "node 1's resume"
RESUMED=$(status 1 "s['resumed_from']")
wait_for 1 "s['round'] >= $RESUMED + $AFTER_ROUNDS" "node 1 to train on after resuming"
RESTART_OK=1
((SECONDS - T0 >= 0)) || true
echo "node 1 killed at round $KILLED_AT, resumed from $RESUMED, trained $AFTER_ROUNDS more rounds"

printf "%5s %8s %12s %10s %10s %10s\n" node round peak_rss_MB compute_s gossip_s gossip_share
WORST_RSS=$RSS_KILLED
WORST_SHARE=0
for i in 0 1 2 3 4; do
    read -r round compute gossip < <(status "$i" "s['round'], s['timing']['compute_secs'], s['timing']['gossip_secs']" | tr -d '(),')
    rss=$(peak_rss "${PIDS[$i]}")
    ((rss > WORST_RSS)) && WORST_RSS=$rss
    share=$(awk -v g="$gossip" -v c="$compute" 'BEGIN { printf "%.3f", (c > 0) ? g / c : 0 }')
    WORST_SHARE=$(awk -v a="$share" -v b="$WORST_SHARE" 'BEGIN { print (a > b) ? a : b }')
    printf "%5d %8s %12.0f %10.1f %10.1f %10s\n" "$i" "$round" "$(awk -v r="$rss" 'BEGIN { print r / 1e6 }')" "$compute" "$gossip" "$share"
done
RSS_PER_MODEL=$(awk -v r="$WORST_RSS" -v p="$PARAMS" 'BEGIN { printf "%.2f", r / (4 * p) }')
OK=$(awk -v d="$JOIN_DONORS" -v p="$PARAMS" 'BEGIN { print (d >= 2 && p >= 1e7) ? "true" : "false" }')
echo "summary: params=$PARAMS join_s=$JOIN_S join_donors=$JOIN_DONORS restart_ok=$RESTART_OK rss_per_model=$RSS_PER_MODEL overhead_share=$WORST_SHARE ok=$OK"
