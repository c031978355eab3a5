#!/usr/bin/env bash
# The one test command (README, CI): installs what is missing, then runs every suite.
#   ./test.sh            everything
#   ./test.sh --quick    core only (fmt, clippy, unit and integration tests, wasm build)
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
cd "$root"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
step() { printf '\n=== %s\n' "$*"; }

step "setup"
scripts/setup.sh
export EDGEGATE_PYTHON="$root/.tools/venv/bin/python"

step "format"
cargo fmt --all -- --check

step "clippy (unwrap, expect, panic and indexing are denied in product code)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "core: cargo test"
cargo test --workspace --quiet

step "core: build for wasm32-unknown-unknown"
cargo build -p edgegate --target wasm32-unknown-unknown --release --quiet

step "JSON Schema is up to date"
cargo run -q -p edgegate --features schema --example schema > target/edgegate.schema.json
diff -u schema/edgegate.schema.json target/edgegate.schema.json

if [ "$quick" = 1 ]; then exit 0; fi
