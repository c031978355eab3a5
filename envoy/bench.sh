#!/usr/bin/env bash
# edgegate's Envoy filter (proxy-wasm and the native dynamic module) against Envoy's native
# jwt_authn: one run, interleaved rounds, all on 127.0.0.1, every Envoy with --concurrency 1, load
# from wrk (-t1 -c50). See envoy/bench.py.
#
#   envoy/bench.sh            3 rounds x 7 s per cell, 9 configs x 2 workloads (~8 minutes)
#   envoy/bench.sh --quick    2 rounds x 2 s per cell, no warm-up (~1.2 minutes): a smoke run, not numbers to quote
#   envoy/bench.sh --rounds 5 --duration 10 --configs none,jwt_authn,jwt_authn+cache,edgegate
#
#   envoy/bench.sh --rounds 12 --duration 2 --workloads repeated --configs wasm-noop,jwt_authn+cache,edgegate
#   envoy/bench.sh --instructions [--requests N] [--configs ...]   the same configs under valgrind's
#                             callgrind: Envoy's instructions per request, deterministic (bench_instructions.py)
#
# Configs: none, wasm-noop (envoy/noop-filter: a Rust proxy-wasm filter that does nothing),
# jwt_authn (no cache), jwt_authn+cache (jwt_cache_config), edgegate (release
# wasm, V8), edgegate-nocache (jwt.cache.max_entries 0), wasm-noverify (edgegate on a public
# rule that looks for no credential: the wasm/ABI cost without the JWT check), edgegate-native
# and edgegate-native-nocache (the native dynamic module, envoy/build-native.sh; with and without
# its token cache). Not by default: native-noverify (the module on the public rule),
# native-base (--base-native OTHER.so: another build of the module, loaded as `edgegate_base`),
# edgegate-opt (--opt-wasm "$(envoy/build.sh --opt)"), edgegate-base (--base-wasm OTHER.wasm:
# an earlier build, measured in the same run for a before/after), and the no-op module pricing
# host calls: wasm-hostcalls (20 removals), wasm-readheaders (header map + clock),
# wasm-setheaders / wasm-addheaders (7 headers, replace or add calls), wasm-setmap (the map
# written back whole), wasm-set2 (2 headers); and the no-op native module (envoy/noop-module):
# native-noop (its hooks do nothing: the floor of any dynamic module) and native-hostcalls (the
# calls edgegate's module makes on a cached allow: the header map read, authorization removed,
# 7 headers added), and each alone: native-readmap, native-adds, native-remove; and a logged-in
# browser (the session cookie as the credential): wasm-session, native-session, and each with
# the cache off (*-session-nocache: every request opens the cookie); and the one job jwt_authn
# does here (one claim header upstream): edgegate-subject, native-subject and
# native-subject-nocache (`identity_headers.send: ["subject"]`), with their floors wasm-floor1
# and native-floor1 (the no-op modules making the same calls).
# With 2+ CPUs the Envoy under test runs on CPU 0 and wrk and the upstream on CPU 1 (--no-pin:
# off). Prints a markdown table: req/s, p50, p99, the Envoy's CPU time per request (medians over
# rounds), and ratios to jwt_authn: of the medians, and "paired" (the median of the per-round
# ratios, which cancels the machine's drift between rounds; use many short rounds for it).
# Every process it starts is stopped by PID (Envoys also die with it: PR_SET_PDEATHSIG).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

# Installs a tool from apt when it is missing.
need() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null && return 0
    echo "bench.sh: installing $pkg (apt)" >&2
    local sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
}

args=()
instructions=0
for a in "$@"; do
    if [[ "$a" == "--quick" ]]; then
        args+=(--rounds 2 --duration 2 --warmup 0 --tokens 1500)
    elif [[ "$a" == "--instructions" ]]; then
        instructions=1
    else
        args+=("$a")
    fi
done

if (( instructions )); then
    need valgrind valgrind
    need callgrind_control valgrind
else
    need wrk wrk
fi
bash "$here/install.sh"
wasm="$(bash "$here/build.sh")"
native="$(bash "$here/build-native.sh")"
# The no-op filter (its own workspace), the floor of any Rust wasm filter.
target="${CARGO_TARGET_DIR:-$repo/target}"
(cd "$here/noop-filter" && CARGO_TARGET_DIR="$target" cargo build --quiet --release --target wasm32-unknown-unknown >&2)
noop="$target/wasm32-unknown-unknown/release/edgegate_noop_filter.wasm"
# The no-op native module (its own workspace), the floor of any dynamic module.
(cd "$here/noop-module" && CARGO_TARGET_DIR="$target" cargo build --quiet --release >&2)
noop_native="$target/release/libedgegate_noop_module.so"
modules=(--wasm "$wasm" --native-so "$native" --noop-wasm "$noop" --noop-native "$noop_native")
if (( instructions )); then
    exec "$repo/.tools/venv/bin/python" "$here/bench_instructions.py" "${modules[@]}" "${args[@]}"
fi
echo "bench.sh: filter $wasm ($(stat -c %s "$wasm") bytes), $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2)" >&2
exec "$repo/.tools/venv/bin/python" "$here/bench.py" "${modules[@]}" --wrk "$(command -v wrk)" "${args[@]}"
