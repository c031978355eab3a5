// End-to-end tests of the edge worker in real workerd, in front of an echoing origin.
// Tokens are minted with npm `jose` and API keys by a JS reimplementation of the documented
// format, independently of edgegate's Rust code.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { ADMIN_BEHIND_LOGIN, SESSION_SECRET_B64, assertIdentity, startOrigin, startWorkerd } from "./harness.mjs";
import { mintApiKey } from "./apikeys.mjs";

const ISSUER = "https://idp.test";
const MAGIC_SECRET_B64 = "N6DNzRHwFWHzTbEbCwlpezlWIlf8Kvn1o1oZe_GowmY";

const sha256hex = (s) => createHash("sha256").update(s).digest("hex");

// --- keys and tokens ---
const rs = await generateKeyPair("RS256", { modulusLength: 2048 });
const es = await generateKeyPair("ES256");
const stranger = await generateKeyPair("RS256", { modulusLength: 2048 });
const remoteKey = await generateKeyPair("RS256", { modulusLength: 2048 });
const rotatedKey = await generateKeyPair("ES256");
const jwk = async (pair, kid, alg) => ({ ...(await exportJWK(pair.publicKey)), kid, alg, use: "sig" });
const now = () => Math.floor(Date.now() / 1000);

async function jwt(claims = {}, { key = rs.privateKey, alg = "RS256", kid = "rs1" } = {}) {
  const t = now();
  const payload = { iss: ISSUER, aud: "api", sub: "alice", iat: t, exp: t + 600 };
  Object.assign(payload, { roles: ["staff"], email: "alice@example.com" }, claims);
  return new SignJWT(payload).setProtectedHeader({ alg, kid, typ: "JWT" }).sign(key);
}

const apiKey = mintApiKey();

async function config(originPort) {
  const base = `http://127.0.0.1:${originPort}`;
  return {
    realm: "test",
    jwt: {
      providers: [
        {
          name: "local",
          issuer: ISSUER,
          audiences: ["api"],
          algorithms: ["RS256", "ES256"],
          jwks: {
            keys: [
              { ...(await exportJWK(rs.publicKey)), kid: "rs1", alg: "RS256", use: "sig" },
              { ...(await exportJWK(es.publicKey)), kid: "es1", alg: "ES256", use: "sig" },
            ],
          },
          claims: { roles: ["roles"] },
        },
        {
          name: "remote",
          issuer: "https://remote.test",
          algorithms: ["RS256", "ES256"],
          remote_jwks: { jwks_uri: `${base}/keys/remote`, unknown_kid_min_interval_seconds: 1 },
          claims: { roles: ["roles"] },
        },
        {
          name: "disco",
          issuer: `${base}/disco`,
          algorithms: ["RS256"],
          remote_jwks: { oidc_issuer: `${base}/disco` },
          claims: { roles: ["roles"] },
        },
        {
          name: "down",
          issuer: "https://down.test",
          algorithms: ["RS256"],
          remote_jwks: { jwks_uri: `${base}/keys/down`, wait_for_keys_ms: 300 },
        },
      ],
    },
    api_keys: {
      keys: [{ name: "ci", hash: `sha256:${sha256hex(apiKey)}`, roles: ["staff"] }],
    },
    session: { keys: [{ kid: "s1", secret: SESSION_SECRET_B64 }], lifetime_seconds: 3600 },
    magic_links: { keys: [{ kid: "m1", secret: MAGIC_SECRET_B64 }] },
    redirects: { allowed_hosts: ["desk.example.com"] },
    rules: [
      { name: "health", match: { path: { exact: "/healthz" } }, require: { public: true } },
      ADMIN_BEHIND_LOGIN,
      {
        name: "tickets",
        match: { path: { glob: "/tickets/*/**" } },
        credentials: ["magic_link", "session", "jwt"],
      },
      {
        name: "api",
        match: { path: { prefix: "/api" } },
        credentials: ["jwt", "api_key"],
        require: { roles_any: ["staff"] },
      },
    ],
    default_rule: { login_url: "/auth/login" },
  };
}

let origin;
let wd;
let gate;

