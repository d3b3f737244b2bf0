#!/usr/bin/env bash
# Installs what the demo and the tests need and is missing on this machine:
# PostgreSQL server binaries, psql/pgbench, the wasm32-wasip2 Rust target, and the
# Python/Node client libraries the compatibility tests drive, and (with --tests) headless
# Chromium for the web page test and the
# Python/JavaScript policy toolchains policies-examples/ builds with. Safe to run
# repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have_initdb() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null 2>&1
}
have_initdb || need_apt+=(postgresql)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v pgbench >/dev/null 2>&1 || need_apt+=(postgresql-contrib)
# Headless Chromium for the approvals web page test.
if [ "${1:-}" = "--tests" ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
# The identity tests generate the test identity provider's RSA keys with openssl.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ "${PORTCULLIS_SETUP_BENCH:-0}" = 1 ]; then
  command -v pgbouncer >/dev/null 2>&1 || need_apt+=(pgbouncer)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from the OS packages"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Debian starts a cluster on install; the tests start their own and never use it.
fi

if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi

if [ "${1:-}" = "--tests" ]; then
  if ! python3 -c 'import psycopg' >/dev/null 2>&1; then
    echo "setup: installing psycopg for the Python client tests"
    python3 -m pip install --quiet 'psycopg[binary]>=3.1'
  fi
  if [ -f tests/node/package.json ] && { [ ! -d tests/node/node_modules/pg ] || [ ! -d tests/node/node_modules/playwright-core ]; }; then
    echo "setup: installing node-postgres and playwright-core for the Node client and browser tests"
    (cd tests/node && npm install --no-audit --no-fund --silent)
  fi
  # Policy toolchains for policies-examples/ (Python and JavaScript guests).
  if [ "$(componentize-py --version 2>/dev/null | awk '{print $2}')" != "0.25.1" ]; then
    echo "setup: installing componentize-py for the Python example policy"
    python3 -m pip install --quiet 'componentize-py==0.25.1'
  fi
  if [ ! -d policies-examples/js/node_modules/@bytecodealliance/componentize-js ]; then
    echo "setup: installing componentize-js and jco for the JavaScript example policy"
    (cd policies-examples/js && npm ci --no-audit --no-fund --silent)
  fi
fi
