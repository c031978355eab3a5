#!/usr/bin/env bash
# The one test command (README, CI): installs what is missing, then runs every suite.
#   ./test.sh            everything
#   ./test.sh --quick    everything but the end-to-end suites (real Envoy, real workerd)
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
cd "$root"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
step() { printf '\n=== %s\n' "$*"; }

step "setup"
scripts/setup.sh

step "format"
cargo fmt --all -- --check

step "clippy (unwrap, expect, panic and indexing are denied in product code)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build the .wasm modules (core, Envoy filter, host-test fixture)"
cargo build --target wasm32-unknown-unknown --release --quiet \
  -p edgegate -p edgegate-proxy-wasm -p host-tests-fixture

step "cargo test: core, JOSE vectors, PyJWT tokens, docs, and host-tests (the filter .wasm under wasmtime)"
cargo test --workspace --quiet

step "JSON Schema is up to date"
generated="$(mktemp)"
cargo run -q -p edgegate --features schema --example schema > "$generated"
diff -u schema/edgegate.schema.json "$generated" || { echo "schema/edgegate.schema.json is stale: regenerate it with cargo run -p edgegate --features schema --example schema > schema/edgegate.schema.json" >&2; exit 1; }
rm -f "$generated"

if [ "$quick" = 1 ]; then exit 0; fi

step "Envoy filter: end-to-end tests against a real Envoy (envoy/test.sh)"
bash envoy/test.sh

step "Edge worker: end-to-end tests in real workerd (edge-worker/test.sh)"
bash edge-worker/test.sh
