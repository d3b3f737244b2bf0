#!/usr/bin/env bash
# Builds the example policy (shop-rules) in all three languages, plus the Python and
# JavaScript hostile test variants, into <cargo target dir>/policies/examples/:
#
#   rust.wasm            policies-examples/rust    (Rust SDK, wasm32-wasip2)
#   python.wasm          policies-examples/python  (componentize-py)
#   js.wasm              policies-examples/js      (componentize-js, no http/fetch)
#   python-hostile.wasm  policies-examples/python/hostile   FOR TESTS ONLY
#   js-hostile.wasm      policies-examples/js/hostile       FOR TESTS ONLY
#
#   bash policies-examples/build.sh              # everything
#   bash policies-examples/build.sh python js    # only these languages
#
# Installs the toolchains when missing: componentize-py (pip, pinned) and
# componentize-js + jco (npm, pinned in js/package.json, into js/node_modules).
# Also regenerates the Python typed stubs in lib/python-stubs/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

COMPONENTIZE_PY_VERSION=0.25.1
langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(rust python js)
want() { [[ " ${langs[*]} " == *" $1 "* ]]; }

target_dir="$(cargo metadata --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
[ -n "$target_dir" ] || target_dir=target
out="${PORTCULLIS_EXAMPLES_DIR:-$target_dir/policies/examples}"
mkdir -p "$out"

check_component() {
  # A component starts with \0asm, version 0x0d, layer 1 (a core module has layer 0).
  local header
  header="$(od -A n -t x1 -N 8 "$1" | tr -d ' \n')"
  if [ "$header" != "0061736d0d000100" ]; then
    echo "build.sh: $1 is not a WebAssembly component (header $header)" >&2
    exit 1
  fi
  printf 'build.sh: %-48s %9d bytes\n' "$1" "$(wc -c <"$1")"
}

if want rust; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
  cargo build --profile policy --target wasm32-wasip2 -p portcullis-example-shop-rules
  cp "$target_dir/wasm32-wasip2/policy/portcullis_example_shop_rules.wasm" "$out/rust.wasm.tmp.$$"
  mv -f "$out/rust.wasm.tmp.$$" "$out/rust.wasm"
  check_component "$out/rust.wasm"
fi

if want python; then
  if [ "$(componentize-py --version 2>/dev/null | awk '{print $2}')" != "$COMPONENTIZE_PY_VERSION" ]; then
    echo "build.sh: installing componentize-py $COMPONENTIZE_PY_VERSION (pip)"
    python3 -m pip install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION"
  fi
  # Typed stubs of the bindings, for editors and type checkers (not used by the build).
  rm -rf policies-examples/lib/python-stubs
  componentize-py -d wit -w policy bindings policies-examples/lib/python-stubs >/dev/null
  build_py() { # <app dir> <out>
    (cd "$1" && componentize-py -d "$root/wit" -w policy componentize app \
      -p . -p "$root/policies-examples/lib/python" -o "$2.tmp.$$" >/dev/null)
    mv -f "$2.tmp.$$" "$2"
    check_component "$2"
  }
  abs_out="$(cd "$out" && pwd)"
  build_py policies-examples/python "$abs_out/python.wasm"
  build_py policies-examples/python/hostile "$abs_out/python-hostile.wasm"
fi

if want js; then
  if [ ! -d policies-examples/js/node_modules/@bytecodealliance/componentize-js ]; then
    echo "build.sh: installing componentize-js and jco (npm, policies-examples/js/node_modules)"
    (cd policies-examples/js && npm ci --no-audit --no-fund --silent)
  fi
  abs_out="$(cd "$out" && pwd)"
  (cd policies-examples/js && node build.mjs policy.js "$abs_out/js.wasm" >/dev/null)
  check_component "$out/js.wasm"
  (cd policies-examples/js && node build.mjs hostile/policy.js "$abs_out/js-hostile.wasm" >/dev/null)
  check_component "$out/js-hostile.wasm"
fi
