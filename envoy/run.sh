#!/usr/bin/env bash
# The demo: builds the filter, installs Envoy, and runs
#   Envoy 127.0.0.1:10000 (admin 127.0.0.1:9901) with envoy/envoy.yaml (the proxy-wasm filter;
#   `envoy/run.sh --native`: envoy/native/envoy.yaml, the native dynamic module)
#   an echo upstream on 127.0.0.1:10001 (answers with the headers it received)
#   a test IdP on 127.0.0.1:10002 (discovery + JWKS; mint tokens at /_control/mint)
# then prints credentials and curl lines. Ctrl-C stops everything it started.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

bash envoy/install.sh
config=envoy/envoy.yaml
logger=wasm
if [[ "${1:-}" == "--native" ]]; then
    # Envoy loads libedgegate.so (module `edgegate`) from this directory.
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$(dirname "$(bash envoy/build-native.sh)")"
    export ENVOY_DYNAMIC_MODULES_SEARCH_PATH
    config=envoy/native/envoy.yaml
    logger=dynamic_modules
else
    wasm="$(bash envoy/build.sh)"
    mkdir -p .tools
    cp "$wasm" .tools/edgegate_proxy_wasm.wasm   # the path envoy.yaml names (relative to the repo root)
fi
py=.tools/venv/bin/python
log=.tools/envoy-demo.log

pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "run.sh: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in 9901 10000 10001 10002; do
    if "$py" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
        echo "run.sh: 127.0.0.1:$port is already in use (another demo running?)" >&2
        exit 1
    fi
done

PYTHONPATH=envoy/tests "$py" -m support.upstream --port 10001 &
pids+=($!)
PYTHONPATH=envoy/tests "$py" -m support.idp --port 10002 --audience edgegate-demo &
pids+=($!)
.tools/venv/bin/envoy -c "$config" --concurrency 2 --disable-hot-restart \
    -l warning --component-log-level "$logger:info" --log-path "$log" &
pids+=($!)

ready=""
for _ in $(seq 1 150); do
    if "$py" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9901/ready', timeout=1).status == 200 else 1)" 2>/dev/null; then
        ready=1
        break
    fi
    if ! kill -0 "${pids[2]}" 2>/dev/null; then break; fi
    sleep 0.2
done
if [[ -z "$ready" ]]; then
    echo "run.sh: Envoy did not become ready; its log ($log):" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
fi

jwt_user="$("$py" envoy/demo/mint.py jwt --sub alice)"
jwt_admin="$("$py" envoy/demo/mint.py jwt --sub root --roles admin)"
apikey="$("$py" envoy/demo/mint.py apikey)"
magic="$("$py" envoy/demo/mint.py magic --email ann@example.com)"
idp_jwt="$("$py" -c "import json,urllib.request; r=urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:10002/_control/mint', data=b'{\"sub\": \"bob\"}', method='POST'), timeout=5); print(json.load(r)['token'])")"

cat <<INFO

edgegate demo is up: http://127.0.0.1:10000   (admin http://127.0.0.1:9901, Envoy log $log)

Demo credentials: paste these lines into another shell.
export JWT='$jwt_user'
export ADMIN_JWT='$jwt_admin'
export IDP_JWT='$idp_jwt'
export API_KEY='$apikey'
export MAGIC='$magic'

Then try:
  curl -i http://127.0.0.1:10000/public/hello                                  # public: 200
  curl -i http://127.0.0.1:10000/orders                                        # 401 credential_missing
  curl -i -H "Authorization: Bearer \$JWT" http://127.0.0.1:10000/orders      # HS256 JWT: 200, see x-edgegate-*
  curl -i -H "Authorization: Bearer \$IDP_JWT" http://127.0.0.1:10000/orders  # RS256 via the IdP's JWKS
  curl -i -H "x-api-key: \$API_KEY" http://127.0.0.1:10000/orders             # API key
  curl -i -H "Authorization: Bearer \$JWT" http://127.0.0.1:10000/admin       # 403 missing_role
  curl -i -H "Authorization: Bearer \$ADMIN_JWT" http://127.0.0.1:10000/admin # 200
  curl -i -H "x-edgegate-subject: admin" http://127.0.0.1:10000/public/hello   # spoofed header stripped
  curl -i "http://127.0.0.1:10000/auth/magic?token=\$MAGIC"                   # confirm page (GET never consumes)
  curl -i --data "token=\$MAGIC" http://127.0.0.1:10000/auth/magic            # 302 + session cookie, once
  curl -s -X POST http://127.0.0.1:10002/_control/rotate                       # the IdP rotates its key
  curl -s http://127.0.0.1:9901/stats/prometheus | grep ^edgegate_             # metrics

Ctrl-C stops Envoy, the upstream and the IdP.
INFO
wait "${pids[2]}"
