#!/usr/bin/env bash
# edgegate vs a plain JS `jose` worker, both in one workerd (npm), under wrk on 127.0.0.1.
# Prints req/s, workerd CPU per request and the ratios edgegate/jose (bench/wrk-bench.mjs), then
# the CPU cost of one signature verification per primitive (bench/crypto-micro.mjs).
#   ./bench.sh                  build, then both benchmarks
#   SKIP_BUILD=1 ./bench.sh     use dist/ as it is
#   BENCH_SECONDS=10 BENCH_ROUNDS=5 BENCH_CONNECTIONS=8 ./bench.sh
#   BENCH_MICRO=0 ./bench.sh    skip the per-primitive micro-benchmark
# Run it on a quiet machine: CPU per request is robust to load, req/s is not.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
command -v wrk >/dev/null || { echo "bench.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || ./build.sh
[ -d node_modules/jose ] && [ -d node_modules/workerd ] || npm ci --no-audit --no-fund --loglevel=error 2>/dev/null \
  || npm install --no-audit --no-fund --no-save --loglevel=error
node bench/wrk-bench.mjs
if [ "${BENCH_MICRO:-1}" != 0 ]; then
  echo
  node bench/crypto-micro.mjs "${BENCH_MICRO_N:-2000}"
fi
