// The worker bounds what it copies (431 headers_too_large, as the Envoy filter), refuses CONNECT
// (405 method_not_allowed) and answers the non-HTTP handlers cleanly — in real workerd, judged
// by what the echoing origin received.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { SignJWT } from "jose";
import { startOrigin, startWorkerd } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const ISSUER = "https://idp.bounds.test";
const SECRET_B64 = "9fga2YYsNGFumMtVdSdwl0JC0GnwFh1ehk6mJFEc3Tc";
// The core's bounds (filter/core/src/limits.rs).
const MAX_HEADERS = 200;
const MAX_HEADER_BYTES = 96 * 1024;
// Headers Node's fetch adds itself (host, connection, accept, accept-language, sec-fetch-mode,
// user-agent, accept-encoding): they count too.
const FETCH_OWN_HEADERS = 7;

const config = {
  realm: "bounds",
  jwt: {
    providers: [
      {
        name: "local",
        issuer: ISSUER,
        audiences: ["api"],
        algorithms: ["HS256"],
        shared_secrets: [{ kid: "h1", secret: SECRET_B64 }],
        claims: { roles: ["roles"] },
      },
    ],
  },
  rules: [
    { name: "public", match: { path: { prefix: "/public" } }, require: { public: true } },
    { name: "api", match: { path: { prefix: "/api" } }, credentials: ["jwt"] },
  ],
};

async function token(claims = {}) {
  const t = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: ISSUER, aud: "api", sub: "alice", iat: t, exp: t + 600, roles: ["staff"], ...claims })
    .setProtectedHeader({ alg: "HS256", kid: "h1", typ: "JWT" })
    .sign(Buffer.from(SECRET_B64, "base64url"));
}

let origin;
let wd;

before(async () => {
  origin = await startOrigin();
  for (const p of ["/public/x", "/api/x", "/"]) origin.route(p, { body: { reached: p } });
  wd = await startWorkerd({
    originPort: origin.port,
    experimental: true, // service_binding_extra_handlers (the probe's Fetcher.scheduled/queue)
    workers: [
      { name: "gate", config, origin: "binding" },
      { name: "probe", config, origin: "binding", entry: join(here, "bounds-probe.mjs"), services: { GATE: "gate" },
        // Fetcher.scheduled() / .queue() as the runtime delivers those events (not JS RPC).
        flags: ["service_binding_extra_handlers"] },
      // Workers whose tail events go to the gate (which must ignore them cleanly).
      { name: "tailed", config, origin: "binding", tails: ["gate"] },
      { name: "streamed", config, origin: "binding", streamingTails: ["gate"] },
    ],
  });
});

after(async () => {
  await wd?.stop();
  await origin?.stop();
});

const get = (url, headers = {}) =>
  fetch(url, { headers, redirect: "manual", signal: AbortSignal.timeout(10_000) });

async function refused(res, status, reason) {
  const body = await res.text();
  assert.equal(res.status, status, body);
  assert.equal(JSON.parse(body).reason, reason, body);
}

function filler(n, size) {
  const h = {};
  for (let i = 0; i < n; i++) h[`x-fill-${i}`] = "f".repeat(size);
  return h;
}

describe("header bounds", () => {
  test("more than 200 header fields: 431 headers_too_large, the origin gets nothing", async () => {
    const before = origin.hits("/public/x");
    const headers = { ...filler(MAX_HEADERS, 1), "x-edgegate-roles": "admin" };
    await refused(await get(`${wd.urls.gate}/public/x`, headers), 431, "headers_too_large");
    assert.equal(origin.hits("/public/x"), before);
  });

  test("more than 96 KiB of header bytes, credential and identity header last: 431", async () => {
    const before = origin.hits("/api/x");
    const headers = {
      ...filler(12, 8 * 1024),
      "x-edgegate-roles": "admin",
      authorization: `Bearer ${await token()}`,
    };
    await refused(await get(`${wd.urls.gate}/api/x`, headers), 431, "headers_too_large");
    assert.equal(origin.hits("/api/x"), before);
  });

  test("just under both bounds the request is served as usual", async () => {
    const before = origin.hits("/api/x");
    const n = MAX_HEADERS - FETCH_OWN_HEADERS - 2;
    const headers = { ...filler(n, 1), authorization: `Bearer ${await token()}` };
    const res = await get(`${wd.urls.gate}/api/x`, headers);
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { reached: "/api/x" });
    assert.equal(origin.hits("/api/x"), before + 1);
    const big = { ...filler(1, MAX_HEADER_BYTES - 2048), authorization: `Bearer ${await token()}` };
    assert.equal((await get(`${wd.urls.gate}/api/x`, big)).status, 200);
  });
});

/** Sends raw bytes to the worker's socket and returns everything it answers (bounded). */
function raw(url, bytes) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tcpConnect(Number(port), hostname);
    let out = "";
    const t = setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 5000);
    s.on("data", (d) => (out += d.toString("latin1")));
    s.on("end", () => {
      clearTimeout(t);
      resolve(out);
    });
    s.on("error", (e) => {
      clearTimeout(t);
      out ? resolve(out) : reject(e);
    });
    s.write(bytes);
  });
}

describe("CONNECT and non-HTTP handlers", () => {
  test("an HTTP CONNECT gets the core's 405 in the tunnel and reaches nothing", async () => {
    const before = origin.hits("/");
    const out = await raw(
      wd.urls.gate,
      `CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    // workerd answers a CONNECT with 200 itself before the handler runs (the handler only gets
    // the tunnel); the refusal is what the tunnel carries, then it is closed.
    assert.match(out, /^HTTP\/1\.1 200 /, out);
    assert.match(out, /HTTP\/1\.1 405 Method Not Allowed\r\n/, out);
    assert.match(out, /"reason":"method_not_allowed"/, out);
    assert.doesNotMatch(out, /reached/, out);
    assert.equal(origin.hits("/"), before);
    assert.doesNotMatch(wd.logs(), /does not export a connect\(\) function/);
  });

  test("a service binding's connect() gets the same 405", async () => {
    const r = await (await get(`${wd.urls.probe}/connect`)).json();
    assert.match(r.text ?? "", /^HTTP\/1\.1 405 Method Not Allowed\r\n/, JSON.stringify(r));
    assert.match(r.text, /"reason":"method_not_allowed"/);
  });

  test("scheduled() and queue() end cleanly (ok, not an exception)", async () => {
    for (const kind of ["scheduled", "queue"]) {
      const r = await (await get(`${wd.urls.probe}/${kind}`)).json();
      assert.equal(r.outcome, "ok", `${kind}: ${JSON.stringify(r)}`);
    }
    assert.match(wd.logs(), /ignoring a scheduled event/);
    assert.match(wd.logs(), /ignoring a queue event/);
  });

  test("tail() and tailStream() events are ignored without an uncaught exception", async () => {
    await get(`${wd.urls.tailed}/public/x`);
    await get(`${wd.urls.streamed}/public/x`);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !/ignoring a tail event/.test(wd.logs())) {
      await new Promise((r) => setTimeout(r, 100));
    }
    while (Date.now() < deadline && !/ignoring a tailStream event/.test(wd.logs())) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(wd.logs(), /ignoring a tail event/);
    assert.match(wd.logs(), /ignoring a tailStream event/);
    assert.doesNotMatch(wd.logs(), /does not export a (tail|tailStream)\(\)/);
  });
});
