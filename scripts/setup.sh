#!/usr/bin/env bash
# Installs what building and testing edgegate needs, skipping whatever is already there at the
# right version. Safe to run again and again; the test command runs it first.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
say() { printf '[setup] %s\n' "$*"; }

# Rust targets for the filter (proxy-wasm) and the wasm benchmarks.
installed_targets="$(rustup target list --installed)"
for t in wasm32-unknown-unknown wasm32-wasip1; do
  grep -qx "$t" <<<"$installed_targets" || { say "rustup target add $t"; rustup target add "$t"; }
done
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

# ring compiles C for wasm32: Debian's clang, llvm-ar and lld.
need_apt=()
command -v clang >/dev/null || need_apt+=(clang)
command -v llvm-ar >/dev/null || need_apt+=(llvm)
command -v wasm-ld >/dev/null || need_apt+=(lld)
if ((${#need_apt[@]})); then
  say "apt-get install ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python venv with the independent JWT implementations used by the tests (PyJWT, jwcrypto).
venv="$root/.tools/venv"
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
req="$root/filter/core/tests/mint/requirements.txt"
stamp="$venv/.edgegate-mint-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "pip install -r $req"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$stamp"
fi

# Headless Chromium for the edge worker's real-browser login test (Debian package; skipped when present).
"$root/edge-worker/browser-setup.sh"
