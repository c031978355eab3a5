// The worker's signature checks on WebCrypto (the core's NeedSignature step, src/webcrypto.rs), in
// real workerd. Tokens are signed by npm `jose`; a probe entry module (webcrypto-probe.mjs)
// counts crypto.subtle.verify calls, so each test proves which path verified the signature.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { SignJWT, exportJWK, generateKeyPair, base64url } from "jose";
import { getWithBearer, startOrigin, startWorkerd } from "./harness.mjs";

const ISSUER = "https://idp.webcrypto.test";
const HS_ISSUER = "https://hmac.webcrypto.test";
// ES512: ECDSA on P-521 (WebCrypto namedCurve "P-521", SHA-512).
const ALGS = ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"];
const WEBCRYPTO_NAME = {
  RS256: "RSASSA-PKCS1-v1_5", PS256: "RSA-PSS", ES256: "ECDSA", ES384: "ECDSA", ES512: "ECDSA", EdDSA: "Ed25519",
};
const keys = {};
for (const alg of ALGS) keys[alg] = await generateKeyPair(alg, { modulusLength: 2048 });
const hmacSecret = crypto.getRandomValues(new Uint8Array(32));
const now = () => Math.floor(Date.now() / 1000);

async function jwt(alg, claims = {}, { key = keys[alg]?.privateKey ?? hmacSecret, iss = ISSUER } = {}) {
  const t = now();
  return new SignJWT({ iss, aud: "api", sub: "alice", iat: t, exp: t + 600, roles: ["staff"], ...claims })
    .setProtectedHeader({ alg, kid: `k-${alg}`, typ: "JWT" })
    .sign(key);
}

/** The same token with another payload (`sub: mallory`) and the original signature. */
function swapPayload(token) {
  const [h, p, s] = token.split(".");
  const claims = JSON.parse(Buffer.from(p, "base64url"));
  claims.sub = "mallory";
  return `${h}.${base64url.encode(JSON.stringify(claims))}.${s}`;
}
/** The same token with one bit of its signature flipped. */
function flipSignature(token) {
  const [h, p, s] = token.split(".");
  const sig = Buffer.from(s, "base64url");
  sig[sig.length >> 1] ^= 0x01;
  return `${h}.${p}.${sig.toString("base64url")}`;
}
/** An ECDSA JWS signature (raw r||s) re-encoded as DER, as some signers wrongly send it. */
function derSignature(token) {
  const [h, p, s] = token.split(".");
  const raw = Buffer.from(s, "base64url");
  const int = (b) => {
    while (b.length > 1 && b[0] === 0 && !(b[1] & 0x80)) b = b.subarray(1);
    return b[0] & 0x80 ? Buffer.concat([Buffer.from([2, b.length + 1, 0]), b]) : Buffer.concat([Buffer.from([2, b.length]), b]);
  };
  const body = Buffer.concat([int(raw.subarray(0, raw.length / 2)), int(raw.subarray(raw.length / 2))]);
  const len = body.length > 127 ? [0x81, body.length] : [body.length];
  return `${h}.${p}.${Buffer.concat([Buffer.from([0x30, ...len]), body]).toString("base64url")}`;
}

async function config() {
  return {
    realm: "webcrypto",
    jwt: {
      providers: [
        {
          name: "pk",
          issuer: ISSUER,
          audiences: ["api"],
          algorithms: ALGS,
          jwks: {
            keys: await Promise.all(
              ALGS.map(async (alg) => ({ ...(await exportJWK(keys[alg].publicKey)), kid: `k-${alg}`, alg, use: "sig" })),
            ),
          },
          claims: { roles: ["roles"] },
        },
        {
          name: "hmac",
          issuer: HS_ISSUER,
          audiences: ["api"],
          algorithms: ["HS256"],
          shared_secrets: [{ kid: "k-HS256", secret: Buffer.from(hmacSecret).toString("base64url") }],
          claims: { roles: ["roles"] },
        },
      ],
    },
    rules: [{ name: "api", match: { path: { prefix: "/" } }, credentials: ["jwt"], require: { roles_any: ["staff"] } }],
  };
}

