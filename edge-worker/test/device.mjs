// Helpers of the device-authorization tests (device.test.mjs, device-cli.test.mjs): the config,
// the device's requests, and the browser's part (login at oidc-provider, confirm page).
import assert from "node:assert/strict";
import { ADMIN_BEHIND_LOGIN, SESSION_SECRET_B64 } from "./harness.mjs";
import { Jar, browse, throughProvider } from "./op.mjs";

export const SECRET = "edge-device-secret-0123456789";
export const GRANT = "urn:ietf:params:oauth:grant-type:device_code";

export function deviceConfig({ issuer, base, device = {} }) {
  return {
    realm: "device-test",
    jwt: {
      providers: [
        {
          name: "op",
          issuer,
          algorithms: ["RS256"],
          remote_jwks: { oidc_issuer: issuer },
          claims: { roles: ["roles"] },
        },
      ],
    },
    session: { keys: [{ kid: "s1", secret: SESSION_SECRET_B64 }], lifetime_seconds: 3600 },
    login: {
      provider: "op",
      client_id: "edge",
      client_secret: SECRET,
      redirect_uri: `${base}/auth/callback`,
      scopes: ["openid", "email", "profile"],
      device: { interval_s: 1, max_wrong_codes_per_user: 3, ...device },
    },
    rules: [
      ADMIN_BEHIND_LOGIN,
      { name: "jwt-only", match: { path: { prefix: "/jwt" } }, credentials: ["jwt"] },
      { name: "public-jwt", match: { path: { prefix: "/public-jwt" } }, credentials: ["jwt"], require: { public: true } },
      { name: "public", match: { path: { prefix: "/public" } }, require: { public: true } },
    ],
    default_rule: { login_url: "/auth/login" },
  };
}

/** A device asking for a code at `base`: the RFC 8628 §3.2 answer. */
export async function deviceCode(base, clientId = "test-cli") {
  const r = await fetch(`${base}/auth/device/code`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: clientId }).toString(),
  });
  assert.equal(r.status, 200);
  return r.json();
}

/** One poll of the token endpoint: {status, body}. */
export async function pollOnce(base, deviceCodeValue) {
  const r = await fetch(`${base}/auth/device/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: GRANT, device_code: deviceCodeValue }).toString(),
  });
  assert.equal(r.headers.get("cache-control"), "no-store");
  return { status: r.status, body: await r.json() };
}

/**
 * The browser's part: open `url` (the verification URI), log in at the provider as `user` if
 * sent there, and come back to the confirm page. Returns {jar, page (HTML), status}.
 */
export async function openVerification(base, url, { jar = new Jar(), user = "alice" } = {}) {
  let res = await browse(jar, url);
  if (res.status === 302 && new URL(res.headers.get("location"), base).pathname === "/auth/login") {
    const toLogin = new URL(res.headers.get("location"), base).href;
    const start = await browse(jar, toLogin);
    assert.equal(start.status, 302, await start.text());
    const callback = await throughProvider(jar, start.headers.get("location"), `${base}/auth/callback`, user);
    const back = await browse(jar, callback);
    assert.equal(back.status, 302, await back.text());
    const returnTo = new URL(back.headers.get("location"), base).href;
    assert.equal(returnTo, new URL(url).href, "the login returns to the verification page");
    res = await browse(jar, returnTo);
  }
  return { jar, status: res.status, page: await res.text() };
}

/**
 * What the origin receives when `token` is sent as `Authorization: Bearer` to routes that did not
 * take it (a public route of JWTs only, a public route with it forged): never the credential.
 */
export async function assertCredentialStaysAtTheEdge(base, token) {
  const forged = `${token.slice(0, -3)}AAA`;
  for (const [path, value] of [
    ["/public/x", token],
    ["/public-jwt/x", token],
    ["/public/x", forged],
  ]) {
    const r = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${value}` } });
    assert.equal(r.status, 200, path);
    const seen = await r.json();
    assert.equal(seen.headers.authorization, undefined, `${path}: the device credential went upstream`);
  }
}

/**
 * Malformed, oversized and repeated inputs at each device route: a clear 400 (403 for a confirm
 * form that names no code of this session), never a 5xx, and never an answer built from one of
 * two values of a field (RFC 6749 §3.1: a parameter is sent once). `jar`: a logged-in browser.
 */
export async function assertBadInputsAreRefused(base, jar) {
  const post = (path, body, type = "application/x-www-form-urlencoded") =>
    fetch(`${base}${path}`, { method: "POST", headers: { "content-type": type }, body });
  const grant = `grant_type=${encodeURIComponent(GRANT)}`;
  const dc = `BBBBBBBB.${"A".repeat(43)}`;
  const json = (r) => r.json().then((b) => [r.status, b.error]);
  const cases = [
    ["oversized token request", () => post("/auth/device/token", `${grant}&device_code=${"B".repeat(20_000)}`).then(json), [400, "invalid_request"]],
    ["a JSON token request", () => post("/auth/device/token", JSON.stringify({ grant_type: GRANT, device_code: dc }), "application/json").then(json), [400, "invalid_request"]],
    ["device_code twice", () => post("/auth/device/token", `${grant}&device_code=${dc}&device_code=x`).then(json), [400, "invalid_request"]],
    ["grant_type twice", () => post("/auth/device/token", `${grant}&grant_type=password&device_code=${dc}`).then(json), [400, "invalid_request"]],
    ["client_id twice", () => post("/auth/device/code", "client_id=a&client_id=b").then(json), [400, "invalid_request"]],
    ["binary code request", () => post("/auth/device/code", "client_id=%00%FF", "application/octet-stream").then(json), [400, "invalid_request"]],
  ];
  for (const [what, send, want] of cases) assert.deepEqual(await send(), want, what);
  const page = async (url, opts) => (await browse(jar, url, opts)).status;
  assert.equal(await page(`${base}/auth/device?user_code=${"B".repeat(5000)}`), 400, "a very long user code");
  assert.equal(await page(`${base}/auth/device?user_code=%00%FF%FE`), 400, "a user code of bytes");
  assert.equal(await page(`${base}/auth/device?user_code=BBBB-BBBB&user_code=BBBB-BBBC`), 400, "user_code twice in the link");
  const form = (body) => page(`${base}/auth/device`, { method: "POST", body });
  assert.equal(await form("user_code=BBBBBBBB&csrf=x&action=deny&action=approve"), 400, "action twice");
  assert.equal(await form("user_code=BBBBBBBB&user_code=BBBBBBBC&csrf=x&action=deny"), 400, "user_code twice");
  assert.equal(await form(`user_code=${"B".repeat(10_000)}&csrf=x&action=approve`), 403, "a very long user code");
  assert.equal(await form(`user_code=B&csrf=${"x".repeat(20_000)}&action=approve`), 400, "an oversized form");
}

/** The confirm page's form fields. */
export function confirmFields(page) {
  const field = (name) => new RegExp(`name=${name} value="([^"]*)"`).exec(page)?.[1]?.replaceAll("&amp;", "&");
  return { user_code: field("user_code"), csrf: field("csrf") };
}

/** Approve (or deny) from the confirm page: the response. */
export async function answerDevice(base, jar, page, action = "approve") {
  const fields = confirmFields(page);
  assert.ok(fields.csrf, `a confirm page with a form token:\n${page}`);
  return browse(jar, `${base}/auth/device`, {
    method: "POST",
    body: new URLSearchParams({ ...fields, action }).toString(),
  });
}

