// `wrangler deploy --dry-run` of wrangler.toml succeeds offline (npm `wrangler`, pinned in
// package.json; no login, no metrics) and reports the bundle size; secrets are not inline.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { workerDir } from "./harness.mjs";

test("wrangler deploy --dry-run succeeds and reports the bundle size", (t) => {
  const bin = join(workerDir, "node_modules/.bin/wrangler");
  assert.ok(existsSync(bin), "npm wrangler is installed (npm ci)");
  assert.ok(existsSync(join(workerDir, "dist/worker.mjs")), "dist/ is built (./build.sh)");
  const outdir = mkdtempSync(join(tmpdir(), "edgegate-wrangler-"));
  try {
    const r = spawnSync(bin, ["deploy", "--dry-run", "--outdir", outdir], {
      cwd: workerDir,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_API_TOKEN: "", NO_COLOR: "1" },
    });
    const out = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.status, 0, out);
    assert.match(out, /--dry-run: exiting now/);
    assert.doesNotMatch(out, /WARNING|ERROR/, out);
    // what would be uploaded: the entry, the glue and the wasm, and the bindings
    for (const f of ["worker.mjs", "edgegate_worker.js", "edgegate_worker_bg.wasm"]) {
      assert.ok(existsSync(join(outdir, f)), `${f} in the bundle`);
    }
    assert.equal(
      statSync(join(outdir, "edgegate_worker_bg.wasm")).size,
      statSync(join(workerDir, "dist/edgegate_worker_bg.wasm")).size,
    );
    assert.match(out, /env\.USED_LINKS \(UsedLinks\)\s+Durable Object/);
    assert.match(out, /env\.DEVICE_GRANTS \(DeviceGrants\)\s+Durable Object/);
    assert.match(out, /env\.ORIGIN_URL/);
    const size = out.match(/Total Upload: ([\d.]+ KiB) \/ gzip: ([\d.]+ KiB)/);
    assert.ok(size, out);
    t.diagnostic(`bundle: ${size[1]}, gzip ${size[2]}`);
    console.log(`wrangler dry run: total upload ${size[1]}, gzip ${size[2]}`);
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
});

test("wrangler.toml: secrets are bindings, not inline; the Durable Object has its migration", () => {
  const toml = readFileSync(join(workerDir, "wrangler.toml"), "utf8");
  const vars = toml.slice(toml.indexOf("[vars]")).split(/\n\[/)[0];
  for (const secret of ["EDGEGATE_CONFIG", "OIDC_CLIENT_SECRET"]) {
    assert.doesNotMatch(vars, new RegExp(`^${secret}\\s*=`, "m"), `${secret} must not be a var`);
    assert.match(toml, new RegExp(`wrangler secret put ${secret}`), `${secret} is documented`);
  }
  assert.match(toml, /^main = "dist\/worker\.mjs"$/m);
  assert.match(toml, /new_sqlite_classes = \["UsedLinks"\]/);
  assert.match(toml, /class_name = "UsedLinks"/);
  assert.match(toml, /new_sqlite_classes = \["DeviceGrants"\]/);
  assert.match(toml, /class_name = "DeviceGrants"/);
});
