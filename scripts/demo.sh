#!/usr/bin/env bash
# Starts a throwaway, seeded PostgreSQL with the gateway in front of it and prints a
# connection URI per demo identity, plus an identity-provider token with which
# etl-agent acts for alice (it reads; its writes need approval). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The demo enforces the standard guardrails policy (target/policies/guardrails.wasm).
bash policies-rs/build.sh
exec cargo run --release -p portcullis -- demo "$@"
