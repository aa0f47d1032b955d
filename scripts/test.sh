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
cargo test --workspace --locked
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
