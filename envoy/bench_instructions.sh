#!/usr/bin/env bash
# Instructions per request under valgrind's callgrind, for the configs of envoy/bench.sh (see
# envoy/bench_instructions.py): deterministic where bench.sh's CPU time moves by up to 8% from
# run to run on a small VM. Each Envoy runs under callgrind with one worker; N requests are
# counted after a warm-up; the native module's count is also split into its own instructions
# and those of its calls into Envoy. ~1 minute per config and workload.
#
#   envoy/bench_instructions.sh
#   envoy/bench_instructions.sh --workloads repeated --configs jwt_authn+cache,native-subject,edgegate-subject
#   envoy/bench_instructions.sh --base-native OTHER.so --configs native-base,edgegate-native
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
    echo "bench_instructions.sh: installing valgrind (apt)" >&2
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
bash "$here/install.sh"
wasm="$(bash "$here/build.sh")"
native="$(bash "$here/build-native.sh")"
target="${CARGO_TARGET_DIR:-$repo/target}"
(cd "$here/noop-filter" && CARGO_TARGET_DIR="$target" cargo build --quiet --release --target wasm32-unknown-unknown >&2)
(cd "$here/noop-module" && CARGO_TARGET_DIR="$target" cargo build --quiet --release >&2)
exec "$repo/.tools/venv/bin/python" "$here/bench_instructions.py" --wasm "$wasm" --native-so "$native" \
    --noop-wasm "$target/wasm32-unknown-unknown/release/edgegate_noop_filter.wasm" \
    --noop-native "$target/release/libedgegate_noop_module.so" "$@"
