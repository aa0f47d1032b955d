#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test. PostgreSQL and MariaDB tests run when
# PYCHAT_TEST_POSTGRES_URL / PYCHAT_TEST_MYSQL_URL are set (.ci/run sets them; under CI=true a
# missing one fails the run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
