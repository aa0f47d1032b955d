#!/usr/bin/env bash
# A tiny run of every pychat-bench scenario (idle, dm, signal, fanout in both modes, and store on
# its own temp SQLite file) against a freshly started server (temp SQLite dir,
# free port), so the generator never rots. Checks each printed JSON object for its fields and
# nonzero counts; exits non-zero on any failure. Takes a few seconds once built.
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

DATA="$(mktemp -d)"
OUT="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA" "$OUT"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"

PYCHAT_BIND="127.0.0.1:$PORT" PYCHAT_DATA_DIR="$DATA" PYCHAT_BCRYPT_COST=4 \
    PYCHAT_WS_RATE_PER_SEC=100000 PYCHAT_WS_RATE_BURST=100000 PYCHAT_ROOM_MAX_PEERS=16 \
    PYCHAT_LOG=warn "$BIN/pychat" serve >"$OUT/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "bench smoke: the server exited" >&2
        cat "$OUT/server.log" >&2
        exit 1
    fi
    sleep 0.1
done

run() {
    local name="$1"
    shift
    if ! timeout 60 "$BIN/pychat-bench" --server "$URL" --tiny "$@" >"$OUT/$name.json"; then
        echo "bench smoke: $name failed" >&2
        cat "$OUT/server.log" >&2
        exit 1
    fi
}

run idle idle --connections 20 --sources 127.0.0.2,127.0.0.3 --server-pid "$SERVER_PID"
run dm dm --pairs 2
run signal signal
run fanout fanout --listeners 5 --sources 127.0.0.2
run fanout_stored fanout --listeners 5 --stored
run store store --database-url "sqlite://$DATA/store.sqlite3" --writers 2 --batch 50

# Every scenario: the expected fields, nonzero counts, no errors.
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
checks = {
    "idle": ["connected", "held_after_hold", "server_rss_after_kib"],
    "dm": ["acked", "delivered", "acked_per_sec", "delivery_latency.count", "ack_latency.count"],
    "signal": ["sent", "relayed", "latency.count"],
    "fanout": ["sent", "delivered", "deliveries_per_sec", "latency.count"],
    "fanout_stored": ["sent", "acked", "delivered", "latency.count"],
    "store": ["rows", "transactions", "rows_per_sec", "commit_latency.count", "tx_latency.count"],
}
failed = 0
for name, fields in checks.items():
    report = json.load(open(f"{out}/{name}.json"))
    problems = []
    if report.get("scenario") != name.split("_")[0]:
        problems.append(f"scenario is {report.get('scenario')!r}")
    for field in fields:
        value = report
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{field} = {value!r}")
    if report.get("errors"):
        problems.append(f"errors: {report['errors']}")
    if name == "idle" and report.get("failed"):
        problems.append(f"failed = {report['failed']} ({report.get('first_error')})")
    if name.startswith("fanout") and report.get("delivered") != report.get("expected_deliveries"):
        problems.append(f"delivered {report.get('delivered')} of {report.get('expected_deliveries')}")
    if name == "dm":
        for p in ("p50_ms", "p99_ms", "p999_ms"):
            if not isinstance(report["delivery_latency"].get(p), (int, float)):
                problems.append(f"delivery_latency.{p} missing")
    status = "ok" if not problems else "FAILED: " + "; ".join(problems)
    print(f"bench smoke {name}: {status}")
    failed += bool(problems)
print(f"bench smoke: {len(checks) - failed} of {len(checks)} scenarios ok")
sys.exit(1 if failed else 0)
EOF
