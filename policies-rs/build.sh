#!/usr/bin/env bash
# Builds every policy component in policies-rs/ (each crate there with a cdylib) for
# wasm32-wasip2 and copies them to <cargo target dir>/policies/<name>.wasm, where
# <name> is the crate's directory (guardrails, hostile, ...). The gateway's tests and
# the demo load them from there.
#
#   bash policies-rs/build.sh            # all of them
#   bash policies-rs/build.sh guardrails # only these
#
# Profile: `policy` from the workspace Cargo.toml (release, size-optimised, LTO, no
# DWARF); PORTCULLIS_POLICY_PROFILE=release builds with the plain release profile
# instead. The target directory is cargo's (CARGO_TARGET_DIR is honoured), normally
# target/.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${PORTCULLIS_POLICY_PROFILE:-policy}"
target=wasm32-wasip2

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "build.sh: installing the $target Rust target"
  rustup target add "$target"
fi

# The guest crates: directories of policies-rs/ whose Cargo.toml builds a cdylib.
names=()
packages=()
for manifest in policies-rs/*/Cargo.toml; do
  dir="$(basename "$(dirname "$manifest")")"
  if [ $# -gt 0 ] && [[ " $* " != *" $dir "* ]]; then
    continue
  fi
  grep -q '"cdylib"' "$manifest" || continue
  package="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)"
  names+=("$dir")
  packages+=("$package")
done
if [ ${#packages[@]} -eq 0 ]; then
  echo "build.sh: no policy crate found${*:+ for: $*}" >&2
  exit 1
fi

args=()
for p in "${packages[@]}"; do args+=(-p "$p"); done
echo "build.sh: cargo build --profile $profile --target $target ${args[*]}"
cargo build --profile "$profile" --target "$target" "${args[@]}"

target_dir="$(cargo metadata --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
[ -n "$target_dir" ] || target_dir=target
out_dir="${PORTCULLIS_POLICIES_DIR:-$target_dir/policies}"
mkdir -p "$out_dir"

for i in "${!packages[@]}"; do
  lib="${packages[$i]//-/_}"
  src="$target_dir/$target/$profile/$lib.wasm"
  dst="$out_dir/${names[$i]}.wasm"
  # A component starts with \0asm, version 0x0d, layer 1 (a core module has layer 0).
  header="$(od -A n -t x1 -N 8 "$src" | tr -d ' \n')"
  if [ "$header" != "0061736d0d000100" ]; then
    echo "build.sh: $src is not a WebAssembly component (header $header)" >&2
    exit 1
  fi
  # Copy then rename, so a concurrent reader never sees a half-written file.
  cp "$src" "$dst.tmp.$$"
  mv -f "$dst.tmp.$$" "$dst"
  size="$(wc -c <"$dst")"
  printf 'build.sh: %-44s %8d bytes (%d KiB)\n' "$dst" "$size" $(((size + 1023) / 1024))
done