before(async () => {
  origin = await startOrigin();
  const base = `http://127.0.0.1:${origin.port}`;
  origin.route("/keys/remote", {
    headers: { "cache-control": "max-age=600" },
    body: { keys: [await jwk(remoteKey, "r1", "RS256")] },
  });
  origin.route("/disco/.well-known/openid-configuration", {
    body: { issuer: `${base}/disco`, jwks_uri: `${base}/disco/jwks` },
  });
  origin.route("/disco/jwks", { body: { keys: [await jwk(remoteKey, "d1", "RS256")] } });
  origin.route("/keys/down", { status: 500, body: { error: "down" } });
  const good = await config(origin.port);
  const broken = structuredClone(good);
  broken.rules[1].match.path.prefix = "admin"; // no leading '/': refused at load
  broken.magic_links.keys[0].secret = "c2hvcnQ"; // 5 bytes: too short, refused at load
  const forwarding = structuredClone(good);
  forwarding.jwt.providers[0].forward = true; // "local" tokens go upstream unchanged
  forwarding.api_keys.forward = true;
  const unknown = structuredClone(good);
  unknown.session.lifetime_secs = 5; // a typo: unknown fields are errors
  wd = await startWorkerd({
    originPort: origin.port,
    workers: [
      { name: "gate", config: good, origin: "binding", usedLinks: "own" },
      { name: "gateurl", config: good, origin: "url", usedLinks: "gate" },
      { name: "nodo", config: good, origin: "binding" },
      { name: "fwd", config: forwarding, origin: "binding" },
      { name: "broken", config: broken, origin: "binding" },
      { name: "unknown", config: unknown, origin: "binding" },
      { name: "garbage", config: "{not json", origin: "binding" },
    ],
  });
  gate = wd.urls.gate;
});

after(async () => {
  await wd?.stop();
  await origin?.stop();
});

const get = (url, headers = {}, init = {}) =>
  fetch(url, { headers, redirect: "manual", signal: AbortSignal.timeout(10_000), ...init });

async function echoed(res) {
  assert.equal(res.status, 200, `expected the origin's 200, got ${res.status}: ${await res.clone().text()}`);
  assert.equal(res.headers.get("x-origin"), "echo");
  return res.json();
}

