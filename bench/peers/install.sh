#!/usr/bin/env bash
# Installs the four benchmark peers (see README.md): the limit relay's release
# binary, the two Node relays' node_modules and the Flask-SocketIO venv.
# Idempotent, and quick when nothing changed: the Node and Python steps are
# skipped while their lock file matches the one last installed.
# Needs cargo, Node >= 20 with npm, and python3 (>= 3.11) with venv and pip.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

step() { printf 'peers: %s\n' "$*" >&2; }
die() { printf 'peers: %s\n' "$*" >&2; exit 1; }
digest() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

command -v cargo >/dev/null || die "cargo not found"
command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"
command -v python3 >/dev/null || die "python3 not found"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node >= 20 needed, found $(node --version)"

# PYCHAT_PEERS_PROFILE=debug (the smoke test) builds the limit relay the way the tests build.
profile="${PYCHAT_PEERS_PROFILE:-release}"
step "limit: cargo build --$profile -p pychat-limit-relay"
if [ "$profile" = release ]; then
  (cd "$root" && cargo build --release --locked -q -p pychat-limit-relay)
else
  (cd "$root" && cargo build --locked -q -p pychat-limit-relay)
fi

for dir in node-ws node-socketio; do
  stamp="$here/$dir/node_modules/.pychat-peers-installed"
  want="$(cd "$here/$dir" && digest package-lock.json)-node$node_major"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    step "$dir: up to date"
    continue
  fi
  step "$dir: npm ci"
  (cd "$here/$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  printf '%s\n' "$want" >"$stamp"
done

venv="$here/flask-socketio/.venv"
stamp="$venv/.pychat-peers-installed"
want="$(cd "$here/flask-socketio" && digest requirements.txt)-$(python3 -c 'import sys; print(sys.version.split()[0])')"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c '' 2>/dev/null; then
  step "flask-socketio: up to date"
else
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    step "flask-socketio: python3 -m venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  step "flask-socketio: pip install -r requirements.txt"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$here/flask-socketio/requirements.txt" >&2
  printf '%s\n' "$want" >"$stamp"
fi

step "all four installed; start one with: bench/peers/start.sh NAME PORT"
