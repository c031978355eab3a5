#!/usr/bin/env bash
# Builds the worker (build.sh) and runs its end-to-end tests in real workerd (npm `workerd`),
# in front of an echoing origin on 127.0.0.1. Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
./build.sh
# `npm ci` refuses a lock file that lacks workerd's optional packages for other platforms, which
# happens when the registry in use does not serve them (here: no darwin/windows builds); then
# install from the same lock file with `npm install`, which tolerates that.
npm ci --no-audit --no-fund --loglevel=error 2>/dev/null \
  || npm install --no-audit --no-fund --no-save --loglevel=error
# Bounded: the suite takes seconds; a hang must not hold CI.
timeout 300 node --test --test-timeout=60000 test/*.test.mjs
