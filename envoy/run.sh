#!/usr/bin/env bash
# The demo: builds the filter, installs Envoy, and runs
#   Envoy 127.0.0.1:10000 (admin 127.0.0.1:9901) with envoy/envoy.yaml (the proxy-wasm filter;
#   `envoy/run.sh --native`: envoy/native/envoy.yaml, the native dynamic module)
#   an echo upstream on 127.0.0.1:10001 (answers with the headers it received)
#   a test IdP on 127.0.0.1:10002 (discovery + JWKS; mint tokens at /_control/mint)
#   a demo OpenID Provider on 127.0.0.1:10003 (envoy/demo/op.mjs, npm oidc-provider: one-click
#   login as alice or bob), which the `login` section of envoy.yaml logs browsers in with
# then prints credentials and curl lines. Ctrl-C stops everything it started (by PID).
# Idempotent: what is installed or built already is reused; a second run while one is up stops
# at the port check.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

bash envoy/install.sh
# The demo OP runs on npm oidc-provider from edge-worker/node_modules (installed only when
# missing or not at the pinned version).
bash edge-worker/deps.sh
config=envoy/envoy.yaml
logger=wasm
if [[ "${1:-}" == "--native" ]]; then
    # Envoy loads libedgegate.so (module `edgegate`) from this directory.
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$(dirname "$(bash envoy/build-native.sh)")"
    export ENVOY_DYNAMIC_MODULES_SEARCH_PATH
    config=envoy/native/envoy.yaml
    logger=dynamic_modules
else
    # EDGEGATE_WASM=FILE runs that build of the filter instead of building one.
    wasm="${EDGEGATE_WASM:-$(bash envoy/build.sh)}"
    mkdir -p .tools
    cp "$wasm" .tools/edgegate_proxy_wasm.wasm   # the path envoy.yaml names (relative to the repo root)
fi
py=.tools/venv/bin/python
log=.tools/envoy-demo.log
op_log=.tools/demo-op.log

pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "run.sh: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready WHAT URL PID TRIES LOG: polls URL (every 0.2 s, TRIES times) until it answers 200;
# stops early when PID exits; exits with LOG's tail when WHAT never became ready.
wait_ready() {
    local what="$1" url="$2" pid="$3" tries="$4" what_log="$5"
    for _ in $(seq 1 "$tries"); do
        if "$py" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('$url', timeout=1).status == 200 else 1)" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.2
    done
    echo "run.sh: $what; its log ($what_log):" >&2
    tail -n 30 "$what_log" >&2 || true
    exit 1
}

for port in 9901 10000 10001 10002 10003; do
    if "$py" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
        echo "run.sh: 127.0.0.1:$port is already in use (another demo running?)" >&2
        exit 1
    fi
done

PYTHONPATH=envoy/tests "$py" -m support.upstream --port 10001 &
pids+=($!)
PYTHONPATH=envoy/tests "$py" -m support.idp --port 10002 --audience edgegate-demo &
pids+=($!)
node envoy/demo/op.mjs --port 10003 >"$op_log" 2>&1 &
op_pid=$!
pids+=($op_pid)
# Envoy fetches the OP's keys at start: the OP first (else the first login waits for a retry).
wait_ready "the demo OP did not start" \
    http://127.0.0.1:10003/.well-known/openid-configuration "$op_pid" 100 "$op_log"
.tools/venv/bin/envoy -c "$config" --concurrency 2 --disable-hot-restart \
    -l warning --component-log-level "$logger:info" --log-path "$log" &
envoy_pid=$!
pids+=($envoy_pid)
wait_ready "Envoy did not become ready" http://127.0.0.1:9901/ready "$envoy_pid" 150 "$log"

jwt_user="$("$py" envoy/demo/mint.py jwt --sub alice)"
jwt_admin="$("$py" envoy/demo/mint.py jwt --sub root --roles admin)"
apikey="$("$py" envoy/demo/mint.py apikey)"
magic="$("$py" envoy/demo/mint.py magic --email ann@example.com)"
idp_jwt="$("$py" -c "import json,urllib.request; r=urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:10002/_control/mint', data=b'{\"sub\": \"bob\"}', method='POST'), timeout=5); print(json.load(r)['token'])")"

login_info="Log in through Envoy (the login section of $config, with the demo OP on :10003):
  open http://127.0.0.1:10000/app in a browser; log in as alice (roles admin, staff) or bob
  (staff) with one click, no password. You land back on /app, logged in: the echo shows
  x-edgegate-subject. Then http://127.0.0.1:10000/auth/me (your identity as JSON),
  http://127.0.0.1:10000/admin (alice only) and http://127.0.0.1:10000/auth/logout.
  Headless, with curl and a cookie jar:
  jar=\$(mktemp)
  page=\$(curl -s -L -b \$jar -c \$jar -o /dev/null -w '%{url_effective}' 'http://127.0.0.1:10000/auth/login?rd=/app')
  curl -s -L -b \$jar -c \$jar -d user=alice \"\$page/login\"     # through the OP and the callback to /app
  curl -s -b \$jar http://127.0.0.1:10000/auth/me                  # {\"subject\":\"alice\",...}"

cat <<INFO

edgegate demo is up: http://127.0.0.1:10000   (admin http://127.0.0.1:9901, Envoy log $log,
demo OP http://127.0.0.1:10003, its log $op_log)

$login_info

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

Ctrl-C stops Envoy, the upstream, the IdP and the demo OP.
INFO
wait "$envoy_pid"
