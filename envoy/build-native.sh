#!/usr/bin/env bash
# Builds edgegate as a native Envoy dynamic module and prints the path of libedgegate.so on
# stdout. Envoy loads a module named `edgegate` (`dynamic_module_config: {name: edgegate}`) as
# lib${name}.so from ENVOY_DYNAMIC_MODULES_SEARCH_PATH: point that at the printed file's
# directory.
#
# The profile is release-native (release with panic=unwind: every hook catches a panic and
# fails the request closed). The module is built for one Envoy minor version: 1.40 here (see
# filter/envoy-module/src/abi.rs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
(cd "$repo" && cargo build --quiet -p edgegate-envoy-module --profile release-native >&2)
dir="$CARGO_TARGET_DIR/envoy-native"
mkdir -p "$dir"
# A copy, not a link: Envoy dlopens this name, and a running Envoy keeps its file while cargo
# rewrites its own output.
cp -f "$CARGO_TARGET_DIR/release-native/libedgegate_envoy_module.so" "$dir/libedgegate.so.tmp"
mv -f "$dir/libedgegate.so.tmp" "$dir/libedgegate.so"
echo "$dir/libedgegate.so"
