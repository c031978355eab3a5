#!/usr/bin/env bash
# "Protect your first route in five minutes" (README): runs a real Envoy with the edgegate filter
# and YOUR config in front of an echo upstream (it answers with the headers it received), on
# 127.0.0.1. Ctrl-C stops everything it started.
#
#   docs/first-route/run.sh edgegate.json [PORT]     # PORT defaults to 10000
#
# The listener (envoy/tests/support/envoyproc.py) carries the connection-manager hardening of
# envoy/envoy.yaml: normalize_path, merge_slashes, path_with_escaped_slashes_action and
# headers_with_underscores_action (REJECT_REQUEST); envoy/README.md says why.
# The config is checked first (`edgegate config check`: every error with its path and fix).
# Envoy and the filter come from envoy/install.sh and envoy/build.sh (CARGO_TARGET_DIR honoured).
set -euo pipefail
config="${1:?usage: docs/first-route/run.sh CONFIG.json [PORT]}"
port="${2:-10000}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[[ -f "$config" ]] || { echo "run.sh: no such file: $config" >&2; exit 2; }
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"

cargo run --quiet --manifest-path "$repo/Cargo.toml" -p edgegate-cli -- config check "$config"
bash "$repo/envoy/install.sh" >&2
wasm="$(bash "$repo/envoy/build.sh")"
py="$repo/.tools/venv/bin/python"
work="$(mktemp -d)"

pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r upstream_port admin_port < <("$py" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

PYTHONPATH="$repo/envoy/tests" "$py" -m support.upstream --port "$upstream_port" >"$work/upstream.log" 2>&1 &
pids+=($!)
PYTHONPATH="$repo/envoy/tests" "$py" - "$config" "$wasm" "$port" "$upstream_port" "$admin_port" >"$work/envoy.json" <<'PY'
import json, sys
from support import envoyproc
config, wasm, port, upstream, admin = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
with open(config) as f:
    plugin = f.read()
listener = envoyproc.listener(port, wasm, plugin)
print(json.dumps(envoyproc.bootstrap({"upstream": upstream}, listeners=[listener], admin_port=admin)))
PY
"$repo/.tools/venv/bin/envoy" -c "$work/envoy.json" --concurrency 1 --disable-hot-restart \
    -l warning --component-log-level wasm:info --log-path "$work/envoy.log" &
pids+=($!)

for _ in $(seq 1 150); do
    if "$py" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$admin_port/ready', timeout=1).status == 200 else 1)" 2>/dev/null; then
        cat <<INFO
edgegate is up: http://127.0.0.1:$port (your config: $config)
  Envoy admin http://127.0.0.1:$admin_port (metrics: /stats/prometheus), log $work/envoy.log
Ctrl-C stops it.
INFO
        wait "${pids[1]}"
        exit $?
    fi
    kill -0 "${pids[1]}" 2>/dev/null || break
    sleep 0.2
done
echo "run.sh: Envoy did not start; its log:" >&2
tail -n 30 "$work/envoy.log" >&2 || true
exit 1
