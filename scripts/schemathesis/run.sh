#!/usr/bin/env bash
# Schemathesis against a running pychat's own OpenAPI document (/api/openapi.json): generated
# requests to every operation, bounded, as a signed-in user, once per database (SQLite always,
# PostgreSQL when PYCHAT_TEST_POSTGRES_URL is set). Fails on any 5xx and on any answer the
# document does not declare (status, content type, body schema).
#
#   scripts/schemathesis/run.sh install   # the pinned virtualenv (scripts/setup.sh test runs it)
#   scripts/schemathesis/run.sh           # needs the server binary: cargo build -p pychat
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

requirements="$here/requirements.txt"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/pychat/schemathesis-$(sha256sum "$requirements" | cut -c1-12)"
st="$venv/bin/schemathesis"

install() {
  # Written last: a half-finished install is redone.
  [ -f "$venv/installed" ] && return 0
  echo "schemathesis: installing into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 keeps venv in a package of its own.
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$requirements"
  "$st" --version
  touch "$venv/installed"
}

if [ "${1:-}" = install ]; then
  install
  exit 0
fi

bin="${PYCHAT_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/pychat}"
[ -x "$bin" ] || { echo "schemathesis: no server binary at $bin (cargo build -p pychat)" >&2; exit 1; }
install >/dev/null
# Test cases per operation and phase: small enough for both databases to take well under a
# minute each on an idle machine. A fixed seed makes CI's runs the same; set another to explore.
examples="${PYCHAT_SCHEMATHESIS_EXAMPLES:-50}"
seed="${PYCHAT_SCHEMATHESIS_SEED:-1}"
out="$repo/target/schemathesis"
mkdir -p "$out"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# POSTs JSON and prints the answer's access token.
token_of() {
  curl -sf -X POST "$1" -H 'Content-Type: application/json' -d "$2" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# run_on NAME DATABASE_URL: one server, one Schemathesis run against it. Every generated request
# comes from one address, so the sign-up and sign-in abuse limits are lifted (they have tests of
# their own, tests/api/limits.rs): otherwise how many a run makes decides whether it passes.
run_on() {
  local name=$1 database_url=$2 port data server_pid status=0
  port=$(free_port)
  data=$(mktemp -d)
  PYCHAT_BIND="127.0.0.1:$port" PYCHAT_DATA_DIR="$data" PYCHAT_DATABASE_URL="$database_url" \
    PYCHAT_BCRYPT_COST=4 PYCHAT_WEB_DIR="$data/no-web-app" PYCHAT_LOG=warn \
    PYCHAT_REGISTRATIONS_PER_ADDRESS_PER_HOUR=100000 PYCHAT_LOGIN_FAILURES_PER_ACCOUNT_ADDRESS=100000 \
    PYCHAT_LOGIN_FAILURES_PER_ACCOUNT=100000 PYCHAT_LOGIN_FAILURES_PER_ADDRESS=100000 \
    "$bin" serve >"$out/server-$name.log" 2>&1 &
  server_pid=$!
  local base="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    curl -sf "$base/healthz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$out/server-$name.log"; rm -rf "$data"; return 1; }
    sleep 0.1
  done
  local password='correct horse battery'
  # Bob exists so that generated user names can hit someone (the documents' examples name him).
  token_of "$base/api/auth/register" "{\"username\":\"bob\",\"password\":\"$password\"}" >/dev/null
  local token
  token=$(token_of "$base/api/auth/register" "{\"username\":\"alice\",\"password\":\"$password\"}")
  # (set -e does not apply inside a function called with ||: check by hand.)
  if [ -z "$token" ]; then
    echo "schemathesis: could not sign up on $name (server log: $out/server-$name.log)" >&2
    kill "$server_pid" 2>/dev/null || true
    rm -rf "$data"
    return 1
  fi

  echo "== schemathesis on $name ($examples examples per operation, seed $seed; log: $out/$name.txt)"
  # Signing out would revoke the session every other request uses: it runs last, on its own.
  local common=(
    --header "Authorization: Bearer $token"
    --max-examples "$examples" --seed "$seed" --generation-database none
    --workers 1 --request-timeout 10 --no-color
    --report junit --report-junit-path "$out/$name.xml"
  )
  local run=("$st" --config-file "$here/schemathesis.toml" run "$base/api/openapi.json" "${common[@]}")
  "${run[@]}" --exclude-path /api/auth/logout >"$out/$name.txt" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    "${run[@]}" --include-path /api/auth/logout >>"$out/$name.txt" 2>&1 || status=$?
  fi
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  rm -rf "$data"
  grep -E '^  [0-9]+ generated|^=+ .* in [0-9.]+s =+$|^_+ .* _+$' "$out/$name.txt" || true
  if [ "$status" -ne 0 ]; then
    echo "== schemathesis on $name: FAILED (full output: $out/$name.txt)"
    sed -n '/^=* FAILURES =*$/,/^=* WARNINGS =*$/p' "$out/$name.txt"
    return "$status"
  fi
}

failed=0
sqlite_dir=$(mktemp -d)
run_on sqlite "sqlite://$sqlite_dir/pychat.sqlite3" || failed=1
rm -rf "$sqlite_dir"
if [ -n "${PYCHAT_TEST_POSTGRES_URL:-}" ]; then
  db="pychat_schemathesis_$$"
  admin="$PYCHAT_TEST_POSTGRES_URL"
  psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null
  pg_url="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$admin" "$db")"
  run_on postgres "$pg_url" || failed=1
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
elif [ "${CI:-}" = true ]; then
  echo "schemathesis: PYCHAT_TEST_POSTGRES_URL must be set under CI=true" >&2
  failed=1
else
  echo "schemathesis: skipped PostgreSQL (PYCHAT_TEST_POSTGRES_URL is not set)"
fi
exit "$failed"