describe("JWT", () => {
  test("a valid RS256 token reaches the origin with identity headers", async () => {
    const res = await get(`${gate}/api/items?x=1`, { authorization: `Bearer ${await jwt()}` });
    const seen = await echoed(res);
    assert.equal(seen.url, "/api/items?x=1");
    assert.equal(seen.headers["x-edgegate-subject"], "alice");
    assertIdentity(seen, { email: "alice@example.com", roles: "staff", credential: "jwt", provider: "local" });
    assert.match(seen.headers["x-edgegate-expires"], /^\d+$/);
    // the token edgegate checked stays at the edge (forward: false, the default)
    assert.equal(seen.headers.authorization, undefined);
  });

  test("a valid ES256 token is accepted too", async () => {
    const token = await jwt({}, { key: es.privateKey, alg: "ES256", kid: "es1" });
    const seen = await echoed(await get(`${gate}/api/es`, { authorization: `Bearer ${token}` }));
    assert.equal(seen.headers["x-edgegate-subject"], "alice");
  });

  test("the same token twice (second from the isolate's token cache) is still allowed", async () => {
    const token = await jwt({ sub: "cached" });
    for (let i = 0; i < 2; i++) {
      const seen = await echoed(await get(`${gate}/api/c`, { authorization: `Bearer ${token}` }));
      assert.equal(seen.headers["x-edgegate-subject"], "cached");
    }
  });

  async function refused(token, reason, error = "invalid_token") {
    const res = await get(`${gate}/api/items`, { authorization: `Bearer ${token}` });
    assert.equal(res.status, 401);
    const www = res.headers.get("www-authenticate");
    assert.match(www, /^Bearer realm="test"/);
    assert.ok(www.includes(`error="${error}"`), www);
    assert.equal(res.headers.get("x-origin"), null, "a refused request must not reach the origin");
    const body = await res.json();
    assert.equal(body.reason, reason);
  }

  test("a token signed by another key is refused (401, WWW-Authenticate)", async () => {
    await refused(await jwt({}, { key: stranger.privateKey }), "bad_signature");
  });

  test("an expired token is refused", async () => {
    const token = await new SignJWT({ roles: ["staff"] })
      .setProtectedHeader({ alg: "RS256", kid: "rs1" })
      .setIssuer(ISSUER)
      .setAudience("api")
      .setSubject("alice")
      .setIssuedAt(now() - 7200)
      .setExpirationTime(now() - 3600)
      .sign(rs.privateKey);
    await refused(token, "token_expired");
  });

  test("a token for another audience is refused", async () => {
    await refused(await jwt({ aud: "other" }), "wrong_audience");
  });

  test("a token from an unknown issuer is refused", async () => {
    await refused(await jwt({ iss: "https://evil.test" }), "unknown_issuer");
  });

  test("alg none is refused", async () => {
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const token = `${b64({ alg: "none" })}.${b64({ iss: ISSUER, sub: "alice", exp: now() + 60 })}.`;
    const res = await get(`${gate}/api/items`, { authorization: `Bearer ${token}` });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("x-origin"), null);
  });

  test("no credential on an API route: 401 credential_missing", async () => {
    const res = await get(`${gate}/api/items`);
    assert.equal(res.status, 401);
    assert.match(res.headers.get("www-authenticate"), /^Bearer realm="test"/);
    assert.equal((await res.json()).reason, "credential_missing");
  });

  test("a valid token without the rule's role: 403 insufficient_scope", async () => {
    const res = await get(`${gate}/admin/users`, { authorization: `Bearer ${await jwt()}` });
    assert.equal(res.status, 403);
    assert.ok(res.headers.get("www-authenticate").includes('error="insufficient_scope"'));
    assert.equal((await res.json()).reason, "missing_role");
    assert.equal(res.headers.get("x-origin"), null);
  });

  test("with the role, the admin route is allowed", async () => {
    const token = await jwt({ roles: ["admin", "staff"] });
    const seen = await echoed(await get(`${gate}/admin/users`, { authorization: `Bearer ${token}` }));
    assert.equal(seen.headers["x-edgegate-roles"], "admin,staff");
  });
});

describe("remote key sets", () => {
  const token = (iss, kid, key = remoteKey.privateKey, alg = "RS256") =>
    jwt({ iss, aud: undefined }, { key, kid, alg });

  test("a JWKS URL is fetched on first need and its keys verify tokens", async () => {
    const seen = await echoed(
      await get(`${gate}/api/r`, { authorization: `Bearer ${await token("https://remote.test", "r1")}` }),
    );
    assert.equal(seen.headers["x-edgegate-provider"], "remote");
    // cached in the isolate: a second token does not refetch (max-age=600)
    const before = origin.hits("/keys/remote");
    await echoed(await get(`${gate}/api/r`, { authorization: `Bearer ${await token("https://remote.test", "r1")}` }));
    assert.equal(origin.hits("/keys/remote"), before);
  });

  test("OIDC discovery leads to the JWKS", async () => {
    const iss = `http://127.0.0.1:${origin.port}/disco`;
    const seen = await echoed(await get(`${gate}/api/d`, { authorization: `Bearer ${await token(iss, "d1")}` }));
    assert.equal(seen.headers["x-edgegate-provider"], "disco");
    assert.ok(origin.hits("/disco/.well-known/openid-configuration") >= 1);
  });

  test("a new kid triggers an early refetch (key rotation)", async () => {
    // make sure this isolate has loaded the old set, then rotate at the IdP
    await echoed(await get(`${gate}/api/r`, { authorization: `Bearer ${await token("https://remote.test", "r1")}` }));
    origin.route("/keys/remote", {
      headers: { "cache-control": "max-age=600" },
      body: { keys: [await jwk(remoteKey, "r1", "RS256"), await jwk(rotatedKey, "r2", "ES256")] },
    });
    await new Promise((r) => setTimeout(r, 1100)); // unknown_kid_min_interval_seconds: 1
    const fresh = await token("https://remote.test", "r2", rotatedKey.privateKey, "ES256");
    const seen = await echoed(await get(`${gate}/api/r`, { authorization: `Bearer ${fresh}` }));
    assert.equal(seen.headers["x-edgegate-key-name"], "r2");
  });

  test("an unknown kid that the IdP does not have either is refused", async () => {
    const res = await get(`${gate}/api/r`, {
      authorization: `Bearer ${await token("https://remote.test", "nope", stranger.privateKey)}`,
    });
    assert.equal(res.status, 401);
    assert.equal((await res.json()).reason, "unknown_kid");
  });

  test("an IdP whose keys cannot be fetched: 503 keys_unavailable (fail closed)", async () => {
    const res = await get(`${gate}/api/x`, { authorization: `Bearer ${await token("https://down.test", "x")}` });
    assert.equal(res.status, 503);
    assert.equal((await res.json()).reason, "keys_unavailable");
    assert.ok(origin.hits("/keys/down") >= 1);
    assert.match(wd.logs(), /keys\/down/);
  });
});

