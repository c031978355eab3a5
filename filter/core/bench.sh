#!/usr/bin/env bash
# Signature verification speed per algorithm: the same program (filter/core/examples/bench_wasm.rs)
# natively, and as wasm32-wasip1 in V8 (node; the engine Envoy's release builds ship) and in
# wasmtime (host-tests' `wasi-bench` runner), in one run, with the ratios to native.
#   filter/core/bench.sh [ms-per-alg]      (default 2000)
# The criterion version of the native numbers: cargo bench -p edgegate --bench verify
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
ms="${1:-2000}"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build -q -p edgegate --example bench_wasm --release
cargo build -q -p edgegate --example bench_wasm --release --target wasm32-wasip1
native="$("$target/release/examples/bench_wasm" "$ms")"
v8="$(node filter/core/benches/run_wasm_bench.mjs "$target/wasm32-wasip1/release/examples/bench_wasm.wasm" "$ms" 2>/dev/null)"
# The runner's own build profile does not matter: cranelift's output is the same either way.
cargo build -q -p host-tests --bin wasi-bench
wasmtime_out="$("$target/debug/wasi-bench" "$target/wasm32-wasip1/release/examples/bench_wasm.wasm" "$ms")"
python3 - "$native" "$v8" "$wasmtime_out" <<'PY'
import sys
def table(text):
    rows = {}
    for line in text.strip().splitlines()[1:]:
        alg, verify, _us, full = line.split("\t")
        rows[alg] = (float(verify), float(full))
    return rows
native, v8 = table(sys.argv[1]), table(sys.argv[2])
wt = table(sys.argv[3]) if sys.argv[3].strip() else {}
head = f"{'alg':<6} {'native verify/s':>16} {'V8 wasm verify/s':>17} {'V8/native':>10} {'V8 parse+verify/s':>18}"
if wt:
    head += f" {'wasmtime verify/s':>18} {'wasmtime/native':>16}"
print(head)
for alg, (nv, _nf) in native.items():
    vv, vf = v8.get(alg, (0.0, 0.0))
    line = f"{alg:<6} {nv:>16,.0f} {vv:>17,.0f} {vv / nv:>10.2f} {vf:>18,.0f}"
    if wt:
        wv, _ = wt.get(alg, (0.0, 0.0))
        line += f" {wv:>18,.0f} {wv / nv:>16.2f}"
    print(line)
PY
