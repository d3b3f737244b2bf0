#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-py and runs the fixtures through the real
# policy host.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(componentize-py --version 2>/dev/null | awk '{print $2}')" != "0.25.1" ]; then
  python3 -m pip install --quiet 'componentize-py==0.25.1'
fi
componentize-py -d wit -w policy componentize app -p . -o {{name}}.wasm
${PORTCULLIS:-portcullis} policy test {{name}}.wasm --fixtures fixtures.toml --settings settings.json
