#!/usr/bin/env bash
# The Envoy end-to-end suite, as CI runs it: install the tooling (envoy/install.sh), build both
# packagings of the filter (envoy/build.sh: the proxy-wasm filter; envoy/build-native.sh: the
# native dynamic module), run pytest against a real Envoy: every test that starts an Envoy runs
# once per packaging (EDGEGATE_PACKAGINGS=wasm or =native runs one). Extra arguments go to pytest
# (e.g. envoy/test.sh -k jwks -x). Exits non-zero on any failure, and when no test ran.
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
    exit 1
fi
exit $rc
