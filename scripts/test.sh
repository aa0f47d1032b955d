#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test. PostgreSQL and MariaDB tests run when
# PYCHAT_TEST_POSTGRES_URL / PYCHAT_TEST_MYSQL_URL are set (.ci/run sets them; under CI=true a
# missing one fails the run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh test

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
# The fault scenarios (server/tests/faults, ~3 min of their own private servers) are skipped
# here and run in the background during the bench and web steps below.
cargo test --workspace --locked -- --skip under_faults::
faults_log=target/faults.log
# The test binary itself, not `cargo test`: a cargo holding the build directory's lock would
# block the `cargo build` of the web step.
faults_bin=$(cargo test -p pychat --locked --test faults --no-run 2>&1 \
  | sed -n 's/.*Executable tests\/faults\/main.rs (\(.*\))$/\1/p')
echo "== faults: started in the background ($faults_bin, log: $faults_log)"
"$faults_bin" --nocapture --test-threads=4 >"$faults_log" 2>&1 &
faults_pid=$!
trap 'kill "$faults_pid" 2>/dev/null || true' EXIT
echo "== bench: tiny run of every scenario"
bench/smoke.sh

echo "== web: build the server binary for the end-to-end tests"
cargo build -p pychat --locked
(
  cd web
  echo "== web: npm ci"
  npm ci --no-audit --no-fund
  echo "== web: tsc"
  npx tsc --noEmit
  echo "== web: lint"
  npm run lint
  echo "== web: unit tests"
  npm test
  echo "== web: build"
  npm run build
  echo "== web: end-to-end tests"
  npm run e2e
)

echo "== schemathesis: generated requests against /api/openapi.json (SQLite, PostgreSQL)"
scripts/schemathesis/run.sh

echo "== faults: delivery under faults (issue #11)"
faults_status=0
wait "$faults_pid" || faults_status=$?
trap - EXIT
grep -E '^\[faults\]|^test |^test result|panicked|^---- ' "$faults_log" || true
if [ "$faults_status" -ne 0 ]; then
  echo "== faults: FAILED (full output: $faults_log)"
  exit "$faults_status"
fi