let origin;
let wd;
const probe = join(import.meta.dirname, "webcrypto-probe.mjs");

before(async () => {
  origin = await startOrigin();
  const cfg = await config();
  wd = await startWorkerd({
    originPort: origin.port,
    workers: [
      { name: "wc", config: cfg, origin: "binding", entry: probe },
      { name: "wcnamed", config: cfg, origin: "binding", entry: probe, vars: { EDGEGATE_CRYPTO: "webcrypto" } },
      { name: "wasm", config: cfg, origin: "binding", entry: probe, vars: { EDGEGATE_CRYPTO: "wasm" } },
      { name: "typo", config: cfg, origin: "binding", vars: { EDGEGATE_CRYPTO: "subtle" } },
      { name: "once", config: cfg, origin: "binding", entry: probe },
      { name: "oncewasm", config: cfg, origin: "binding", entry: probe, vars: { EDGEGATE_CRYPTO: "wasm" } },
    ],
  });
});
after(async () => {
  await wd?.stop();
  await origin?.stop();
});

const counters = async (w) => (await fetch(`${wd.urls[w]}/__webcrypto`)).json();
const call = (w, token) => getWithBearer(`${wd.urls[w]}/api/x`, token);
/** Runs `f` and returns what it did to the worker's WebCrypto counters. */
async function delta(w, f) {
  const a = await counters(w);
  const out = await f();
  const b = await counters(w);
  return {
    out,
    verify: b.verify - a.verify,
    valid: b.valid - a.valid,
    invalid: b.invalid - a.invalid,
    algs: b.algs.slice(a.algs.length),
    importKey: b.importKey - a.importKey,
    decisions: b.decisions - a.decisions,
  };
}

