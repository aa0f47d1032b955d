#!/usr/bin/env bash
# Usage: bench/peers/start.sh NAME PORT
# Runs benchmark peer NAME (limit, node-ws, node-socketio, flask-socketio) in
# the foreground on 127.0.0.1:PORT. The script execs the server, so a caller's
# $! is the server process itself (the generator reads its /proc/PID/status).
# REDIS_URL, when set, is passed through: node-socketio and flask-socketio
# then share rooms with other instances on the same Redis.
# Install first with bench/peers/install.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

die() { printf 'peers: %s\n' "$*" >&2; exit 2; }

[ $# -eq 2 ] || die "usage: start.sh limit|node-ws|node-socketio|flask-socketio PORT"
name="$1"
port="$2"
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -le 65535 ] || die "bad port: $port"

# Thousands of connections: raise the soft open-files limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

missing() { die "$name is not installed: run bench/peers/install.sh"; }

case "$name" in
  limit)
    profile="${PYCHAT_PEERS_PROFILE:-release}"
    bin="$root/target/$profile/pychat-limit-relay"
    case "${CARGO_TARGET_DIR:-}" in /*) bin="$CARGO_TARGET_DIR/$profile/pychat-limit-relay" ;; esac
    [ -x "$bin" ] || missing
    exec "$bin" --port "$port"
    ;;
  node-ws | node-socketio)
    [ -d "$here/$name/node_modules" ] || missing
    exec node "$here/$name/server.js" --port "$port"
    ;;
  flask-socketio)
    [ -x "$here/flask-socketio/.venv/bin/python" ] || missing
    exec "$here/flask-socketio/.venv/bin/python" "$here/flask-socketio/app.py" --port "$port"
    ;;
  *)
    die "unknown peer $name: limit, node-ws, node-socketio or flask-socketio"
    ;;
esac
