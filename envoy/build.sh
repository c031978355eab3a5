#!/usr/bin/env bash
# Builds the Envoy filter: release, wasm32-unknown-unknown. Prints the .wasm path on stdout.
#   envoy/build.sh          the plain cargo output
#   envoy/build.sh --opt    also a wasm-opt -O3 copy next to it (Debian's binaryen 108 needs the
#                           feature flags below for current rustc output); prints that path
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
# ring's C parts for wasm32 need clang (and llvm-ar), whatever the host's default cc is.
export CC_wasm32_unknown_unknown="${CC_wasm32_unknown_unknown:-clang}"
export AR_wasm32_unknown_unknown="${AR_wasm32_unknown_unknown:-llvm-ar}"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "build.sh: the Rust target wasm32-unknown-unknown is not installed (rustup target add wasm32-unknown-unknown)" >&2
    exit 1
fi
(cd "$repo" && cargo build --quiet -p edgegate-proxy-wasm --release --target wasm32-unknown-unknown >&2)
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/edgegate_proxy_wasm.wasm"
if [[ "${1:-}" == "--opt" ]]; then
    if command -v wasm-opt >/dev/null; then
        out="${wasm%.wasm}.opt.wasm"
        wasm-opt -O3 --strip-debug \
            --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
            --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
            "$wasm" -o "$out"
        wasm="$out"
    else
        echo "build.sh: wasm-opt not found, using the unoptimised build" >&2
    fi
fi
echo "$wasm"
