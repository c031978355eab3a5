#!/usr/bin/env bash
# The sha256 of the Envoy filter module, for the WasmPlugin's `sha256` field.
#   envoy/istio/sha256.sh [wasm-file]           prints the digest (builds with envoy/build.sh
#                                               when no file is given)
#   envoy/istio/sha256.sh --write [wasm-file]   also writes it into envoy/istio/wasmplugin.yaml
# Publish exactly the file that was hashed (e.g. `oras push` or any HTTPS server) under `url`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
write=""
if [[ "${1:-}" == "--write" ]]; then write=1; shift; fi
wasm="${1:-$(bash "$here/../build.sh")}"
digest="$(sha256sum "$wasm" | cut -d' ' -f1)"
if [[ -n "$write" ]]; then
    sed -i -E "s/^(  sha256: )[0-9a-f]{64}$/\1$digest/" "$here/wasmplugin.yaml"
    grep -q "^  sha256: $digest$" "$here/wasmplugin.yaml" || { echo "sha256.sh: could not update wasmplugin.yaml" >&2; exit 1; }
    echo "sha256.sh: wasmplugin.yaml now names $wasm ($digest)" >&2
fi
echo "$digest"
