// What the operator CLI mints works through the edge worker in real workerd: an API key from
// `edgegate keys new` (its printed config entry pasted into the config as is) and a link from
// `edgegate magic new` (read from the very config file the worker runs with). The binary is the
// real one, built with cargo (CARGO_TARGET_DIR is honoured).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildEdgegateCli, edgegateCli, startOrigin, startWorkerd } from "./harness.mjs";

const cli = edgegateCli;

/** `edgegate keys new`: the key is stdout's first line, the config entry the rest. */
function keysNew(...args) {
  const out = cli("keys", "new", ...args);
  const nl = out.indexOf("\n");
  return { key: out.slice(0, nl), entry: JSON.parse(out.slice(nl + 1)) };
}

const secret = () => randomBytes(32).toString("base64url");

let origin;
let wd;
let gate;
let dir;
let configPath;
let minted;

before(async () => {
  buildEdgegateCli();

  minted = {
    main: keysNew("--name", "ci-pipeline-prod", "--roles", "staff,deployer", "--expires", "90d"),
    scoped: keysNew("--name", "reporter", "--roles", "staff", "--scope", "/api/"),
    unlisted: keysNew("--name", "never-configured"),
  };
  const config = {
    realm: "cli-tests",
    api_keys: { keys: [minted.main.entry, minted.scoped.entry] },
    magic_links: { keys: [{ kid: "m1", secret: secret() }] },
    session: { keys: [{ kid: "s1", secret: secret() }] },
    redirects: { allowed_hosts: ["desk.example.com"] },
    rules: [
      { name: "tickets", match: { path: { glob: "/tickets/*/**" } }, credentials: ["magic_link", "session", "api_key"] },
      { name: "api", match: { path: { prefix: "/api" } }, credentials: ["api_key"], require: { roles_any: ["staff"] } },
      { name: "app", match: { path: { prefix: "/" } }, credentials: ["session", "api_key"] },
    ],
  };
  dir = mkdtempSync(join(tmpdir(), "edgegate-cli-"));
  configPath = join(dir, "edgegate.json");
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  assert.match(cli("config", "check", configPath), /ok/);

  origin = await startOrigin();
  wd = await startWorkerd({
    originPort: origin.port,
    workers: [{ name: "gate", config, origin: "binding", usedLinks: "own" }],
  });
  gate = wd.urls.gate;
});

after(async () => {
  await wd?.stop();
  await origin?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const get = (url, headers = {}, init = {}) =>
  fetch(url, { headers, redirect: "manual", signal: AbortSignal.timeout(10_000), ...init });
const bearer = (key) => ({ authorization: `Bearer ${key}` });
const postLink = (token) =>
  get(`${gate}/auth/magic`, { "content-type": "application/x-www-form-urlencoded" }, {
    method: "POST",
    body: new URLSearchParams({ token }).toString(),
  });

async function echoed(res) {
  assert.equal(res.status, 200, `expected the origin's 200, got ${res.status}: ${await res.clone().text()}`);
  assert.equal(res.headers.get("x-origin"), "echo");
  return res.json();
}

async function refused(res, status, reason) {
  assert.equal(res.status, status, await res.clone().text());
  assert.equal((await res.json()).reason, reason);
}

describe("API keys from `edgegate keys new`", () => {
  test("the key is accepted, with its identity headers", async () => {
    const seen = await echoed(await get(`${gate}/api/tickets`, bearer(minted.main.key)));
    assert.equal(seen.headers["x-edgegate-subject"], "ci-pipeline-prod");
    assert.equal(seen.headers["x-edgegate-credential"], "api_key");
    assert.equal(seen.headers["x-edgegate-roles"], "staff,deployer");
    assert.equal(Number(seen.headers["x-edgegate-expires"]), minted.main.entry.expires_at);
  });

  test("a tampered key and an unlisted key are refused", async () => {
    const key = minted.main.key;
    const i = "egk_".length + 5;
    const tampered = key.slice(0, i) + (key[i] === "A" ? "B" : "A") + key.slice(i + 1);
    await refused(await get(`${gate}/api/tickets`, bearer(tampered)), 401, "api_key_checksum");
    await refused(await get(`${gate}/api/tickets`, bearer(minted.unlisted.key)), 401, "api_key_unknown");
  });

  test("the key's --scope is enforced", async () => {
    const seen = await echoed(await get(`${gate}/api/reports`, bearer(minted.scoped.key)));
    assert.equal(seen.headers["x-edgegate-subject"], "reporter");
    await refused(await get(`${gate}/inbox`, bearer(minted.scoped.key)), 403, "out_of_scope");
  });
});

describe("magic links from `edgegate magic new`", () => {
  const magicNew = (...args) => {
    const link = cli("magic", "new", "-c", configPath, "--base-url", "https://desk.example.com", ...args).trim();
    assert.match(link, /^https:\/\/desk\.example\.com\/auth\/magic\?token=/);
    return new URL(link);
  };

  test("GET shows the confirm page, POST opens a scoped session once", async () => {
    const url = magicNew("--email", "guest@example.com", "--purpose", "guest", "--scope", "/tickets/TRK-2849", "--ttl", "1h");
    const token = url.searchParams.get("token");
    const page = await get(`${gate}${url.pathname}${url.search}`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type"), /text\/html/);
    const html = await page.text();
    assert.ok(html.includes(token) && /method="post"/i.test(html));

    const res = await postLink(token);
    assert.equal(res.status, 302, await res.clone().text());
    const jar = res.headers.get("set-cookie").split(";")[0];
    assert.match(jar, /^edgegate_session=/);
    const seen = await echoed(await get(`${gate}/tickets/TRK-2849/thread`, { cookie: jar }));
    assert.equal(seen.headers["x-edgegate-email"], "guest@example.com");
    assert.equal(seen.headers["x-edgegate-credential"], "magic_link");
    await refused(await get(`${gate}/tickets/TRK-1/thread`, { cookie: jar }), 403, "out_of_scope");
    await refused(await postLink(token), 401, "token_replayed");
  });

  test("a login link goes to its --target", async () => {
    const token = magicNew("--email", "ann@example.com", "--purpose", "login", "--target", "/inbox").searchParams.get("token");
    const res = await postLink(token);
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "/inbox");
    const jar = res.headers.get("set-cookie").split(";")[0];
    const seen = await echoed(await get(`${gate}/inbox`, { cookie: jar }));
    assert.equal(seen.headers["x-edgegate-email"], "ann@example.com");
  });

  test("a tampered link is refused and opens no session", async () => {
    const token = magicNew("--email", "eve@example.com", "--purpose", "login").searchParams.get("token");
    const [h, p, s] = token.split(".");
    const claims = JSON.parse(Buffer.from(p, "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, email: "boss@example.com" })).toString("base64url");
    const flipped = s.slice(0, -4) + (s.endsWith("AAAA") ? "BBBB" : "AAAA");
    for (const bad of [`${h}.${forged}.${s}`, `${h}.${p}.${flipped}`]) {
      const res = await postLink(bad);
      assert.equal(res.headers.get("set-cookie"), null);
      await refused(res, 401, "bad_signature");
    }
  });
});
