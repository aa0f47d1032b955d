#!/usr/bin/env bash
# A tiny run of every pychat-bench scenario against freshly started servers, so the generator
# never rots: pychat (temp SQLite dir, free port) for idle, dm, signal, fan-out (fixed rate,
# saturation, stored), groups, the conversation list, login storm; two pychat instances through a private Redis for the cluster
# runs; every peer of bench/peers (installed by bench/peers/install.sh) for idle, dm, signal,
# fan-out and groups (as rooms); the store-only ceiling on its own temp SQLite file. Checks each printed JSON object for its fields and nonzero counts; exits non-zero on
# any failure. Takes well under a minute once built.
#
#   bench/smoke.sh            # debug build (the one tests use)
#   PROFILE=release bench/smoke.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PROFILE="${PROFILE:-debug}"
if [ "$PROFILE" = release ]; then
    cargo build --release --locked -q -p pychat -p pychat-bench
else
    cargo build --locked -q -p pychat -p pychat-bench
fi
BIN="target/$PROFILE"

PYCHAT_PEERS_PROFILE="$PROFILE" bench/peers/install.sh

# The sweep's curve arithmetic (median and spread, the non-monotonic check) of bench/run.py.
python3 -m unittest -q bench/test_curves.py

DATA="$(mktemp -d)"
OUT="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$DATA" "$OUT"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something answers on port $1 (an HTTP path $2 if given); $3 is its process.
wait_for() {
    local port="$1" path="$2" pid="$3"
    for _ in $(seq 1 150); do
        if [ -n "$path" ] && curl -fsS -o /dev/null "http://127.0.0.1:$port$path" 2>/dev/null; then
            return
        fi
        if [ -z "$path" ] && (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bench smoke: the server on port $port exited" >&2
            cat "$OUT"/*.log >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "bench smoke: nothing answers on port $port" >&2
    exit 1
}

# Starts pychat on a free port with the extra environment given; sets PORT and SERVER_PID. The
# generator is one loopback client: the abuse limits are lifted (docs/security.md#abuse-limits).
start_pychat() {
    PORT="$(free_port)"
    env PYCHAT_BIND="127.0.0.1:$PORT" PYCHAT_DATA_DIR="$DATA" PYCHAT_BCRYPT_COST=4 \
        PYCHAT_WS_RATE_PER_SEC=100000 PYCHAT_WS_RATE_BURST=100000 PYCHAT_ROOM_MAX_PEERS=16 \
        PYCHAT_JWT_SECRET=smoke-test-secret-shared-by-the-cluster-0123456789 PYCHAT_LOG=warn \
        PYCHAT_REGISTRATIONS_PER_ADDRESS_PER_HOUR=1000000 PYCHAT_TICKETS_PER_USER_PER_MINUTE=1000000 \
        PYCHAT_WS_CONNECTIONS_PER_USER=1000000 PYCHAT_WS_CONNECTIONS_PER_ADDRESS=1000000 \
        PYCHAT_LOGIN_CONCURRENCY_PER_ADDRESS=64 "$@" \
        "$BIN/pychat" serve >"$OUT/pychat-$PORT.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_for "$PORT" /readyz "$SERVER_PID"
}

run() {
    local name="$1" url="$2"
    shift 2
    if ! timeout 60 "$BIN/pychat-bench" --server "$url" --tiny "$@" >"$OUT/$name.json"; then
        echo "bench smoke: $name failed" >&2
        cat "$OUT"/*.log >&2
        exit 1
    fi
}

start_pychat
URL="http://127.0.0.1:$PORT"
run idle "$URL" idle --connections 20 --sources 127.0.0.2,127.0.0.3 --server-pid "$SERVER_PID"
run dm "$URL" dm --pairs 2
run signal "$URL" signal
run fanout "$URL" fanout --listeners 5 --sources 127.0.0.2
run fanout_saturated "$URL" fanout --listeners 5 --rate 0
run fanout_stored "$URL" fanout --listeners 5 --stored
run groups "$URL" groups --groups 2 --members 5 --rate 0
run login "$URL" login
run list "$URL" list
run store "$URL" store --database-url "sqlite://$DATA/store.sqlite3" --writers 2 --batch 50

# The cluster: two instances on one SQLite file through a private Redis.
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
PIDS+=("$!")
wait_for "$REDIS_PORT" "" "$!"
CLUSTER=(PYCHAT_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" PYCHAT_SINGLE_MACHINE=true)
start_pychat "${CLUSTER[@]}"
FIRST="http://127.0.0.1:$PORT"
start_pychat "${CLUSTER[@]}"
run cluster_dm "$FIRST" --cluster "http://127.0.0.1:$PORT" dm --pairs 2
run cluster_fanout "$FIRST" --cluster "http://127.0.0.1:$PORT" fanout --listeners 5 --rate 0
run cluster_groups "$FIRST" --cluster "http://127.0.0.1:$PORT" groups --groups 1 --members 5 --rate 0

for peer in limit node-ws node-socketio flask-socketio; do
    case "$peer" in limit | node-ws) framing=relay ;; *) framing=socketio ;; esac
    PEER_PORT="$(free_port)"
    PYCHAT_PEERS_PROFILE="$PROFILE" bench/peers/start.sh "$peer" "$PEER_PORT" >"$OUT/$peer.log" 2>&1 &
    PIDS+=("$!")
    wait_for "$PEER_PORT" "" "$!"
    url="http://127.0.0.1:$PEER_PORT"
    run "peer_idle_$peer" "$url" --target "$framing" idle --connections 20
    run "peer_dm_$peer" "$url" --target "$framing" dm --pairs 2 --rate 0
    run "peer_signal_$peer" "$url" --target "$framing" signal
    run "peer_fanout_$peer" "$url" --target "$framing" fanout --listeners 5 --rate 0
    run "peer_groups_$peer" "$url" --target "$framing" groups --groups 2 --members 5 --rate 0
done

# Every scenario: the expected fields, nonzero counts, no errors.
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
dm = ["acked", "delivered", "acked_per_sec", "delivery_latency.count", "ack_latency.count"]
fanout = ["sent", "delivered", "delivered_per_sec", "latency.count"]
relayed = ["sent", "delivered", "delivered_per_sec", "latency.count"]
checks = {
    "idle": ["connected", "held_after_hold", "server_rss_after_kib"],
    "dm": dm,
    "signal": ["sent", "relayed", "latency.count"],
    "fanout": fanout,
    "fanout_saturated": fanout,
    "fanout_stored": ["sent", "acked", "delivered", "latency.count"],
    "login": ["logins", "calm_latency.count", "storm_latency.count"],
    "list": ["listed", "latency.count"],
    "store": ["rows", "transactions", "rows_per_sec", "commit_latency.count", "tx_latency.count"],
    "cluster_dm": dm,
    "cluster_fanout": fanout,
    "groups": ["sent", "acked", "delivered", "delivered_per_sec", "latency.count"],
    "cluster_groups": ["sent", "acked", "delivered", "delivered_per_sec", "latency.count"],
}
for peer in ("limit", "node-ws", "node-socketio", "flask-socketio"):
    checks[f"peer_idle_{peer}"] = ["connected", "held_after_hold"]
    for scenario in ("dm", "signal", "fanout", "groups"):
        checks[f"peer_{scenario}_{peer}"] = relayed
failed = 0
for name, fields in checks.items():
    report = json.load(open(f"{out}/{name}.json"))
    problems = []
    scenario = name.removeprefix("peer_").removeprefix("cluster_").split("_")[0]
    if report.get("scenario") != scenario:
        problems.append(f"scenario is {report.get('scenario')!r}")
    for field in fields:
        value = report
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{field} = {value!r}")
    if report.get("errors") or report.get("login_failures"):
        problems.append(f"errors: {report['errors']}")
    if scenario == "idle" and report.get("failed"):
        problems.append(f"failed = {report['failed']} ({report.get('first_error')})")
    if "expected_deliveries" in report and report.get("delivered") != report.get("expected_deliveries"):
        problems.append(f"delivered {report.get('delivered')} of {report.get('expected_deliveries')}")
    if name.endswith("dm"):
        for p in ("p50_ms", "p99_ms", "p999_ms"):
            if not isinstance(report["delivery_latency"].get(p), (int, float)):
                problems.append(f"delivery_latency.{p} missing")
    status = "ok" if not problems else "FAILED: " + "; ".join(problems)
    print(f"bench smoke {name}: {status}")
    failed += bool(problems)
print(f"bench smoke: {len(checks) - failed} of {len(checks)} scenarios ok")
sys.exit(1 if failed else 0)
EOF
