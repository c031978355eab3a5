// OIDC login through the edge worker in real workerd, and through real Envoy with the proxy-wasm
// filter (EDGEGATE_RP_HOSTS, rp-harness.mjs; default: the worker), against a real OpenID
// Provider (npm `oidc-provider`, test/op.mjs), driven over HTTP with a cookie jar: login,
// callback, session, /auth/me, the protected page at the origin, refresh, logout, two tabs, two
// browsers at once, and refusals. Every case runs on every host; where a host has no such
// setting (Envoy has no OIDC_CLIENT_SECRET binding) the config carries the value instead.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { SignJWT } from "jose";
import { ADMIN_BEHIND_LOGIN, SESSION_SECRET_B64, assertIdentity, freePort, startOrigin } from "./harness.mjs";
import { Jar, browse, startOP, throughProvider } from "./op.mjs";
import { describeEachHost, startGates } from "./rp-harness.mjs";

const REFRESH_KEY_B64 = randomBytes(32).toString("base64url");
const SECRETS = { edge: "edge-basic-secret-0123456789", post: "edge-post-secret-0123456789", short: "edge-short-secret-0123456789" };

function config({ issuer, base, clientId, secret, method = "client_secret_basic", lifetime = 3600 }) {
  const login = {
    provider: "op",
    client_id: clientId,
    token_endpoint_auth_method: method,
    redirect_uri: `${base}/auth/callback`,
    scopes: ["openid", "email", "profile", "offline_access"],
    post_logout_redirect_uri: `${base}/`,
    refresh_keys: [{ kid: "r1", secret: REFRESH_KEY_B64 }],
  };
  if (secret) login.client_secret = secret;
  return {
    realm: "login-test",
    jwt: {
      providers: [
        {
          name: "op",
          issuer,
          algorithms: ["RS256"],
          remote_jwks: { oidc_issuer: issuer, unknown_kid_min_interval_seconds: 1 },
          claims: { roles: ["roles"] },
        },
      ],
    },
    session: { keys: [{ kid: "s1", secret: SESSION_SECRET_B64 }], lifetime_seconds: lifetime },
    login,
    rules: [
      { name: "home", match: { path: { exact: "/" } }, require: { public: true } },
      ADMIN_BEHIND_LOGIN,
    ],
    default_rule: { login_url: "/auth/login" },
  };
}

describeEachHost(suite);

