#!/usr/bin/env bash
# Builds the .wasm files the host tests load (fixture filter + real filter), then runs
# `cargo test -p host-tests`. Extra arguments go to cargo test (e.g. a test name filter).
# Tests look for <target>/wasm32-unknown-unknown/release/*.wasm (or $HOST_TESTS_FIXTURE_WASM /
# $EDGEGATE_WASM) and fail with the build command if a file is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
packages=(-p host-tests-fixture)
if cargo metadata --no-deps --format-version 1 | grep -q '"name":"edgegate-proxy-wasm"'; then
  packages+=(-p edgegate-proxy-wasm)
else
  echo "run.sh: edgegate-proxy-wasm is not in the workspace yet; tests/filter.rs will fail" >&2
fi
cargo build "${packages[@]}" --target wasm32-unknown-unknown --release
cargo test -p host-tests "$@"
