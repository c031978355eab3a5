#!/usr/bin/env bash
# Builds the worker: Rust -> wasm32-unknown-unknown -> wasm-bindgen --target module -> dist/.
# Offline from the package registries alone: wasm-bindgen-cli comes from crates.io with
# `cargo install`, pinned to the exact version of the `wasm-bindgen` crate in Cargo.toml.
#   ./build.sh            build dist/ (and print the bundle size)
#   NO_WASM_OPT=1 ./build.sh   skip wasm-opt even if it is installed
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$here"

version="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"$/\1/p' Cargo.toml)"
[ -n "$version" ] || { echo "build.sh: Cargo.toml must pin wasm-bindgen as \"=x.y.z\"" >&2; exit 1; }
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
  echo "build.sh: installing wasm-bindgen-cli $version (cargo install; several minutes, once)" >&2
  # --locked fails for this crate here; the version pin is what matters.
  cargo install wasm-bindgen-cli --version "$version"
fi
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown

target_dir="${CARGO_TARGET_DIR:-$root/target}"
cargo build -p edgegate-worker --target wasm32-unknown-unknown --release
raw="$target_dir/wasm32-unknown-unknown/release/edgegate_worker.wasm"

rm -rf dist && mkdir -p dist
before=$(stat -c %s "$raw")
input="$raw"
if [ -z "${NO_WASM_OPT:-}" ] && command -v wasm-opt >/dev/null; then
  # Before wasm-bindgen, not after: Debian's binaryen 108 rewrites wasm-bindgen's externref
  # table so that workerd fails at start-up ("WebAssembly.Table.set(): Argument 1 is invalid
  # for table"). It also needs the features rustc emits spelled out.
  input="$target_dir/wasm32-unknown-unknown/release/edgegate_worker.opt.wasm"
  wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    -o "$input" "$raw"
fi
wasm-bindgen --target module --out-dir dist --out-name edgegate_worker --no-typescript "$input"
cp worker.mjs dist/

wasm="dist/edgegate_worker_bg.wasm"
after=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
js=$(cat dist/edgegate_worker.js dist/worker.mjs | wc -c)
echo "bundle: $wasm $after bytes ($((after / 1024)) KiB; rustc output $before), gzip -9 $gz bytes ($((gz / 1024)) KiB); JS glue $js bytes"
