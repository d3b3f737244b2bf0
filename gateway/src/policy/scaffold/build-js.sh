#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-js and runs the fixtures through the real
# policy host.
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund --silent
node build.mjs
${PORTCULLIS:-portcullis} policy test {{name}}.wasm --fixtures fixtures.toml --settings settings.json
