#!/usr/bin/env bash
# Builds the worker (build.sh) and runs its end-to-end tests in real workerd (npm `workerd`),
# in front of an echoing origin on 127.0.0.1. Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
./build.sh
npm ci --no-audit --no-fund --loglevel=error
# Bounded: the suite takes seconds; a hang must not hold CI.
timeout 300 node --test --test-timeout=60000 test/*.test.mjs