function suite(hostName, traits) {
  let origin;
  let op;
  let gw; // the started host: {urls, logs(), stop()} (rp-harness.mjs startGates)
  const base = {};

  before(async () => {
    origin = await startOrigin();
    const opPort = await freePort();
    for (const name of ["basic", "short", "badsecret", "post"]) base[name] = `http://127.0.0.1:${await freePort()}`;
    const cb = (name) => `${base[name]}/auth/callback`;
    const home = (name) => `${base[name]}/`;
    op = await startOP({
      port: opPort,
      clients: [
        {
          client_id: "edge",
          client_secret: SECRETS.edge,
          token_endpoint_auth_method: "client_secret_basic",
          redirect_uris: [cb("basic")],
          post_logout_redirect_uris: [home("basic")],
        },
        {
          client_id: "edge-short",
          client_secret: SECRETS.short,
          token_endpoint_auth_method: "client_secret_basic",
          redirect_uris: [cb("short"), cb("badsecret")],
          post_logout_redirect_uris: [home("short")],
        },
        {
          client_id: "edge-post",
          client_secret: SECRETS.post,
          token_endpoint_auth_method: "client_secret_post",
          redirect_uris: [cb("post")],
          post_logout_redirect_uris: [home("post")],
        },
      ],
    });
    const port = (name) => Number(new URL(base[name]).port);
    const issuer = op.issuer;
    // Envoy has no bindings: where the worker takes the secret from OIDC_CLIENT_SECRET, its
    // config carries it.
    gw = await startGates(hostName, {
      originPort: origin.port,
      gates: [
        {
          name: "basic",
          port: port("basic"),
          config: config({ issuer, base: base.basic, clientId: "edge", secret: SECRETS.edge }),
        },
        traits.bindings
          ? {
              // The secret only in the OIDC_CLIENT_SECRET binding; sessions of 6 s to see refresh.
              name: "short",
              port: port("short"),
              config: config({ issuer, base: base.short, clientId: "edge-short", lifetime: 6 }),
              text: { OIDC_CLIENT_SECRET: SECRETS.short },
            }
          : {
              name: "short",
              port: port("short"),
              config: config({ issuer, base: base.short, clientId: "edge-short", secret: SECRETS.short, lifetime: 6 }),
            },
        traits.bindings
          ? {
              // The right secret in the config, a wrong one in the binding, which wins.
              name: "badsecret",
              port: port("badsecret"),
              config: config({ issuer, base: base.badsecret, clientId: "edge-short", secret: SECRETS.short, lifetime: 6 }),
              text: { OIDC_CLIENT_SECRET: "not-the-secret" },
            }
          : {
              // The same client with a wrong secret in the config.
              name: "badsecret",
              port: port("badsecret"),
              config: config({ issuer, base: base.badsecret, clientId: "edge-short", secret: "not-the-secret", lifetime: 6 }),
            },
        {
          name: "post",
          port: port("post"),
          config: config({
            issuer,
            base: base.post,
            clientId: "edge-post",
            secret: SECRETS.post,
            method: "client_secret_post",
          }),
        },
      ],
    });
  });

  after(async () => {
    await gw?.stop();
    await op?.stop();
    await origin?.stop();
  });

  const setCookies = (res) => res.headers.getSetCookie();
  const cookieNamed = (res, name) => setCookies(res).find((c) => c.startsWith(`${name}=`));
  const isDeletion = (line) => /Max-Age=0/i.test(line);

  /**
   * Waits until the jar's session is in the last quarter of its lifetime (renewal is due) and
   * checks it has not expired yet. Reads iat/exp from the session cookie's (signed) payload.
   */
  async function renewalWindow(jar) {
    const payload = JSON.parse(Buffer.from(jar.get("edgegate_session").split(".")[1], "base64url"));
    const renewAt = payload.iat + Math.floor(((payload.exp - payload.iat) * 3) / 4);
    await new Promise((r) => setTimeout(r, Math.max(0, renewAt * 1000 + 200 - Date.now())));
    assert.ok(Date.now() < payload.exp * 1000 - 500, "still inside the session's lifetime");
  }

  /** The first half of a login: the worker's 302 to the provider and the attempt cookie. */
  async function startLogin(jar, worker, rd = "/admin/x") {
    const res = await browse(jar, `${base[worker]}/auth/login?rd=${encodeURIComponent(rd)}`);
    assert.equal(res.status, 302, await res.text());
    const location = res.headers.get("location");
    assert.ok(
      new URL(location, base[worker]).href.startsWith(`${op.issuer}/`),
      `/auth/login sends the browser to the provider, not to ${location}`,
    );
    const attempt = setCookies(res).find((c) => c.startsWith("edgegate_login_"));
    assert.ok(attempt, "an attempt cookie is set");
    return { location, attempt };
  }

  /** A whole login as `user`; returns the callback response. */
  async function login(jar, worker, { rd = "/admin/x", user = "alice" } = {}) {
    const { location } = await startLogin(jar, worker, rd);
    const callback = await throughProvider(jar, location, `${base[worker]}/auth/callback`, user);
    return browse(jar, callback);
  }

  describe("OIDC login against oidc-provider", () => {
    test("browser round trip: protected page -> login -> provider -> callback -> session -> origin", async () => {
      const jar = new Jar();
      // The core sends a browser without a session to login_url with rd = the original URL.
      const first = await browse(jar, `${base.basic}/admin/x?tab=1`);
      assert.equal(first.status, 302);
      const toLogin = new URL(first.headers.get("location"), base.basic);
      assert.equal(toLogin.pathname, "/auth/login");
      assert.equal(toLogin.searchParams.get("rd"), "/admin/x?tab=1");

      const start = await browse(jar, toLogin.href);
      assert.equal(start.status, 302);
      const auth = new URL(start.headers.get("location"), base.basic);
      assert.equal(auth.origin, op.issuer, `/auth/login sends the browser to the provider: ${auth.href}`);
      assert.equal(auth.searchParams.get("response_type"), "code");
      assert.equal(auth.searchParams.get("client_id"), "edge");
      assert.equal(auth.searchParams.get("redirect_uri"), `${base.basic}/auth/callback`);
      assert.equal(auth.searchParams.get("code_challenge_method"), "S256");
      assert.match(auth.searchParams.get("code_challenge"), /^[A-Za-z0-9_-]{43}$/);
      assert.ok(auth.searchParams.get("nonce"));
      assert.ok(auth.searchParams.get("scope").split(" ").includes("openid"));
      const state = auth.searchParams.get("state");
      const attempt = cookieNamed(start, `edgegate_login_${state}`);
      assert.ok(attempt, "the attempt cookie is named after the state");
      assert.match(attempt, /HttpOnly/);
      assert.match(attempt, /SameSite=Lax/);

      const callbackUrl = await throughProvider(jar, auth.href, `${base.basic}/auth/callback`);
      const cb = new URL(callbackUrl);
      assert.equal(cb.searchParams.get("state"), state);
      assert.equal(cb.searchParams.get("iss"), op.issuer, "the provider sends RFC 9207 iss");

      const done = await browse(jar, callbackUrl);
      assert.equal(done.status, 302, await done.text());
      assert.equal(done.headers.get("location"), "/admin/x?tab=1");
      const session = cookieNamed(done, "edgegate_session");
      assert.ok(session && !isDeletion(session), "a session cookie is set");
      assert.match(session, /HttpOnly/);
      assert.match(session, /Secure/);
      const refresh = cookieNamed(done, "edgegate_session_refresh");
      assert.ok(refresh && !isDeletion(refresh), "the refresh token is kept (encrypted)");
      assert.ok(isDeletion(cookieNamed(done, `edgegate_login_${state}`)), "the attempt cookie is deleted");
      const sizes = {
        attempt: attempt.split(";")[0].length,
        session: session.split(";")[0].length,
        refresh: refresh.split(";")[0].length,
      };
      console.log(`cookie sizes (name=value bytes): ${JSON.stringify(sizes)}`);
      for (const n of Object.values(sizes)) assert.ok(n < 4000, `a cookie of ${n} bytes`);
      // The refresh token travels only encrypted: no JWT-looking or plain token in the cookie.
      assert.doesNotMatch(refresh.split(";")[0], /eyJ/);

      const me = await browse(jar, `${base.basic}/auth/me`, { headers: { accept: "application/json" } });
      assert.equal(me.status, 200);
      const who = await me.json();
      assert.equal(who.subject, "alice");
      assert.equal(who.email, "alice@example.com");
      assert.equal(who.name, "Alice Liddell");
      assert.deepEqual(who.roles, ["admin", "staff"]);
      assert.equal(who.provider, "op");
      assert.equal(who.credential, "session");
      assert.ok(who.expires_at > Date.now() / 1000 + 3000);

      // The app's own cookie goes upstream; none of edgegate's does.
      jar.setCookie(new URL(base.basic), "theme=dark; Path=/");
      const page = await browse(jar, `${base.basic}/admin/x?tab=1`);
      assert.equal(page.status, 200);
      const seen = await page.json();
      assert.equal(seen.url, "/admin/x?tab=1");
      assertIdentity(seen, {
        subject: "alice",
        roles: "admin,staff",
        email: "alice@example.com",
        credential: "session",
        provider: "op",
      });
      // (the jar is per host name, as browsers are: the provider's cookies on 127.0.0.1 go too)
      const upstreamCookies = (seen.headers.cookie ?? "").split(";").map((c) => c.trim().split("=")[0]);
      assert.ok(upstreamCookies.includes("theme"), `the app's cookie reaches the origin: ${seen.headers.cookie}`);
      assert.deepEqual(upstreamCookies.filter((n) => n.startsWith("edgegate")), [], `no edgegate cookie upstream: ${seen.headers.cookie}`);
    });

    test("a user without the role gets 403 after login; /auth/me shows why", async () => {
      const jar = new Jar();
      const done = await login(jar, "basic", { user: "bob", rd: "/admin" });
      assert.equal(done.status, 302);
      const page = await browse(jar, `${base.basic}/admin`, { headers: { accept: "application/json" } });
      assert.equal(page.status, 403);
      assert.equal((await page.json()).reason, "missing_role");
      const who = await (await browse(jar, `${base.basic}/auth/me`)).json();
      assert.deepEqual(who.roles, ["staff"]);
    });

    test("/auth/me shows any accepted credential: a bearer JWT of the provider", async () => {
      const t = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ sub: "svc-1", roles: ["robot"], email: "svc@example.com" })
        .setProtectedHeader({ alg: "RS256", kid: "op-rs1", typ: "JWT" })
        .setIssuer(op.issuer)
        .setAudience("api")
        .setIssuedAt(t)
        .setExpirationTime(t + 300)
        .sign(op.privateKey);
      const res = await fetch(`${base.basic}/auth/me`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200);
      const who = await res.json();
      assert.equal(who.subject, "svc-1");
      assert.equal(who.credential, "jwt");
      assert.deepEqual(who.roles, ["robot"]);
      assert.equal(who.expires_at, t + 300);
      const forged = `${token.slice(0, -4)}AAAA`;
      const bad = await fetch(`${base.basic}/auth/me`, { headers: { authorization: `Bearer ${forged}` } });
      assert.equal(bad.status, 401);
      assert.equal((await bad.json()).reason, "bad_signature");
    });

    test("/auth/me without a credential is 401 JSON", async () => {
      const res = await fetch(`${base.basic}/auth/me`, { headers: { accept: "application/json" } });
      assert.equal(res.status, 401);
      assert.match(res.headers.get("content-type"), /json/);
      assert.equal((await res.json()).reason, "credential_missing");
    });

    test("refresh: a session in its last quarter is renewed; the origin still sees the user", async () => {
      const jar = new Jar();
      const done = await login(jar, "short");
      assert.equal(done.status, 302, await done.text());
      const firstSession = jar.get("edgegate_session");
      const firstRefresh = jar.get("edgegate_session_refresh");
      assert.ok(firstSession && firstRefresh);
      // Young session: no renewal.
      const young = await browse(jar, `${base.short}/admin/x`);
      assert.equal(young.status, 200);
      assert.equal(cookieNamed(young, "edgegate_session"), undefined);
      // 6 s sessions are renewed from 4 s on. A page's parallel requests all find it due: one
      // refresh serves them all (the provider rotates refresh tokens and refuses a reused one).
      await renewalWindow(jar);
      const pages = await Promise.all([1, 2, 3, 4].map((i) => browse(jar, `${base.short}/admin/x?p=${i}`)));
      const renewedValues = new Set();
      for (const page of pages) {
        assert.equal(page.status, 200);
        assert.equal((await page.json()).headers["x-edgegate-subject"], "alice");
        const renewed = cookieNamed(page, "edgegate_session");
        assert.ok(renewed && !isDeletion(renewed), "a renewed session cookie is set");
        renewedValues.add(renewed.split(";")[0]);
      }
      assert.equal(renewedValues.size, 1, "one renewal shared by the parallel requests");
      const page = pages[0];
      assert.notEqual(jar.get("edgegate_session"), firstSession);
      assert.ok(cookieNamed(page, "edgegate_session_refresh"), "the refresh cookie is re-sealed");
      assert.notEqual(jar.get("edgegate_session_refresh"), firstRefresh, "fresh nonce, new ciphertext");

      // The browser dropped the session (Max-Age): the refresh cookie alone (holding the rotated
      // refresh token) brings it back.
      jar.delete("edgegate_session");
      const back = await browse(jar, `${base.short}/admin/x`);
      assert.equal(back.status, 200);
      assert.equal((await back.json()).headers["x-edgegate-subject"], "alice");
      assert.ok(cookieNamed(back, "edgegate_session"));
    });

    test("a failed refresh ends the session: cookies cleared, browser sent to login", async () => {
      const jar = new Jar();
      assert.equal((await login(jar, "short")).status, 302);
      jar.delete("edgegate_session");
      // Same keys, but this gate's client secret is wrong (the worker: its OIDC_CLIENT_SECRET
      // binding; Envoy: its config): the provider refuses.
      const res = await browse(jar, `${base.badsecret}/admin/x`);
      assert.equal(res.status, 302);
      assert.match(res.headers.get("location"), /^\/auth\/login\?rd=/);
      assert.ok(isDeletion(cookieNamed(res, "edgegate_session_refresh")));
      assert.ok(isDeletion(cookieNamed(res, "edgegate_session")));
      assert.equal(jar.get("edgegate_session_refresh"), undefined);
      assert.match(gw.logs(), /session renewal failed/);
    });

    test("logout clears every cookie and goes to the provider's end_session_endpoint", async () => {
      const jar = new Jar();
      assert.equal((await login(jar, "basic")).status, 302);
      // A stale attempt of another tab is cleared too.
      await startLogin(jar, "basic");
      assert.ok(jar.names().some((n) => n.startsWith("edgegate_login_")));
      const res = await browse(jar, `${base.basic}/auth/logout`);
      assert.equal(res.status, 302);
      const loc = new URL(res.headers.get("location"));
      const disco = await (await fetch(`${op.issuer}/.well-known/openid-configuration`)).json();
      assert.equal(`${loc.origin}${loc.pathname}`, disco.end_session_endpoint);
      assert.equal(loc.searchParams.get("client_id"), "edge");
      assert.equal(loc.searchParams.get("post_logout_redirect_uri"), `${base.basic}/`);
      assert.match(loc.searchParams.get("id_token_hint"), /^eyJ/);
      assert.ok(isDeletion(cookieNamed(res, "edgegate_session")));
      assert.ok(isDeletion(cookieNamed(res, "edgegate_session_refresh")));
      assert.deepEqual(
        jar.names().filter((n) => n.startsWith("edgegate")),
        [],
        "no edgegate cookie is left",
      );
      // The provider accepts the hint (an invalid one is a 400 error page there).
      const end = await browse(jar, loc.href);
      assert.equal(end.status, 200);
      const me = await browse(jar, `${base.basic}/auth/me`);
      assert.equal(me.status, 401);
      // POST works too.
      const post = await browse(jar, `${base.basic}/auth/logout`, { method: "POST", body: "" });
      assert.equal(post.status, 302);
    });

    test("RFC 9207 with a real provider: it advertises and sends `iss`; a callback stripped of it is refused", async () => {
      const disco = await (await fetch(`${op.issuer}/.well-known/openid-configuration`)).json();
      assert.equal(disco.authorization_response_iss_parameter_supported, true);
      const jar = new Jar();
      const { location } = await startLogin(jar, "post");
      const callback = new URL(await throughProvider(jar, location, `${base.post}/auth/callback`));
      assert.equal(callback.searchParams.get("iss"), op.issuer, "the provider sends iss");
      // A mix-up attacker (or a proxy) drops it: the worker must not take the code.
      callback.searchParams.delete("iss");
      const res = await browse(jar, callback.href, { headers: { accept: "application/json" } });
      const body = await res.text();
      assert.equal(res.status, 401, body);
      assert.equal(JSON.parse(body).reason, "login_mismatch");
      assert.equal(cookieNamed(res, "edgegate_session"), undefined, "no session");
      // The same provider logs in normally with iss.
      const ok = await login(new Jar(), "post");
      assert.equal(ok.status, 302, await ok.text());
    });

    test("without a session: a browser is sent to login with a safe rd, an API client gets 401 with a challenge", async () => {
      const arrivedBefore = origin.received.length;
      // a browser (Accept: text/html) on the protected rule
      const browser = await browse(new Jar(), `${base.basic}/admin/reports?month=11&tab=2`);
      assert.equal(browser.status, 302, await browser.text());
      const toLogin = new URL(browser.headers.get("location"), base.basic);
      assert.equal(toLogin.origin, base.basic, "login on the gate itself");
      assert.equal(toLogin.pathname, "/auth/login");
      assert.equal(toLogin.searchParams.get("rd"), "/admin/reports?month=11&tab=2");
      assert.deepEqual(browser.headers.getSetCookie(), [], "nothing set before the login starts");
      // a path that reads as another host when used as a URL: refused outright (the worker:
      // 400 malformed_path), or (Envoy merges the slashes first) sent to login with an rd that
      // stays on this origin
      const sneaky = await browse(new Jar(), `${base.basic}//evil.example/admin`);
      const sneakyBody = await sneaky.text();
      if (sneaky.status === 400) {
        assert.equal(JSON.parse(sneakyBody).reason, "malformed_path");
      } else {
        assert.equal(sneaky.status, 302, sneakyBody);
        const loc = new URL(sneaky.headers.get("location"), base.basic);
        assert.equal(`${loc.origin}${loc.pathname}`, `${base.basic}/auth/login`);
        const rd = loc.searchParams.get("rd");
        assert.ok(rd.startsWith("/") && !rd.startsWith("//") && !rd.startsWith("/\\"), `a same-origin path: ${rd}`);
        assert.equal(new URL(rd, base.basic).origin, base.basic, `rd ${rd} stays on the gate`);
      }
      // an API client (JSON) gets the 401 with an RFC 6750 challenge, no redirect
      const api = await fetch(`${base.basic}/admin/reports`, { headers: { accept: "application/json" }, redirect: "manual" });
      assert.equal(api.status, 401);
      assert.equal(api.headers.get("location"), null);
      assert.match(api.headers.get("www-authenticate") ?? "", /^Bearer realm="login-test"/);
      assert.equal((await api.json()).reason, "credential_missing");
      assert.equal(origin.received.length, arrivedBefore, "nothing reached the origin");
    });

    test("two browsers log in at once (two jars, in parallel): both succeed, each as itself", async () => {
      const alice = new Jar();
      const bob = new Jar();
      const [a, b] = await Promise.all([
        login(alice, "basic", { rd: "/admin/a", user: "alice" }),
        login(bob, "basic", { rd: "/admin/b", user: "bob" }),
      ]);
      assert.equal(a.status, 302, await a.text());
      assert.equal(a.headers.get("location"), "/admin/a");
      assert.equal(b.status, 302, await b.text());
      assert.equal(b.headers.get("location"), "/admin/b");
      assert.notEqual(alice.get("edgegate_session"), bob.get("edgegate_session"));
      const [meA, meB] = await Promise.all(
        [alice, bob].map(async (jar) => (await browse(jar, `${base.basic}/auth/me`, { headers: { accept: "application/json" } })).json()),
      );
      assert.equal(meA.subject, "alice");
      assert.equal(meB.subject, "bob");
      const page = await browse(alice, `${base.basic}/admin/a`);
      assert.equal(page.status, 200);
      assertIdentity(await page.json(), { subject: "alice", roles: "admin,staff" });
      for (const jar of [alice, bob]) {
        assert.equal(jar.names().filter((n) => n.startsWith("edgegate_login_")).length, 0, "attempt cookies cleared");
      }
    });

    test("two tabs log in at once (same jar, interleaved): both succeed", async () => {
      const jar = new Jar();
      const a = await startLogin(jar, "basic", "/admin/a");
      const b = await startLogin(jar, "basic", "/admin/b");
      const stateOf = (loc) => new URL(loc).searchParams.get("state");
      assert.notEqual(stateOf(a.location), stateOf(b.location));
      const cbA = await throughProvider(jar, a.location, `${base.basic}/auth/callback`);
      const cbB = await throughProvider(jar, b.location, `${base.basic}/auth/callback`);
      const doneB = await browse(jar, cbB);
      assert.equal(doneB.status, 302, await doneB.text());
      assert.equal(doneB.headers.get("location"), "/admin/b");
      const doneA = await browse(jar, cbA);
      assert.equal(doneA.status, 302, await doneA.text());
      assert.equal(doneA.headers.get("location"), "/admin/a");
      assert.ok(cookieNamed(doneA, "edgegate_session"));
      assert.equal(jar.names().filter((n) => n.startsWith("edgegate_login_")).length, 0);
    });

    test("open redirects in rd are refused before anything is set", async () => {
      for (const rd of ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "http://127.0.0.1.evil.example/"]) {
        const res = await fetch(`${base.basic}/auth/login?rd=${encodeURIComponent(rd)}`, {
          headers: { accept: "application/json" },
          redirect: "manual",
        });
        assert.equal(res.status, 400, rd);
        assert.equal((await res.json()).reason, "unsafe_redirect", rd);
        assert.deepEqual(res.headers.getSetCookie(), [], rd);
      }
      // No rd: back to /.
      const jar = new Jar();
      const { location } = await startLogin(jar, "basic", "/");
      const done = await browse(jar, await throughProvider(jar, location, `${base.basic}/auth/callback`));
      assert.equal(done.headers.get("location"), "/");
    });

    test("callbacks with a wrong or missing state, or without the attempt cookie, are refused", async () => {
      const jar = new Jar();
      const { location } = await startLogin(jar, "basic");
      const callback = await throughProvider(jar, location, `${base.basic}/auth/callback`);
      const bad = new URL(callback);
      bad.searchParams.set("state", "AAAAAAAAAAAAAAAAAAAAAA");
      const missing = new URL(callback);
      missing.searchParams.delete("state");
      for (const url of [bad.href, missing.href]) {
        const res = await browse(jar, url, { headers: { accept: "application/json" } });
        assert.equal(res.status, 401, url);
        assert.equal((await res.json()).reason, "login_mismatch");
        assert.equal(cookieNamed(res, "edgegate_session"), undefined);
      }
      // Another browser (no attempt cookie) cannot use the code.
      const other = await browse(new Jar(), callback, { headers: { accept: "text/html" } });
      assert.equal(other.status, 401);
      assert.match(other.headers.get("content-type"), /text\/html/);
      assert.match(await other.text(), /Login failed/);
      assert.equal(cookieNamed(other, "edgegate_session"), undefined);
      // The genuine callback still works.
      const ok = await browse(jar, callback);
      assert.equal(ok.status, 302);
      assert.ok(cookieNamed(ok, "edgegate_session"));
      assert.match(gw.logs(), /login refused: login_mismatch/);
    });

    test("a replayed code is refused (with the attempt cookie replayed too)", async () => {
      const jar = new Jar();
      const { location, attempt } = await startLogin(jar, "basic");
      const callback = await throughProvider(jar, location, `${base.basic}/auth/callback`);
      const first = await browse(jar, callback);
      assert.equal(first.status, 302);
      const replayJar = new Jar();
      replayJar.setCookie(new URL(base.basic), attempt);
      const replay = await browse(replayJar, callback, { headers: { accept: "application/json" } });
      assert.equal(replay.status, 401);
      const body = await replay.json();
      assert.equal(body.reason, "login_mismatch");
      assert.match(body.message, /invalid_grant/);
      assert.equal(cookieNamed(replay, "edgegate_session"), undefined);
    });

    test("client_secret_post works (the provider allows only _post for this client)", async () => {
      const jar = new Jar();
      const done = await login(jar, "post");
      assert.equal(done.status, 302, await done.text());
      assert.ok(cookieNamed(done, "edgegate_session"));
      const who = await (await browse(jar, `${base.post}/auth/me`)).json();
      assert.equal(who.subject, "alice");
    });

    test("the provider down at renewal: a valid session continues, an expired one ends", async () => {
      const jar = new Jar();
      assert.equal((await login(jar, "short")).status, 302);
      await renewalWindow(jar);
      await op.pause();
      try {
        const page = await browse(jar, `${base.short}/admin/x`);
        assert.equal(page.status, 200, "an outage does not log the user out");
        assert.equal((await page.json()).headers["x-edgegate-subject"], "alice");
        assert.deepEqual(setCookies(page), []);
        assert.match(gw.logs(), /the session continues until it expires: keys_unavailable/);
        jar.delete("edgegate_session");
        const gone = await browse(jar, `${base.short}/admin/y`);
        assert.equal(gone.status, 302);
        assert.match(gone.headers.get("location"), /^\/auth\/login\?rd=/);
        assert.ok(isDeletion(cookieNamed(gone, "edgegate_session_refresh")));
      } finally {
        await op.resume();
      }
    });

    const wrongSecret = traits.bindings ? "a wrong client secret (binding overrides the config)" : "a wrong client secret in the config";
    test(`${wrongSecret} is a refused login`, async () => {
      const jar = new Jar();
      const done = await login(jar, "badsecret");
      assert.equal(done.status, 401);
      assert.equal(cookieNamed(done, "edgegate_session"), undefined);
      assert.doesNotMatch(gw.logs(), /not-the-secret|edge-short-secret/);
    });
  });
}
