#!/usr/bin/env bash
# Installs the system libraries the build links against, when they are missing (Debian/Ubuntu).
# Idempotent and quiet when everything is already there. `scripts/setup.sh test` also installs
# what the tests need (Chromium for the web app's end-to-end tests, Schemathesis in a pinned
# virtualenv); `scripts/setup.sh bench` that and `perf`, for the profiles of `make bench`.
set -euo pipefail

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# diesel's MySQL driver links libmysqlclient (MariaDB's Connector/C provides it).
if ! pkg-config --exists libmariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
  missing+=(libmariadb-dev libmariadb-dev-compat)
fi
# diesel's PostgreSQL driver links libpq.
pkg-config --exists libpq 2>/dev/null || missing+=(libpq-dev)
# The web app's end-to-end tests drive Debian's Chromium.
mode="${1:-}"
if { [ "$mode" = test ] || [ "$mode" = bench ]; } && [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
# ...and its screenshots show emoji only with a colour emoji font.
if [ "$mode" = test ] && [ ! -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  missing+=(fonts-noto-color-emoji)
fi
if [ "$mode" = bench ] && ! command -v perf >/dev/null 2>&1; then
  missing+=(linux-perf)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$mode" = test ]; then
  "$(dirname "$0")/schemathesis/run.sh" install
fi

# The benchmark's plots: matplotlib, pinned, in a virtualenv of its own beside the build.
if [ "$mode" = bench ]; then
  venv="$(dirname "$0")/../target/bench-venv"
  if ! "$venv/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
    echo "setup: installing matplotlib into target/bench-venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check matplotlib==3.11.2
  fi
fi
