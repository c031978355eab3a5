// Instant API-key revocation through a remote key list (`api_keys.remote`, issue 13) in real
// workerd: a local HTTP server serves the list the real CLI writes (`edgegate keys new --list`);
// `edgegate keys revoke` rewrites it and the key is refused within the refresh interval while the
// other key still works; with the server down the last list is used until `max_stale_seconds`,
// then key requests get 503 `api_keys_unavailable`; the server back, keys work again. Each
// accepted request is judged by what the origin received; every wait polls with a deadline.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildEdgegateCli, edgegateCli, freePort, getWithBearer, startOrigin, startWorkerd } from "./harness.mjs";
import { mintApiKey } from "./apikeys.mjs";

const cli = edgegateCli;

/** Serves `path` at /keys.json with a strong ETag (304 to a matching If-None-Match); stoppable
 * and restartable on the same port. */
function listServer(path, port) {
  const hits = { 200: 0, 304: 0 };
  let server;
  return {
    hits,
    url: `http://127.0.0.1:${port}/keys.json`,
    async start() {
      server = createServer((req, res) => {
        if (req.url !== "/keys.json") {
          res.writeHead(404).end();
          return;
        }
        const body = readFileSync(path);
        const etag = `"${createHash("sha256").update(body).digest("hex").slice(0, 16)}"`;
        if (req.headers["if-none-match"] === etag) {
          hits[304]++;
          res.writeHead(304, { etag }).end();
          return;
        }
        hits[200]++;
        res.writeHead(200, { "content-type": "application/json", etag }).end(body);
      });
      await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
    },
    async stop() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function eventually(fn, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= deadline) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

let origin;
let wd;
let dir;
let listPath;
let server;
const keys = {};
const inline = mintApiKey();

/** "200 <subject the origin received>" or "<status> <reason>". */
async function answer(key) {
  const { status, body } = await getWithBearer(`${wd.urls.gate}/x`, key);
  if (status === 200) return `200 ${body.headers["x-edgegate-subject"]}`;
  return `${status} ${body.reason}`;
}

before(async () => {
  buildEdgegateCli();
  dir = mkdtempSync(join(tmpdir(), "edgegate-keylist-"));
  listPath = join(dir, "keys.json");
  for (const name of ["leaky", "steady"]) {
    keys[name] = cli("keys", "new", "--name", name, "--roles", "staff", "--list", listPath).split("\n")[0];
  }
  const hash = `sha256:${createHash("sha256").update(inline).digest("hex")}`;
  server = listServer(listPath, await freePort());
  await server.start();
  origin = await startOrigin();
  const config = {
    realm: "keylist",
    api_keys: {
      keys: [{ name: "break-glass", hash, roles: ["staff"] }],
      remote: {
        url: server.url,
        refresh_interval_seconds: 1,
        refresh_min_seconds: 1,
        refresh_max_seconds: 1,
        max_stale_seconds: 4,
        retry_initial_seconds: 1,
        retry_max_seconds: 1,
        fetch_timeout_ms: 1000,
      },
    },
    rules: [{ name: "api", match: { path: { prefix: "/" } }, credentials: ["api_key"] }],
  };
  wd = await startWorkerd({ originPort: origin.port, workers: [{ name: "gate", config, origin: "binding" }] });
});

after(async () => {
  await wd?.stop();
  await origin?.stop();
  await server?.stop().catch(() => {});
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a remote API-key list in the worker", () => {
  test("a revoked key is refused within the interval; an outage keeps the last list, then fails closed", async () => {
    // The first request of the isolate fetches the list before it is decided.
    assert.equal(await answer(keys.leaky), "200 leaky");
    assert.equal(await answer(keys.steady), "200 steady");
    assert.equal(await answer(inline), "200 break-glass");
    // Refreshes are conditional: the unchanged list comes back as 304.
    assert.ok(await eventually(async () => (await answer(keys.steady)) && server.hits[304] >= 1), JSON.stringify(server.hits));

    const revokedAt = Date.now();
    cli("keys", "revoke", "leaky", "--list", listPath);
    assert.ok(await eventually(async () => (await answer(keys.leaky)) === "401 api_key_unknown", 10_000), wd.logs());
    assert.ok(Date.now() - revokedAt < 5_000, "within the 1 s interval, well under 5 s");
    assert.equal(await answer(keys.steady), "200 steady");

    await server.stop();
    const downAt = Date.now();
    assert.equal(await answer(keys.steady), "200 steady", "the last good list is used");
    assert.ok(await eventually(async () => (await answer(keys.steady)) === "503 api_keys_unavailable"), wd.logs());
    assert.ok(Date.now() - downAt >= 2_000, "the last good list outlives a short outage");
    assert.match(wd.logs(), /api_keys\.remote: .*could not fetch it.*keeping the last good list/);
    // Only keys the list decides fail closed: the inline key still works, a malformed key is 401.
    assert.equal(await answer(inline), "200 break-glass");
    assert.equal(await answer("egk_short"), "401 api_key_malformed");

    await server.start();
    assert.ok(await eventually(async () => (await answer(keys.steady)) === "200 steady"), wd.logs());
    assert.equal(await answer(keys.leaky), "401 api_key_unknown");
    // The key never went upstream: the origin got identity headers only.
    assert.ok(origin.received.every((r) => r.headers.authorization === undefined));
  });

  test("a bad list is refused and the last good one kept", async () => {
    const good = readFileSync(listPath);
    const bad = JSON.parse(good);
    bad.keys.push({ name: "break-glass", hash: `sha256:${"ab".repeat(32)}` });
    writeFileSync(listPath, JSON.stringify(bad));
    const refused = /keys\[1\]\.name: the name \\?"break-glass\\?" appears twice/;
    // The worker fetches when a request comes and a fetch is due.
    assert.ok(await eventually(async () => (await answer(keys.steady)) && refused.test(wd.logs())), wd.logs());
    assert.equal(await answer(keys.steady), "200 steady");
    writeFileSync(listPath, good);
  });
});
