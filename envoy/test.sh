#!/usr/bin/env bash
# The Envoy end-to-end suite, as CI runs it: install the tooling (envoy/install.sh), build both
# packagings of the filter (envoy/build.sh: the proxy-wasm filter; envoy/build-native.sh: the
# native dynamic module), run pytest against a real Envoy: every test that starts an Envoy runs
# once per packaging (EDGEGATE_PACKAGINGS=wasm or =native runs one). Extra arguments go to pytest
# (e.g. envoy/test.sh -k jwks -x). Exits non-zero on any failure, and when no test ran.
#
# Then the login suites shared with the edge worker (issue 12), against Envoy with each packaging
# tested: edge-worker/test/{rp-conformance,login,browser,device-hosts}.test.mjs with EDGEGATE_RP_HOSTS=envoy
# (the .wasm) and/or envoy-native (the dynamic module) (the same cases the worker passes in
# workerd; edge-worker/test/envoy-host.mjs starts the Envoys). They run when no pytest arguments
# are given; EDGEGATE_LOGIN_E2E=1 forces them, =0 skips them. Node dependencies come from
# edge-worker/node_modules, installed by edge-worker/deps.sh (npm ci, as edge-worker/test.sh)
# only when a devDependency is missing or not at its pinned version.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

bash "$here/install.sh"
EDGEGATE_WASM="$(bash "$here/build.sh")"
export EDGEGATE_WASM
echo "test.sh: filter $EDGEGATE_WASM ($(stat -c %s "$EDGEGATE_WASM") bytes)"
EDGEGATE_NATIVE_SO="$(bash "$here/build-native.sh")"
export EDGEGATE_NATIVE_SO
echo "test.sh: native module $EDGEGATE_NATIVE_SO ($(stat -c %s "$EDGEGATE_NATIVE_SO") bytes)"

# The shared login suites run after a whole-suite run (no test path or -k named; output flags
# such as -q keep them), on the hosts of the packagings tested.
login_e2e=1
for a in "$@"; do
    case "$a" in -q | -v | -vv | -x | -s | --tb=*) ;; *) login_e2e=0 ;; esac
done
hosts=()
[[ ",${EDGEGATE_PACKAGINGS:-wasm,native}," == *,wasm,* ]] && hosts+=(envoy)
[[ ",${EDGEGATE_PACKAGINGS:-wasm,native}," == *,native,* ]] && hosts+=(envoy-native)
((${#hosts[@]})) || login_e2e=0
login_e2e="${EDGEGATE_LOGIN_E2E:-$login_e2e}"
rp_hosts="$(IFS=,; echo "${hosts[*]:-envoy}")"

# Node dependencies (edge-worker/node_modules: the demo OP of test_demo.py, the login suites),
# installed only when one is missing or not at its pinned version.
bash "$repo/edge-worker/deps.sh"

# Run the whole suite unless a test file or directory is named.
paths=()
for a in "$@"; do [[ -e "${a%%::*}" ]] && paths+=("$a"); done
((${#paths[@]})) || set -- "$@" "$here/tests"

set +e
"$repo/.tools/venv/bin/python" -m pytest -c "$here/pytest.ini" --rootdir "$here" "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "test.sh: pytest collected no tests: that is a failure" >&2
    rc=1
fi

if [[ "$login_e2e" == 1 ]]; then
    worker="$repo/edge-worker"
    echo "test.sh: the login suites shared with the edge worker, against Envoy (EDGEGATE_RP_HOSTS=$rp_hosts)"
    set +e
    # --test-timeout bounds each file too: rp-conformance against two Envoys takes over a minute.
    (cd "$worker" && EDGEGATE_RP_HOSTS="$rp_hosts" timeout 1800 node --test --test-timeout=600000 \
        test/rp-conformance.test.mjs test/login.test.mjs test/browser.test.mjs test/device-hosts.test.mjs)
    node_rc=$?
    set -e
    ((node_rc == 0)) || { echo "test.sh: the login suites against Envoy failed ($node_rc)" >&2; ((rc)) || rc=$node_rc; }
fi
exit $rc
