#!/usr/bin/env bash
# Starts a fresh release pychat server, runs one pychat-bench scenario against it, prints the
# report (one JSON line) and stops the server. The numbers in docs/benchmarks.md come from this.
#
#   bench/measure.sh sqlite idle --connections 5000 --sources 127.0.0.2,127.0.0.3,127.0.0.4
#   bench/measure.sh postgres dm --pairs 50 --rate 0 --duration 10
#   bench/measure.sh mysql dm --pairs 50 --rate 0 --duration 10
#   bench/measure.sh postgres store --writers 8 --batch 100 --duration 10   # no server: the ceiling
#
# For idle, --server-pid is filled in. PostgreSQL and MariaDB must run on 127.0.0.1 (postgres
# user / root without password); a fresh database is created per run and dropped after.
# Extra server settings can be passed through the environment (PYCHAT_*); PYCHAT_SERVER_BIN runs
# another server binary (an older build, for before/after figures).
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND="$1"
shift
SCENARIO="$1"
shift
cargo build --release --locked -q -p pychat -p pychat-bench

DATA="$(mktemp -d)"
DB="bench_$$_$(date +%s)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    case "$BACKEND" in
    postgres) psql -q -h 127.0.0.1 -U postgres -c "drop database if exists $DB" >/dev/null 2>&1 || true ;;
    mysql) mysql -h127.0.0.1 -uroot -e "drop database if exists $DB" >/dev/null 2>&1 || true ;;
    esac
    rm -rf "$DATA"
}
trap cleanup EXIT

case "$BACKEND" in
sqlite) unset PYCHAT_DATABASE_URL ;;
postgres)
    psql -q -h 127.0.0.1 -U postgres -c "create database $DB" >/dev/null
    export PYCHAT_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
    ;;
mysql)
    mysql -h127.0.0.1 -uroot -e "create database $DB" >/dev/null
    export PYCHAT_DATABASE_URL="mysql://root@127.0.0.1:3306/$DB"
    ;;
*)
    echo "backend: sqlite, postgres or mysql" >&2
    exit 2
    ;;
esac

if [ "$SCENARIO" = store ]; then
    # The storage ceiling: the same fresh database, no server.
    STORE_URL="${PYCHAT_DATABASE_URL:-sqlite://$DATA/store.sqlite3}"
    target/release/pychat-bench store --database-url "$STORE_URL" "$@"
    exit
fi

# The load generator is one loopback client: lift the abuse limits (docs/security.md#abuse-limits),
# which would otherwise refuse its sign-ups, tickets and sockets, and serialise its login storm.
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
PYCHAT_BIND="127.0.0.1:$PORT" PYCHAT_DATA_DIR="$DATA" PYCHAT_BCRYPT_COST="${PYCHAT_BCRYPT_COST:-4}" \
    PYCHAT_WS_RATE_PER_SEC="${PYCHAT_WS_RATE_PER_SEC:-100000}" \
    PYCHAT_WS_RATE_BURST="${PYCHAT_WS_RATE_BURST:-100000}" \
    PYCHAT_ROOM_MAX_PEERS="${PYCHAT_ROOM_MAX_PEERS:-16}" PYCHAT_LOG="${PYCHAT_LOG:-warn}" \
    PYCHAT_REGISTRATIONS_PER_ADDRESS_PER_HOUR="${PYCHAT_REGISTRATIONS_PER_ADDRESS_PER_HOUR:-1000000}" \
    PYCHAT_TICKETS_PER_USER_PER_MINUTE="${PYCHAT_TICKETS_PER_USER_PER_MINUTE:-1000000}" \
    PYCHAT_WS_CONNECTIONS_PER_USER="${PYCHAT_WS_CONNECTIONS_PER_USER:-1000000}" \
    PYCHAT_WS_CONNECTIONS_PER_ADDRESS="${PYCHAT_WS_CONNECTIONS_PER_ADDRESS:-1000000}" \
    PYCHAT_LOGIN_CONCURRENCY_PER_ADDRESS="${PYCHAT_LOGIN_CONCURRENCY_PER_ADDRESS:-64}" \
    "${PYCHAT_SERVER_BIN:-target/release/pychat}" serve >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || {
        cat "$DATA/server.log" >&2
        exit 1
    }
    sleep 0.1
done

EXTRA=()
[ "$SCENARIO" = idle ] && EXTRA=(--server-pid "$SERVER_PID")
target/release/pychat-bench --server "$URL" "$SCENARIO" "${EXTRA[@]}" "$@"
if [ -s "$DATA/server.log" ]; then
    echo "--- server log (tail)" >&2
    tail -5 "$DATA/server.log" >&2
fi
