#!/usr/bin/env bash
# Installs edge-worker's node dependencies (package.json's devDependencies: workerd,
# oidc-provider, jose, ...) into edge-worker/node_modules, only when one is missing or not at its
# pinned version: silent and quick when they are. Used by envoy/run.sh (the demo OP runs on
# oidc-provider) and envoy/test.sh. As edge-worker/test.sh: `npm ci`, or `npm install` from the
# same lock file when `npm ci` refuses it (a registry without workerd's other-platform builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if node -e '
    const fs = require("fs");
    for (const [name, version] of Object.entries(require("./package.json").devDependencies)) {
      let got;
      try { got = JSON.parse(fs.readFileSync(`node_modules/${name}/package.json`, "utf8")).version; } catch {}
      if (got !== version) process.exit(1);
    }'; then
    exit 0
fi
echo "deps.sh: installing edge-worker's node dependencies (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error 2>/dev/null \
    || npm install --no-audit --no-fund --no-save --loglevel=error