describe("consumed credentials", () => {
  test("the checked credential and edgegate's cookies stay at the edge; other cookies pass in order", async () => {
    const cookie = "theme=dark; edgegate_session_refresh=r; edgegate_login_abc=l; lang=en";
    const seen = await echoed(await get(`${gate}/api/c`, { authorization: `Bearer ${apiKey}`, cookie }));
    assert.equal(seen.headers["x-edgegate-credential"], "api_key");
    assert.equal(seen.headers.authorization, undefined);
    assert.equal(seen.headers.cookie, "theme=dark; lang=en");
    const only = await echoed(await get(`${gate}/healthz`, { cookie: "edgegate_session=s" }));
    assert.equal(only.headers.cookie, undefined);
  });

  test("forward: true sends the provider's token (and api_keys' key) upstream, never our cookies", async () => {
    const token = await jwt();
    const seen = await echoed(
      await get(`${wd.urls.fwd}/api/f`, { authorization: `Bearer ${token}`, cookie: "edgegate_session_refresh=r; a=1" }),
    );
    assert.equal(seen.headers["x-edgegate-subject"], "alice");
    assert.equal(seen.headers.authorization, `Bearer ${token}`);
    assert.equal(seen.headers.cookie, "a=1");
    const key = await echoed(await get(`${wd.urls.fwd}/api/f`, { authorization: `Bearer ${apiKey}` }));
    assert.equal(key.headers.authorization, `Bearer ${apiKey}`);
    // forward is per provider: "remote" tokens still stay at the edge
    const remote = await echoed(
      await get(`${wd.urls.fwd}/api/r`, { authorization: `Bearer ${await jwt({ iss: "https://remote.test", aud: undefined }, { key: remoteKey.privateKey, kid: "r1" })}` }),
    );
    assert.equal(remote.headers.authorization, undefined);
  });
});

describe("API keys", () => {
  test("a configured key is allowed with its name and roles", async () => {
    const seen = await echoed(await get(`${gate}/api/k`, { authorization: `Bearer ${apiKey}` }));
    assertIdentity(seen, { credential: "api_key", "key-name": "ci", roles: "staff" });
  });

  test("a well-formed but unknown key is refused", async () => {
    const res = await get(`${gate}/api/k`, { authorization: `Bearer ${mintApiKey()}` });
    assert.equal(res.status, 401);
    assert.equal((await res.json()).reason, "api_key_unknown");
  });

  test("a key with a typo fails its checksum", async () => {
    const last = apiKey.at(-1) === "A" ? "B" : "A";
    const res = await get(`${gate}/api/k`, { authorization: `Bearer ${apiKey.slice(0, -1)}${last}` });
    assert.equal(res.status, 401);
    assert.equal((await res.json()).reason, "api_key_checksum");
  });
});

