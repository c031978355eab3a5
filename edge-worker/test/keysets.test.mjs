// Key sets as real IdPs publish them, in real workerd (issue 11): one kid on RSA, P-256 and P-521
// keys next to encryption keys, an allow-list wider than the keys, two providers sharing an issuer
// (HMAC in one, public keys in the other), a small-order Ed25519 key refused at load, and
// NumericDate bounds. Tokens are signed by npm `jose`; each accepted request is judged by what
// the origin received.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { getWithBearer, startOrigin, startWorkerd } from "./harness.mjs";

const MIXED = "https://mixed.keysets.test";
const SHARED = "https://shared.keysets.test";
const now = () => Math.floor(Date.now() / 1000);
const keys = {
  RS256: await generateKeyPair("RS256", { modulusLength: 2048 }),
  ES256: await generateKeyPair("ES256"),
  ES512: await generateKeyPair("ES512"),
};
const other256 = await generateKeyPair("ES256");
const encKey = await generateKeyPair("RSA-OAEP-256", { modulusLength: 2048 });
const ecdhKey = await generateKeyPair("ECDH-ES", { crv: "P-256" });
const hmacSecret = crypto.getRandomValues(new Uint8Array(32));

async function jwt(alg, key, claims = {}, header = {}) {
  const t = now();
  return new SignJWT({ iss: MIXED, aud: "api", sub: "alice", iat: t, exp: t + 600, ...claims })
    .setProtectedHeader({ alg, kid: "k", ...header })
    .sign(key);
}

async function mixedJwks() {
  const pub = async (k, extra) => ({ ...(await exportJWK(k.publicKey)), kid: "k", ...extra });
  return {
    keys: [
      await pub(keys.RS256, { alg: "RS256", use: "sig" }),
      await pub(keys.ES256, {}), // no alg: fits ES256 by its curve
      await pub(keys.ES512, {}),
      await pub(encKey, { alg: "RSA-OAEP-256", use: "enc" }),
      await pub(ecdhKey, { alg: "ECDH-ES" }),
    ],
  };
}

async function config() {
  return {
    realm: "keysets",
    jwt: {
      providers: [
        // EdDSA is allowed but no key fits it: a warning at load, not an error
        { name: "mixed", issuer: MIXED, audiences: ["api"], algorithms: ["RS256", "ES256", "ES512", "EdDSA"], jwks: await mixedJwks() },
        { name: "shared-hmac", issuer: SHARED, audiences: ["api"], algorithms: ["HS256"],
          shared_secrets: [{ kid: "h", secret: Buffer.from(hmacSecret).toString("base64url") }] },
        { name: "shared-public", issuer: SHARED, audiences: ["api"], algorithms: ["ES512"],
          jwks: { keys: [{ ...(await exportJWK(keys.ES512.publicKey)), kid: "p" }] } },
      ],
    },
    rules: [{ name: "api", match: { path: { prefix: "/" } }, credentials: ["jwt"] }],
  };
}

let origin;
let wd;
before(async () => {
  origin = await startOrigin();
  const cfg = await config();
  const smallOrder = structuredClone(cfg);
  // the identity point (y = 1): an Ed25519 "public key" of small order
  const identity = Buffer.alloc(32);
  identity[0] = 1;
  smallOrder.jwt.providers[0].algorithms = ["EdDSA"];
  smallOrder.jwt.providers[0].jwks = { keys: [{ kty: "OKP", crv: "Ed25519", kid: "o", x: identity.toString("base64url") }] };
  wd = await startWorkerd({
    originPort: origin.port,
    workers: [
      { name: "wc", config: cfg, origin: "binding" },
      { name: "wasm", config: cfg, origin: "binding", vars: { EDGEGATE_CRYPTO: "wasm" } },
      { name: "small", config: smallOrder, origin: "binding" },
    ],
  });
});
after(async () => {
  await wd?.stop();
  await origin?.stop();
});

const call = (w, token) => getWithBearer(`${wd.urls[w]}/api/x`, token);

for (const w of ["wc", "wasm"]) {
  describe(`${w === "wc" ? "WebCrypto" : "wasm"} backend`, () => {
    test("one kid on RSA, P-256 and P-521 keys: each token finds the key that fits its alg", async () => {
      for (const alg of ["RS256", "ES256", "ES512"]) {
        const r = await call(w, await jwt(alg, keys[alg].privateKey, { sub: `user-${alg}` }));
        assert.equal(r.status, 200, `${alg}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.headers["x-edgegate-subject"], `user-${alg}`);
        assert.equal(r.body.headers["x-edgegate-key-name"], "k");
        assert.equal(r.body.headers["x-edgegate-provider"], "mixed");
      }
      // same kid, another P-256 key: refused
      const r = await call(w, await jwt("ES256", other256.privateKey));
      assert.equal(r.status, 401);
      assert.equal(r.body.reason, "bad_signature");
    });

    test("an allowed alg with no key under the kid is a mismatch, never another key", async () => {
      const { privateKey } = await generateKeyPair("EdDSA");
      const r = await call(w, await jwt("EdDSA", privateKey));
      assert.equal(r.status, 401);
      assert.equal(r.body.reason, "alg_key_mismatch");
    });

    test("two providers share an issuer: HS256 goes to one, ES512 to the other", async () => {
      const hs = await jwt("HS256", hmacSecret, { iss: SHARED, sub: "svc" }, { kid: "h" });
      let r = await call(w, hs);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.headers["x-edgegate-provider"], "shared-hmac");
      const es = await jwt("ES512", keys.ES512.privateKey, { iss: SHARED, sub: "user" }, { kid: "p" });
      r = await call(w, es);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.headers["x-edgegate-provider"], "shared-public");
      const rs = await jwt("RS256", keys.RS256.privateKey, { iss: SHARED }, { kid: "p" });
      r = await call(w, rs);
      assert.equal(r.status, 401);
      assert.equal(r.body.reason, "alg_not_allowed");
    });

    test("exp beyond 2^53 is malformed; a fractional exp counts its fraction", async () => {
      let r = await call(w, await jwt("ES256", keys.ES256.privateKey, { exp: 2 ** 53 + 2 }));
      assert.equal(r.status, 401);
      assert.equal(r.body.reason, "malformed_claims");
      // nbf half a second past now plus the 60 s leeway: not valid yet (truncated to now + 60,
      // it would be valid). The host's clock has whole seconds: start early in a second so
      // minting and checking fall in the same one.
      while (Date.now() % 1000 > 300) await new Promise((res) => setTimeout(res, 50));
      r = await call(w, await jwt("ES256", keys.ES256.privateKey, { nbf: now() + 60.5 }));
      assert.equal(r.status, 401);
      assert.equal(r.body.reason, "token_not_yet_valid");
    });
  });
}

test("the allow-list wider than the keys is logged as a warning, not refused", () => {
  assert.match(wd.logs(), /EdDSA is allowed but no configured key can verify it/);
});

test("a small-order Ed25519 key is refused at load: every request fails closed", async () => {
  const r = await call("small", "x.y.z");
  assert.ok(r.status >= 500, `${r.status} ${JSON.stringify(r.body)}`);
  assert.match(wd.logs(), /small order/);
});
