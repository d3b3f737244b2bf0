#!/usr/bin/env bash
# Runs every test: unit tests of each crate and the end-to-end suite against a real
# PostgreSQL with real clients. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
# Policy tests load the real components from target/policies/.
bash policies-rs/build.sh
# The example policy in Rust, Python and JavaScript, from source (policies-examples/).
bash policies-examples/build.sh
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