describe("identity headers", () => {
  const spoof = {
    "x-edgegate-subject": "root",
    "x-edgegate-roles": "admin",
    "x-edgegate-email": "root@example.com",
    "x-edgegate-credential": "jwt",
    "x-edgegate-key-name": "prod",
  };

  test("client-sent copies are stripped on a public route", async () => {
    const seen = await echoed(await get(`${gate}/healthz`, spoof));
    for (const h of Object.keys(spoof)) assert.equal(seen.headers[h], undefined, h);
  });

  test("copies in any spelling (`_` for `-`, any case) are stripped too", async () => {
    const spellings = { x_edgegate_roles: "admin", X_EDGEGATE_SUBJECT: "root", "x-edgegate_credential": "api_key" };
    const seen = await echoed(await get(`${gate}/api/u`, { ...spellings, authorization: `Bearer ${await jwt()}` }));
    const ours = Object.keys(seen.headers).filter((h) => h.replaceAll("_", "-").startsWith("x-edgegate-"));
    assert.ok(ours.every((h) => !h.includes("_")), ours.join());
    assert.equal(seen.headers["x-edgegate-roles"], "staff");
    assert.equal(seen.headers["x-edgegate-subject"], "alice");
  });

  test("client-sent copies are replaced by the core's on an authenticated route", async () => {
    const seen = await echoed(
      await get(`${gate}/api/s`, { ...spoof, authorization: `Bearer ${await jwt()}` }),
    );
    assertIdentity(seen, { subject: "alice", roles: "staff", email: "alice@example.com" });
    // for a JWT the core reports the signing key's kid here, never the client's value
    assertIdentity(seen, { "key-name": "rs1", credential: "jwt" });
  });
});

describe("browsers", () => {
  test("a browser without a credential is redirected to login_url with rd", async () => {
    const res = await get(`${gate}/admin/panel?tab=2`, { accept: "text/html,application/xhtml+xml" });
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "/auth/login?rd=%2Fadmin%2Fpanel%3Ftab%3D2");
    assert.equal(res.headers.get("x-origin"), null);
  });

  test("an API client on the same route gets a 401", async () => {
    const res = await get(`${gate}/admin/panel`, { accept: "application/json" });
    assert.equal(res.status, 401);
  });
});

describe("requests", () => {
  test("a POST body and method reach the origin", async () => {
    const res = await get(`${gate}/api/post`, { authorization: `Bearer ${await jwt()}`, "content-type": "text/plain" }, {
      method: "POST",
      body: "hello origin",
    });
    const seen = await echoed(res);
    assert.equal(seen.method, "POST");
    assert.equal(seen.body, "hello origin");
  });

  test("path tricks are refused with 400", async () => {
    const res = await get(`${gate}/api%2F..%2Fadmin`, { authorization: `Bearer ${await jwt()}` });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).reason, "malformed_path");
  });

  test("the origin's redirects are passed through, not followed", async () => {
    // the echo origin never redirects; a 200 from it proves the binding path. This checks the
    // ORIGIN_URL variant: the global fetch through the `network` outbound to 127.0.0.1.
    const seen = await echoed(await get(`${wd.urls.gateurl}/api/u?y=2`, { authorization: `Bearer ${await jwt()}` }));
    assert.equal(seen.url, "/api/u?y=2");
    assert.equal(seen.headers["x-edgegate-subject"], "alice");
  });
});

describe("config", () => {
  test("a refused config fails closed: 500 on every route, the log names each field", async () => {
    for (const path of ["/healthz", "/api/x", "/"]) {
      const res = await get(`${wd.urls.broken}${path}`, { authorization: `Bearer ${await jwt()}` });
      assert.equal(res.status, 500);
      assert.equal((await res.json()).reason, "invalid_config");
      assert.equal(res.headers.get("x-origin"), null);
    }
    // every problem at once, each with its field path
    const logs = wd.logs();
    assert.match(logs, /rules\[1\]\.match\.path/);
    assert.match(logs, /magic_links\.keys\[0\]/);
    assert.ok(!logs.includes("c2hvcnQ"), "a secret must never be logged");
  });

  test("an unknown field fails closed with its path in the log", async () => {
    const res = await get(`${wd.urls.unknown}/healthz`);
    assert.equal(res.status, 500);
    assert.equal(res.headers.get("x-origin"), null);
    assert.match(wd.logs(), /session\.lifetime_secs/);
  });

  test("a config that is not JSON fails closed too", async () => {
    const res = await get(`${wd.urls.garbage}/healthz`);
    assert.equal(res.status, 500);
  });
});

