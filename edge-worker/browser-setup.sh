#!/usr/bin/env bash
# Installs headless Chromium for the real-browser test (test/browser.test.mjs), from Debian's
# `chromium` package; playwright-core drives it (no browser download from the internet).
# Idempotent: does nothing when `chromium --version` already works.
set -euo pipefail
if chromium --version >/dev/null 2>&1; then
  echo "browser-setup.sh: $(chromium --version) already installed"
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
chromium --version
