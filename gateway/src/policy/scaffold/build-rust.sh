#!/usr/bin/env bash
# Builds {{name}}.wasm (a component, wasm32-wasip2) and runs the fixtures through
# the real policy host.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
target_dir="${CARGO_TARGET_DIR:-target}"
cp "$target_dir/wasm32-wasip2/release/$(echo '{{name}}' | tr - _).wasm" {{name}}.wasm
echo "built {{name}}.wasm"
${PORTCULLIS:-portcullis} policy test {{name}}.wasm --fixtures fixtures.toml --settings settings.json