describe("magic links", () => {
  const secret = Buffer.from(MAGIC_SECRET_B64, "base64url");
  const link = (claims = {}) =>
    new SignJWT({ email: "guest@example.com", purpose: "guest", scope: "/tickets/TRK-1", ...claims })
      .setProtectedHeader({ alg: "HS256", kid: "m1", typ: "JWT" })
      .setIssuer("edgegate")
      .setAudience("edgegate-magic")
      .setIssuedAt()
      .setExpirationTime(now() + 600)
      .setJti(randomBytes(16).toString("hex"))
      .sign(secret);
  const post = (token, base = gate) =>
    get(`${base}/auth/magic`, { "content-type": "application/x-www-form-urlencoded" }, {
      method: "POST",
      body: new URLSearchParams({ token }).toString(),
    });

  test("GET answers a confirm page and consumes nothing", async () => {
    const token = await link();
    const res = await get(`${gate}/auth/magic?token=${token}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /text\/html/);
    assert.ok((await res.text()).includes(token));
    const first = await post(token);
    assert.equal(first.status, 302, "the GET must not have used the link");
  });

  test("POST opens a scoped session; a second POST is refused (single use per isolate)", async () => {
    const token = await link();
    const res = await post(token);
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "/tickets/TRK-1");
    const cookie = res.headers.get("set-cookie");
    assert.match(cookie, /^edgegate_session=/);
    assert.match(cookie, /HttpOnly/);
    const jar = cookie.split(";")[0];

    const seen = await echoed(await get(`${gate}/tickets/TRK-1/thread`, { cookie: jar }));
    assert.equal(seen.headers["x-edgegate-email"], "guest@example.com");
    assert.equal(seen.headers["x-edgegate-credential"], "magic_link");

    const other = await get(`${gate}/tickets/TRK-2/thread`, { cookie: jar });
    assert.equal(other.status, 403);
    assert.equal((await other.json()).reason, "out_of_scope");

    const again = await post(token);
    assert.notEqual(again.status, 302);
    assert.equal((await again.json()).reason, "token_replayed");
  });

  test("the session cookie answers every request alike (opened once, then from the isolate's cache); its value as a bearer token is checked as a JWT", async () => {
    const res = await post(await link());
    assert.equal(res.status, 302);
    const jar = res.headers.get("set-cookie").split(";")[0];
    for (let i = 0; i < 4; i++) {
      const seen = await echoed(await get(`${gate}/tickets/TRK-1/thread`, { cookie: jar }));
      assert.equal(seen.headers["x-edgegate-email"], "guest@example.com");
      assert.equal(seen.headers["x-edgegate-credential"], "magic_link");
    }
    // The route takes sessions and JWTs: only the cache's kind check keeps the session's
    // identity from answering its value sent as a bearer token.
    const before = origin.hits("/tickets/TRK-1/thread");
    const bearer = await get(`${gate}/tickets/TRK-1/thread`, { authorization: `Bearer ${jar.split("=")[1]}` });
    assert.equal(bearer.status, 401);
    assert.equal((await bearer.json()).reason, "missing_claim");
    assert.equal(origin.hits("/tickets/TRK-1/thread"), before, "nothing reached the origin");
  });

  test("with the Durable Object, a link used on one worker is refused on another", async () => {
    const token = await link();
    assert.equal((await post(token, gate)).status, 302);
    const again = await post(token, wd.urls.gateurl);
    assert.notEqual(again.status, 302);
    assert.equal((await again.json()).reason, "token_replayed");
    assert.equal(again.headers.get("set-cookie"), null);
  });

  test("without the Durable Object, single use holds per isolate", async () => {
    const token = await link();
    assert.equal((await post(token, wd.urls.nodo)).status, 302);
    const again = await post(token, wd.urls.nodo);
    assert.equal((await again.json()).reason, "token_replayed");
  });

  test("a link signed with another key is refused", async () => {
    const token = await new SignJWT({ email: "g@example.com", purpose: "guest", scope: "/tickets/X" })
      .setProtectedHeader({ alg: "HS256", kid: "m1" })
      .setIssuer("edgegate")
      .setAudience("edgegate-magic")
      .setIssuedAt()
      .setExpirationTime(now() + 600)
      .setJti("x1")
      .sign(randomBytes(32));
    const res = await post(token);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("set-cookie"), null);
  });
});