describe("one decision per request", () => {
  // The core's decision machine starts once per request on every path the worker takes: the
  // synchronous fast path, a pause handed to the async path (a key not imported yet), a
  // WebCrypto round trip, the token cache, an HMAC token, a refusal.
  for (const w of ["once", "oncewasm"]) {
    test(`${w}: every request starts exactly one decision`, async () => {
      const es = await jwt("ES256");
      const cases = [
        ["first ES256 token: key imported on the async path", es, 200],
        ["same token: from the cache", es, 200],
        ["another ES256 token: fast path with the imported key", await jwt("ES256", { jti: "2" }), 200],
        ["a flipped signature", flipSignature(await jwt("ES256", { jti: "3" })), 401],
        ["an HMAC token", await jwt("HS256", {}, { iss: HS_ISSUER }), 200],
        ["RS256", await jwt("RS256"), 200],
        ["no credential", null, 401],
      ];
      for (const [what, token, status] of cases) {
        const d = await delta(w, async () => {
          const r = await fetch(`${wd.urls[w]}/api/x`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
          await r.arrayBuffer();
          return r.status;
        });
        assert.equal(d.out, status, what);
        assert.equal(d.decisions, 1, `${what}: ${d.decisions} decisions`);
      }
    });
  }
});

describe("WebCrypto path (default)", () => {
  for (const alg of ALGS) {
    test(`${alg}: a jose token verifies through crypto.subtle once, then comes from the cache`, async () => {
      const token = await jwt(alg);
      const first = await delta("wc", () => call("wc", token));
      assert.equal(first.out.status, 200, JSON.stringify(first.out.body));
      assert.equal(first.out.body.headers["x-edgegate-subject"], "alice");
      assert.equal(first.out.body.headers["x-edgegate-key-name"], `k-${alg}`);
      assert.deepEqual([first.verify, first.valid, first.algs], [1, 1, [WEBCRYPTO_NAME[alg]]]);
      const again = await delta("wc", () => call("wc", token));
      assert.equal(again.out.status, 200);
      assert.equal(again.verify, 0, "a cached token is not verified again");
    });

    test(`${alg}: a changed payload and a changed signature are refused by WebCrypto's answer`, async () => {
      const token = await jwt(alg);
      for (const [what, bad] of [["payload", swapPayload(token)], ["signature", flipSignature(token)]]) {
        const d = await delta("wc", () => call("wc", bad));
        assert.equal(d.out.status, 401, `${what}: ${JSON.stringify(d.out.body)}`);
        assert.equal(d.out.body.reason, "bad_signature", what);
        assert.match(d.out.www, /invalid_token/, what);
        assert.deepEqual([d.verify, d.invalid], [1, 1], `${what}: WebCrypto said no`);
        // refused again: a refusal is never cached as a success
        assert.equal((await call("wc", bad)).status, 401, what);
      }
    });
  }

  test("each key is imported into WebCrypto once per isolate, not per request", async () => {
    // every algorithm has been used above; new tokens under the same keys import nothing
    for (const alg of ALGS) {
      const d = await delta("wc", async () => {
        for (let i = 0; i < 3; i++) assert.equal((await call("wc", await jwt(alg, { n: i }))).status, 200);
      });
      assert.deepEqual([d.verify, d.importKey], [3, 0], alg);
    }
  });

  test("the identity reaches the origin only for the verified token", async () => {
    const token = await jwt("ES384", { sub: "carol" });
    const ok = await call("wc", token);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.headers["x-edgegate-subject"], "carol");
    const bad = await call("wc", swapPayload(token));
    assert.equal(bad.status, 401);
  });

  test("malformed ECDSA signatures (DER, truncated) are refused by the core before WebCrypto", async () => {
    for (const alg of ["ES256", "ES384", "ES512"]) {
      const token = await jwt(alg);
      const truncated = token.slice(0, -8);
      for (const bad of [derSignature(token), truncated]) {
        const d = await delta("wc", () => call("wc", bad));
        assert.equal(d.out.status, 401);
        assert.ok(["bad_signature_format", "bad_base64"].includes(d.out.body.reason), d.out.body.reason);
        assert.equal(d.verify, 0, `${alg}: never handed to WebCrypto`);
      }
    }
  });

  test("HS256 stays in the core (the secret never goes to WebCrypto)", async () => {
    const token = await jwt("HS256", {}, { iss: HS_ISSUER });
    const d = await delta("wc", () => call("wc", token));
    assert.equal(d.out.status, 200);
    assert.equal(d.verify, 0);
    const forged = await jwt("HS256", {}, { iss: HS_ISSUER, key: crypto.getRandomValues(new Uint8Array(32)) });
    assert.equal((await call("wc", forged)).status, 401);
  });

  test("algorithm confusion: an RS256 header on the ES256 key is refused before any check", async () => {
    const token = await new SignJWT({ iss: ISSUER, aud: "api", sub: "a", exp: now() + 60, roles: ["staff"] })
      .setProtectedHeader({ alg: "RS256", kid: "k-ES256" })
      .sign(keys.RS256.privateKey);
    const d = await delta("wc", () => call("wc", token));
    assert.equal(d.out.status, 401);
    assert.equal(d.verify, 0);
  });

  test("EDGEGATE_CRYPTO=webcrypto is the same path", async () => {
    const token = await jwt("PS256");
    const e = await delta("wcnamed", () => call("wcnamed", token));
    assert.equal(e.out.status, 200);
    assert.equal(e.verify, 1);
  });
});

describe("EDGEGATE_CRYPTO=wasm (the core's pure-Rust backends)", () => {
  for (const alg of ALGS) {
    test(`${alg}: verifies and refuses without WebCrypto`, async () => {
      const token = await jwt(alg);
      const ok = await delta("wasm", () => call("wasm", token));
      assert.equal(ok.out.status, 200, JSON.stringify(ok.out.body));
      const bad = await delta("wasm", () => call("wasm", swapPayload(token)));
      assert.equal(bad.out.status, 401);
      assert.equal(bad.out.body.reason, "bad_signature");
      assert.equal(ok.verify + bad.verify, 0);
    });
  }
});

test("a misspelt EDGEGATE_CRYPTO refuses every request and says why", async () => {
  const r = await call("typo", await jwt("RS256"));
  assert.equal(r.status, 500);
  assert.match(wd.logs(), /EDGEGATE_CRYPTO: "subtle" is not a signature backend/);
});
