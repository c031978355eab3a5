// The relying-party checks of the OpenID conformance suite's basic and config plans
// (oidcc-client-basic-certification-test-plan, oidcc-client-config-certification-test-plan),
// reproduced locally: the worker in real workerd logs in against a small OpenID Provider
// (misbehaving-op.mjs: node:http + npm `jose`) that is told, per test, how to misbehave.
// Every misbehaviour must end in a refused login: no session cookie, no redirect to the return
// URL, /auth/me 401, the protected page still sends the browser to login. Every refusal is
// followed by a well-behaved login on the same worker (the refusal was that check, not a
// broken worker). The good cases (RS256, ES256, HS256 with the client secret, no kid with one
// key, key rotation) must log in and show the user.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { startOrigin } from "./harness.mjs";
import { startOp } from "./misbehaving-op.mjs";
import { Jar, describeEachHost, describeStep, driveLogin, freePorts, jarGet, startGates } from "./rp-harness.mjs";

const SESSION = "edgegate_session";
const SESSION_SECRET = randomBytes(32).toString("base64url");
const REFRESH_SECRET = randomBytes(32).toString("base64url");
// 43 characters: HS256 ID tokens are signed with the UTF-8 bytes of the client secret (OIDC
// Core 10.1), and the provider's shared secret must be at least 32 bytes.
const CLIENT_SECRET = randomBytes(32).toString("base64url");
const RD = "/app/page?tab=1";
// Sessions of the "refresh" worker: renewed in their last quarter (from 9 s on).
const REFRESH_SESSION_SECONDS = 12;

/**
 * The worker's config for one OP. `provider` and `login` are merged over the defaults; a
 * provider field set to undefined is removed.
 */
function rpConfig(op, port, { provider = {}, login = {} } = {}) {
  const p = {
    name: "op",
    issuer: op.issuer,
    algorithms: ["RS256"],
    remote_jwks: { oidc_issuer: op.issuer, unknown_kid_min_interval_seconds: 1 },
    claims: { roles: ["roles"] },
    ...provider,
  };
  for (const [k, v] of Object.entries(p)) if (v === undefined) delete p[k];
  return {
    realm: "rp",
    jwt: { providers: [p] },
    session: { keys: [{ kid: "s1", secret: SESSION_SECRET }], lifetime_seconds: 3600 },
    login: {
      provider: "op",
      client_id: "edge",
      client_secret: CLIENT_SECRET,
      token_endpoint_auth_method: "client_secret_basic",
      redirect_uri: `http://127.0.0.1:${port}/auth/callback`,
      scopes: ["openid", "email", "profile"],
      login_path: "/auth/login",
      logout_path: "/auth/logout",
      me_path: "/auth/me",
      post_logout_redirect_uri: `http://127.0.0.1:${port}/`,
      refresh_keys: [{ kid: "r1", secret: REFRESH_SECRET }],
      ...login,
    },
    rules: [
      {
        name: "app",
        match: { path: { prefix: "/app" } },
        credentials: ["session"],
        login_url: "/auth/login",
      },
    ],
    default_rule: { login_url: "/auth/login" },
  };
}

// The shared open-redirect corpus (oauth2-proxy's testdata/openredirects.txt), read in place.
const CORPUS = new URL("../../../shared/testdata/openredirects.txt", import.meta.url);
const CORPUS_HOSTS = [
  "foo.bar", ".bar.foo", "port.bar:8080", ".sub.port.bar:8080", "anyport.bar:*", ".sub.anyport.bar:*",
  "www.whitelisteddomain.tld", "*.wildcard.sub.port.bar:8080", "*.wildcard.sub.anyport.bar:*",
  "*.wildcard.bar", "*.wildcard.proxy.foo.bar",
];
/** Go's url.QueryUnescape, as oauth2-proxy's test applies it: `+` is a space, %XX a byte. */
function queryUnescape(s) {
  const bytes = [];
  const t = s.replace(/\+/g, " ");
  for (let i = 0; i < t.length; i++) {
    if (t[i] === "%" && /^[0-9a-fA-F]{2}$/.test(t.slice(i + 1, i + 3))) {
      bytes.push(parseInt(t.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(t[i], "utf8"));
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

// Every case below runs once per host of EDGEGATE_RP_HOSTS (rp-harness.mjs): the worker in
// workerd and/or Envoy with the proxy-wasm filter, each with the same configs and its own OPs.
describeEachHost(suite);

function suite(hostName, traits) {
  let origin;
  let gw; // the started host: {urls, logs(), stop()} (rp-harness.mjs startGates)
  let rotate30Gate; // started by rotate30Scenario
  let rotate30Run; // its outcome: {err} or {}
  const ops = {};
  const urls = {};

  before(async () => {
    origin = await startOrigin();
    const names = [
      "rs", "es", "hs", "single", "multi", "rotate", "mismatch", "refresh", "fresh", "paths", "redirects",
      "rfc9207", "rotate30",
    ];
    const ports = Object.fromEntries((await freePorts(names.length)).map((p, i) => [names[i], p]));
    const cb = (name) => [`http://127.0.0.1:${ports[name]}/auth/callback`];

    ops.rs = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("rs") });
    ops.es = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("es"), alg: "ES256" });
    ops.hs = await startOp({
      clientSecret: CLIENT_SECRET,
      redirectUris: cb("hs"),
      alg: "HS256",
      authMethod: "client_secret_post",
    });
    ops.single = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("single") });
    ops.multi = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("multi") });
    await ops.multi.addKey("RS256"); // two RSA keys in the JWKS; the first signs
    ops.rotate = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("rotate") });
    ops.mismatch = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("mismatch") });
    // from the very first discovery request on
    ops.mismatch.misbehave({ discoveryIssuer: `${ops.mismatch.issuer}/other` });
    ops.refresh = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("refresh") });
    ops.fresh = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("fresh") });
    ops.redirects = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("redirects") });
    // advertises RFC 9207 in its discovery document and sends `iss` unless told to omit it
    ops.rfc9207 = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("rfc9207"), issParameterSupported: true });
    ops.rotate30 = await startOp({ clientSecret: CLIENT_SECRET, redirectUris: cb("rotate30") });
    ops.paths = await startOp({
      clientSecret: CLIENT_SECRET,
      redirectUris: [`http://127.0.0.1:${ports.paths}/sso/cb`],
    });

    const workers = [
      { name: "rs", config: rpConfig(ops.rs, ports.rs) },
      {
        name: "es",
        config: rpConfig(ops.es, ports.es, { provider: { algorithms: ["ES256"] } }),
      },
      {
        // HS256 keyed with the client secret; the client authenticates with client_secret_post.
        // On the worker the secret comes from the OIDC_CLIENT_SECRET binding, which overrides the
        // config's (wrong) one: a login that works proves the override. Envoy has no bindings:
        // the config holds the secret.
        name: "hs",
        config: rpConfig(ops.hs, ports.hs, {
          provider: {
            algorithms: ["HS256"],
            remote_jwks: undefined,
            shared_secrets: [{ secret: Buffer.from(CLIENT_SECRET, "utf8").toString("base64url") }],
          },
          login: {
            client_secret: traits.bindings ? "not-the-secret-the-binding-wins" : CLIENT_SECRET,
            token_endpoint_auth_method: "client_secret_post",
          },
        }),
        ...(traits.bindings ? { text: { OIDC_CLIENT_SECRET: CLIENT_SECRET } } : {}),
      },
      { name: "single", config: rpConfig(ops.single, ports.single) },
      { name: "multi", config: rpConfig(ops.multi, ports.multi) },
      { name: "rotate", config: rpConfig(ops.rotate, ports.rotate) },
      {
        // keys from the jwks_uri directly: the refusal must come from the login's own discovery
        // check, not from the key set's discovery
        name: "mismatch",
        config: rpConfig(ops.mismatch, ports.mismatch, {
          provider: { remote_jwks: { jwks_uri: `${ops.mismatch.issuer}/jwks` } },
        }),
      },
      { name: "fresh", config: rpConfig(ops.fresh, ports.fresh) },
      // keys from the same discovery document as the login: fetched once for both
      { name: "rfc9207", config: rpConfig(ops.rfc9207, ports.rfc9207) },
      {
        // the allow-list oauth2-proxy's own open-redirect test uses (../shared/testdata/README.md)
        name: "redirects",
        config: { ...rpConfig(ops.redirects, ports.redirects), redirects: { allowed_hosts: CORPUS_HOSTS } },
      },
      {
        // login endpoints outside /auth/: the worker's synchronous fast path must hand them to
        // the async handler (it asks the core which paths are the login routes)
        name: "paths",
        config: (() => {
          const c = rpConfig(ops.paths, ports.paths, {
            login: {
              login_path: "/sso/login",
              redirect_uri: `http://127.0.0.1:${ports.paths}/sso/cb`,
              me_path: "/sso/me",
              logout_path: "/sso/logout",
            },
          });
          c.rules[0].login_url = "/sso/login";
          c.default_rule.login_url = "/sso/login";
          return c;
        })(),
      },
      {
        name: "refresh",
        config: (() => {
          const c = rpConfig(ops.refresh, ports.refresh);
          c.session.lifetime_seconds = REFRESH_SESSION_SECONDS;
          return c;
        })(),
      },
    ].map((w) => ({ ...w, port: ports[w.name] }));
    gw = await startGates(hostName, { originPort: origin.port, gates: workers });
    Object.assign(urls, gw.urls);
    rotate30Gate = {
      // nothing about unknown-kid refetches configured: the default interval (30 s). A gate of
      // its own, started by the scenario, so that "right after the first fetch" holds on a host
      // that fetches keys at start (Envoy) as on one that fetches them at the first request
      // (the worker).
      name: "rotate30",
      port: ports.rotate30,
      config: rpConfig(ops.rotate30, ports.rotate30, { provider: { remote_jwks: { oidc_issuer: ops.rotate30.issuer } } }),
    };
    rotate30Run = rotate30Scenario().then(
      () => ({}),
      (err) => ({ err }),
    );
  });

  after(async () => {
    await rotate30Run;
    await gw?.stop();
    for (const op of Object.values(ops)) await op.stop();
    await origin?.stop();
  });

  /**
   * The default unknown-kid interval (30 s): a key rotated right after the first fetch is
   * accepted within 30 s of that fetch. It waits half a minute, so it runs in the background
   * from the suite's start (its own OP and gate), and its test awaits it.
   */
  async function rotate30Scenario() {
    const op = ops.rotate30;
    const own = await startGates(hostName, { originPort: origin.port, gates: [rotate30Gate] });
    try {
      const get = async (token) => {
        const r = await fetch(`${own.urls.rotate30}/api/items`, {
          headers: { authorization: `Bearer ${token}`, accept: "application/json" },
          redirect: "manual",
          signal: AbortSignal.timeout(10_000),
        });
        return { status: r.status, body: await r.text() };
      };
      const first = await get(await op.mint());
      assert.equal(first.status, 200, first.body);
      const firstFetch = op.log.find((e) => e.type === "jwks").at;
      await op.rotate("RS256", { dropOld: true });
      const rotated = await op.mint();
      const early = await get(rotated);
      assert.equal(early.status, 401, early.body);
      assert.equal(JSON.parse(early.body).reason, "unknown_kid");
      let accepted;
      while (Date.now() - firstFetch < 40_000) {
        const r = await get(rotated);
        if (r.status === 200) {
          accepted = Date.now();
          break;
        }
        assert.equal(JSON.parse(r.body).reason, "unknown_kid", r.body);
        await new Promise((res) => setTimeout(res, 500));
      }
      assert.ok(accepted, "the rotated key was not accepted within 40 s of the first fetch");
      assert.ok(accepted - firstFetch <= 32_000, `accepted ${accepted - firstFetch} ms after the first fetch`);
      const fetches = op.log.filter((e) => e.type === "jwks").map((e) => e.at - firstFetch);
      if (traits.vms === 1) {
        assert.equal(fetches.length, 2, `one early refetch, rate-limited: ${fetches}`);
        assert.ok(fetches[1] >= 29_000, `the refetch waited out the interval: ${fetches}`);
      } else {
        // Envoy: each VM fetches at start (within a few seconds), then the VMs that serve
        // requests refetch for the unknown kid once each, rate-limited: nothing in between
        const atStart = fetches.filter((ms) => ms < 5_000);
        const refetches = fetches.filter((ms) => ms >= 5_000);
        assert.ok(atStart.length >= 1 && atStart.length <= traits.vms, `fetches at start: ${fetches}`);
        assert.ok(refetches.length >= 1 && refetches.length <= traits.requestVms, `one early refetch per VM, rate-limited: ${fetches}`);
        assert.ok(refetches.every((ms) => ms >= 29_000), `the refetches waited out the interval: ${fetches}`);
      }
    } finally {
      await own.stop();
    }
  }

  /** The login start sent the browser to the provider's authorization endpoint of gate `name`. */
  function assertSentToProvider(name, start) {
    assert.equal(start?.status, 302, `login start: ${describeStep(start)}`);
    assert.ok(
      new URL(start.location, urls[name]).href.startsWith(`${ops[name].issuer}/authorize?`),
      `login start sends the browser to the provider's authorization endpoint: ${describeStep(start)}`,
    );
  }

  /** Asserts a successful login: session cookie, 302 to the return URL, /auth/me and the page. */
  async function assertLoggedIn(name, flow, { sub = "alice", kid } = {}) {
    const base = urls[name];
    const { start, authorize, callback, jar } = flow;
    assertSentToProvider(name, start);
    assert.equal(authorize?.status, 302, `OP authorize: ${describeStep(authorize)}`);
    assert.equal(ops[name].lastToken()?.status, 200, `the token endpoint: ${JSON.stringify(ops[name].lastToken())}\ncallback: ${describeStep(callback)}\n${gw.logs().slice(-3000)}`);
    assert.equal(callback?.status, 302, `callback: ${describeStep(callback)}\n${gw.logs().slice(-2000)}`);
    assert.equal(callback.location, RD, "back to the return URL");
    const session = callback.setCookies.find((c) => c.name === SESSION && !c.expired);
    assert.ok(session, `a session cookie: ${describeStep(callback)}`);
    assert.ok(session.attrs.httponly, "HttpOnly");
    assert.ok(!jar.names().some((n) => n.startsWith("edgegate_login_")), `attempt cookie cleared: ${jar.names()}`);

    const me = await jarGet(`${base}/auth/me`, jar, { accept: "application/json" });
    assert.equal(me.status, 200, `/auth/me: ${describeStep(me)}`);
    const who = JSON.parse(me.body);
    assert.equal(who.subject, sub);
    assert.equal(who.name, "Alice Example");
    assert.equal(who.email, "alice@example.com");
    assert.deepEqual(who.roles, ["staff"]);

    const page = await jarGet(`${base}${RD}`, jar);
    assert.equal(page.status, 200, `protected page: ${describeStep(page)}`);
    const seen = JSON.parse(page.body);
    assert.equal(seen.url, RD);
    assert.equal(seen.headers["x-edgegate-subject"], sub);
    assert.equal(seen.headers["x-edgegate-name"], "Alice Example");
    if (kid) {
      const header = JSON.parse(Buffer.from(ops[name].lastToken().idToken.split(".")[0], "base64url"));
      assert.equal(header.kid, kid, "the ID token was signed with the expected key");
    }
  }

  /**
   * Asserts a refused login. `reason`: the core's reason code(s) the refusal must name (the
   * worker's error page and JSON both carry it). `tokenIssued`: the OP's token endpoint answered
   * 200 in this flow (so the refusal is the RP's check of what it received).
   */
  async function assertRefused(name, flow, { reason, tokenIssued = true, tokensBefore } = {}) {
    const base = urls[name];
    const { start, callback, jar } = flow;
    const last = flow.callback ?? flow.authorize ?? start;
    const ctx = `start: ${describeStep(start)}\nauthorize: ${describeStep(flow.authorize)}\ncallback: ${describeStep(callback)}`;
    // a flow that went on from the start went to the provider (not, say, back to the gate)
    if (flow.authorize) assertSentToProvider(name, start);
    if (tokenIssued) {
      assert.equal(ops[name].lastToken()?.status, 200, `the OP issued tokens: ${JSON.stringify(ops[name].lastToken())}`);
      assert.ok(callback, `the flow reached the callback:\n${ctx}`);
    }
    if (tokensBefore !== undefined) {
      assert.equal(ops[name].count("token"), tokensBefore, `the token endpoint must not be reached:\n${ctx}`);
    }
    assert.ok(last.status >= 400 && last.status < 600, `refused with 4xx/5xx:\n${ctx}`);
    for (const step of [start, flow.callback].filter(Boolean)) {
      assert.ok(
        !step.setCookies.some((c) => c.name === SESSION && !c.expired),
        `no session cookie may be set:\n${ctx}`,
      );
    }
    assert.ok(!jar.has(SESSION), "no session in the jar");
    if (reason) {
      const reasons = [reason].flat();
      assert.ok(
        reasons.some((r) => last.body.includes(r)),
        `the refusal names ${reasons.join(" or ")}:\n${ctx}`,
      );
    }
    const me = await jarGet(`${base}/auth/me`, jar, { accept: "application/json" });
    assert.equal(me.status, 401, `/auth/me after a refused login: ${describeStep(me)}`);
    const page = await jarGet(`${base}${RD}`, jar);
    assert.equal(page.status, 302, `the protected page sends the browser to login: ${describeStep(page)}`);
    assert.match(page.location, /^\/auth\/login\?rd=/);
  }

  /** A refused misbehaviour on worker `name`, then a good login on the same worker. */
  async function refusedThenRecovered(name, knobs, expect = {}, options = {}) {
    const op = ops[name];
    op.misbehave(knobs);
    const tokensBefore = op.count("token");
    try {
      const flow = await driveLogin(urls[name], { rd: RD, ...options });
      await assertRefused(name, flow, {
        ...expect,
        tokensBefore: expect.tokenIssued === false ? tokensBefore : undefined,
      });
    } finally {
      op.misbehave();
    }
    await assertLoggedIn(name, await driveLogin(urls[name], { rd: RD }));
  }

  /** `refusedThenRecovered` for a refusal before the code exchange: the token endpoint is not
   * reached. */
  async function refusedBeforeTheCodeExchange(name, knobs, reason, options = {}) {
    await refusedThenRecovered(name, knobs, { reason, tokenIssued: false }, options);
  }

  /** A tolerated misbehaviour on worker `name`: the login still succeeds. `check(flow)` looks at
   * the flow before the login is checked. */
  async function loggedInDespite(name, knobs, check = () => {}) {
    ops[name].misbehave(knobs);
    try {
      const flow = await driveLogin(urls[name], { rd: RD });
      assertSentToProvider(name, flow.start);
      check(flow);
      await assertLoggedIn(name, flow);
    } finally {
      ops[name].misbehave();
    }
  }

  /** The current time in seconds, for claims that must be relative to when a test runs. */
  const nowSeconds = () => Math.floor(Date.now() / 1000);

  /**
   * One test per row `[title, knobs, reason, worker = "rs"]`: the OP of `worker` misbehaves as
   * `knobs` says (a function of the current time in seconds when the row needs it), the login is
   * refused naming `reason`, and a good login works after it.
   */
  function refusalTests(rows) {
    for (const [title, knobs, reason, name = "rs"] of rows) {
      test(title, async () => {
        const misbehaviour = typeof knobs === "function" ? knobs(nowSeconds()) : knobs;
        await refusedThenRecovered(name, misbehaviour, { reason });
      });
    }
  }

  describe("return URLs: the shared open-redirect corpus", () => {
    test("every line, as written and once unescaped, is refused as rd before anything is set", async () => {
      const lines = readFileSync(CORPUS, "utf8").split("\n").filter((l) => l.trim() !== "");
      assert.ok(lines.length > 500, `the corpus has ${lines.length} lines: is ../shared linked?`);
      const authorizeBefore = ops.redirects.count("authorize");
      const accepted = [];
      let checked = 0;
      for (const line of lines) {
        for (const rd of new Set([line, queryUnescape(line)])) {
          checked++;
          const res = await fetch(`${urls.redirects}/auth/login?rd=${encodeURIComponent(rd)}`, {
            headers: { accept: "application/json" },
            redirect: "manual",
          });
          const body = await res.text();
          if (res.status !== 400 || !body.includes("unsafe_redirect") || res.headers.getSetCookie().length) {
            accepted.push(`${JSON.stringify(rd)} -> ${res.status} ${res.headers.get("location") ?? body.slice(0, 80)}`);
          }
        }
      }
      assert.deepEqual(accepted, [], `${accepted.length} of ${checked} return URLs were not refused`);
      assert.equal(ops.redirects.count("authorize"), authorizeBefore, "no login reached the provider");
      // The control: an allowed host and a relative path do start a login, so the refusals above
      // are the redirect policy's and not a broken login route.
      for (const rd of ["https://foo.bar/ok", "/app/page"]) {
        const flow = await driveLogin(urls.redirects, { rd });
        assert.equal(flow.start.status, 302, `${rd}: ${describeStep(flow.start)}`);
        assert.ok(flow.start.location.startsWith(ops.redirects.issuer), `${rd}: to the provider`);
      }
    });
  });

  describe("login endpoints at configured paths", () => {
    test("login, callback and me outside /auth/ are served as login routes, not guarded", async () => {
      const base = urls.paths;
      const page = await jarGet(`${base}${RD}`, new Jar());
      assert.equal(page.status, 302, describeStep(page));
      assert.match(page.location, /^\/sso\/login\?rd=/);
      const flow = await driveLogin(base, { rd: RD, loginPath: "/sso/login" });
      assert.equal(flow.start.status, 302, describeStep(flow.start));
      assert.ok(flow.start.location.startsWith(ops.paths.issuer), `to the provider: ${flow.start.location}`);
      assert.equal(flow.callback?.status, 302, describeStep(flow.callback));
      assert.equal(flow.callback.location, RD);
      assert.ok(flow.jar.has(SESSION), "session set by the callback at /sso/cb");
      const me = await jarGet(`${base}/sso/me`, flow.jar, { accept: "application/json" });
      assert.equal(me.status, 200, describeStep(me));
      assert.equal(JSON.parse(me.body).subject, "alice");
      const logout = await jarGet(`${base}/sso/logout`, flow.jar);
      assert.equal(logout.status, 302, describeStep(logout));
      assert.ok(!flow.jar.has(SESSION), "logout at /sso/logout cleared the session");
    });
  });

  describe("basic plan: the well-behaved provider (oidcc-client-test)", () => {
    test("RS256, client_secret_basic: logged in, /auth/me and the page show the user", async () => {
      await assertLoggedIn("rs", await driveLogin(urls.rs, { rd: RD }), { kid: ops.rs.signingKid });
      const t = ops.rs.lastToken();
      assert.equal(t.authMethod, "client_secret_basic");
      const authz = ops.rs.log.filter((e) => e.type === "authorize").at(-1).query;
      assert.equal(authz.code_challenge_method, "S256");
      assert.ok(authz.scope.split(" ").includes("openid"));
    });

    test("ES256 (oidcc-client-test with ES256)", async () => {
      await assertLoggedIn("es", await driveLogin(urls.es, { rd: RD }), { kid: ops.es.signingKid });
    });

    const hsSecretFrom = traits.bindings ? "OIDC_CLIENT_SECRET" : "the config (Envoy has no bindings)";
    test(`HS256 keyed with the client secret, client_secret_post, secret from ${hsSecretFrom}`, async () => {
      await assertLoggedIn("hs", await driveLogin(urls.hs, { rd: RD }));
      assert.equal(ops.hs.lastToken().authMethod, "client_secret_post");
    });

    test("RFC 9207: the right `iss` in the authorization response is accepted", async () => {
      await loggedInDespite("rs", { authorizationIss: "send" }, (flow) => {
        assert.equal(new URL(flow.authorize.location).searchParams.get("iss"), ops.rs.issuer);
      });
    });

    test("two logins at once (two attempt cookies in one browser) both succeed", async () => {
      const jar = new Jar();
      const a = await jarGet(`${urls.rs}/auth/login?rd=${encodeURIComponent(RD)}`, jar);
      const b = await jarGet(`${urls.rs}/auth/login?rd=${encodeURIComponent(RD)}`, jar);
      assertSentToProvider("rs", a);
      assertSentToProvider("rs", b);
      assert.equal(jar.names().filter((n) => n.startsWith("edgegate_login_")).length, 2);
      for (const start of [b, a]) {
        const authz = await jarGet(start.location, null);
        const cb = await jarGet(authz.location, jar);
        assert.equal(cb.status, 302, describeStep(cb));
        assert.equal(cb.location, RD);
      }
      assert.ok(jar.has(SESSION));
    });
  });

  describe("basic plan: ID token signature", () => {
    // [test, how the OP gets the signature wrong, the reason the refusal names, the worker]
    refusalTests([
      ["oidcc-client-test-invalid-sig-rs256: bad RS256 signature is refused", { signature: "bad" }, "bad_signature"],
      ["oidcc-client-test-invalid-sig-es256: bad ES256 signature is refused", { signature: "bad" }, "bad_signature", "es"],
      [
        "oidcc-client-test-invalid-sig-hs256: HS256 with another secret is refused",
        () => ({ hsSecret: randomBytes(32).toString("base64url") }),
        "bad_signature",
        "hs",
      ],
      ["HS256 with a corrupted signature is refused", { signature: "bad" }, "bad_signature", "hs"],
      ["oidcc-client-test-idtoken-sig-none: alg none is refused", { signature: "none" }, "alg_none"],
      [
        "algorithm confusion: HS256 keyed with the client secret at an RS256-only client is refused",
        { alg: "HS256" },
        "alg_not_allowed",
      ],
      ["a key offered in the token's own header (jwk) is not trusted", { embedJwk: true }, "untrusted_header_key"],
      ["a kid the provider's JWKS does not have (even after a refetch) is refused", { kid: "nobody" }, "unknown_kid"],
    ]);

    test("oidcc-client-test-kid-absent-single-jwks: no kid, one key: accepted", async () => {
      await loggedInDespite("single", { omitKid: true }, () => {
        const header = JSON.parse(Buffer.from(ops.single.lastToken().idToken.split(".")[0], "base64url"));
        assert.equal(header.kid, undefined);
      });
    });

    test("oidcc-client-test-kid-absent-multiple-jwks: no kid, several keys: refused", async () => {
      assert.equal(ops.multi.publishedKids.length, 2);
      await refusedThenRecovered("multi", { omitKid: true }, { reason: "no_matching_key" });
    });
  });

  describe("basic plan: ID token claims (OIDC Core 3.1.3.7)", () => {
    // [test, the claim the OP gets wrong, the reason the refusal names]
    refusalTests([
      ["oidcc-client-test-invalid-iss: wrong iss is refused", { claims: { iss: "https://evil.example" } }, "unknown_issuer"],
      [
        "iss with a trailing slash is not the issuer (exact match)",
        () => ({ claims: { iss: `${ops.rs.issuer}/` } }),
        "unknown_issuer",
      ],
      ["missing iss is refused", { omit: ["iss"] }, "missing_claim"],
      ["oidcc-client-test-invalid-aud: wrong aud is refused", { claims: { aud: "someone-else" } }, "wrong_audience"],
      ["oidcc-client-test-missing-aud: missing aud is refused", { omit: ["aud"] }, "missing_claim"],
      [
        "several audiences with azp of another client are refused",
        { claims: { aud: ["edge", "other"], azp: "other" } },
        "wrong_audience",
      ],
      ["several audiences without azp are refused", { claims: { aud: ["edge", "other"] } }, "wrong_audience"],
      ["azp of another client with a single aud is refused", { claims: { azp: "other" } }, "wrong_audience"],
      ["oidcc-client-test-missing-sub: missing sub is refused", { omit: ["sub"] }, "missing_claim"],
      ["an empty sub is refused", { claims: { sub: "" } }, "missing_claim"],
      ["oidcc-client-test-missing-iat: missing iat is refused", { omit: ["iat"] }, "missing_claim"],
      ["iat in the future is refused", (t) => ({ claims: { iat: t + 3600, exp: t + 7200 } }), "issued_in_future"],
      [
        "an ID token issued long ago (still unexpired) is refused for a fresh login",
        (t) => ({ claims: { iat: t - 7200, exp: t + 300 } }),
        "token_expired",
      ],
      ["an expired ID token is refused", { expired: true }, "token_expired"],
      // One NumericDate parser for access and ID tokens: a non-number, or a date beyond 2^53, is malformed.
      ["exp as a string is refused", (t) => ({ claims: { exp: String(t + 300) } }), "malformed_claims"],
      ["exp beyond 2^53 is refused", { claims: { exp: 2 ** 53 + 2 } }, "malformed_claims"],
      [
        "a fractional exp is read with its fraction (not as a missing exp)",
        (t) => ({ claims: { iat: t - 3, exp: t - 61.5 } }),
        "token_expired",
      ],
      ["missing exp is refused", { omit: ["exp"] }, "missing_claim"],
      [
        "oidcc-client-test-nonce-invalid: wrong nonce is refused",
        { claims: { nonce: "not-the-nonce-of-this-login" } },
        "login_mismatch",
      ],
      ["missing nonce is refused", { omit: ["nonce"] }, "missing_claim"],
      ["a bad at_hash is refused", { atHash: "bad" }, "login_mismatch"],
    ]);

    test("several audiences with azp = client_id are accepted", async () => {
      await loggedInDespite("rs", { claims: { aud: ["edge", "other"], azp: "edge" } });
    });

    test("no at_hash (optional in the code flow) is accepted", async () => {
      await loggedInDespite("rs", { atHash: "omit" });
    });
  });

  describe("basic plan: the authorization response and the token endpoint", () => {
    test("RFC 9207: a wrong iss in the authorization response is refused before the code exchange", async () => {
      await refusedBeforeTheCodeExchange("rs", { authorizationIss: "https://evil.example" }, "unknown_issuer");
    });

    test("a state that is not the attempt's is refused before the code exchange", async () => {
      await refusedBeforeTheCodeExchange("rs", {}, "login_mismatch", {
        tamperCallback: (u) => u.searchParams.set("state", randomBytes(16).toString("base64url")),
      });
    });

    test("a callback without the attempt cookie (another browser) is refused before the code exchange", async () => {
      const jar = new Jar();
      const start = await jarGet(`${urls.rs}/auth/login?rd=${encodeURIComponent(RD)}`, jar);
      assertSentToProvider("rs", start);
      const authz = await jarGet(start.location, null);
      const tokensBefore = ops.rs.count("token");
      const stranger = new Jar();
      const cb = await jarGet(authz.location, stranger);
      await assertRefused("rs", { start, authorize: authz, callback: cb, jar: stranger }, {
        reason: "login_mismatch",
        tokenIssued: false,
        tokensBefore,
      });
      // the real browser still completes its login with the same callback
      const own = await jarGet(authz.location, jar);
      assert.equal(own.status, 302, describeStep(own));
      assert.ok(jar.has(SESSION));
    });

    test("the provider's error in the callback is refused", async () => {
      await refusedBeforeTheCodeExchange("rs", {}, "login_mismatch", {
        tamperCallback: (u) => {
          u.searchParams.delete("code");
          u.searchParams.set("error", "access_denied");
        },
      });
    });

    test("a token endpoint that refuses the code (invalid_grant) ends in a refused login", async () => {
      const op = ops.rs;
      op.misbehave({ tokenError: { status: 400, error: "invalid_grant" } });
      try {
        const flow = await driveLogin(urls.rs, { rd: RD });
        assertSentToProvider("rs", flow.start);
        assert.equal(op.lastToken()?.status, 400);
        await assertRefused("rs", flow, { reason: "login_mismatch", tokenIssued: false });
      } finally {
        op.misbehave();
      }
    });

    test("a token response without an id_token is refused", async () => {
      await refusedThenRecovered("rs", { noIdToken: true }, { reason: "login_mismatch" });
    });

    test("a token response that is not JSON is refused", async () => {
      // (the worker answers 503 keys_unavailable: the provider failed, not the user)
      await refusedThenRecovered("rs", { tokenBody: "<html>oops</html>" });
    });

    test("a token response larger than the worker reads is refused", async () => {
      const big = JSON.stringify({ access_token: "x", token_type: "Bearer", id_token: "a".repeat(1 << 20) });
      await refusedThenRecovered("rs", { tokenBody: big });
    });

    test("an oversized ID token is refused", async () => {
      await refusedThenRecovered("rs", { claims: { padding: "p".repeat(40_000) } });
    });

    test("replaying a used callback is refused (attempt cookie gone, code single-use)", async () => {
      const flow = await driveLogin(urls.rs, { rd: RD });
      await assertLoggedIn("rs", flow);
      const replayJar = new Jar();
      // the attacker replays the callback URL with the attempt cookie the browser sent
      const name = flow.start.setCookies.find((c) => c.name.startsWith("edgegate_login_"));
      replayJar.cookies.set(name.name, name.value);
      const again = await jarGet(flow.authorize.location, replayJar);
      assert.ok(again.status >= 400, describeStep(again));
      assert.ok(!again.setCookies.some((c) => c.name === SESSION && !c.expired), describeStep(again));
      assert.equal(ops.rs.lastToken().status, 400, "the OP refused the reused code");
    });
  });

  describe("concurrency", () => {
    // The worker: 4 at once, one isolate, at most 2 fetches. Envoy: a VM per worker thread,
    // each refetching on its own (rate-limited), so 2 per request-serving VM, and twice as many
    // requests as that bound, so that a fetch per request still fails.
    const MAX_REFETCHES = 2 * traits.requestVms;
    const PARALLEL = traits.kind === "worker" ? 4 : 2 * MAX_REFETCHES;
    // Runs `parallel` (the PARALLEL `what`) while `op` serves its key set slowly, then checks
    // that they fetched it at least once and at most MAX_REFETCHES times.
    async function withSlowRefetch(op, what, parallel) {
      const fetchesBefore = op.count("jwks");
      op.misbehave({ jwksDelayMs: 400 });
      try {
        await parallel();
        const fetches = op.count("jwks") - fetchesBefore;
        assert.ok(
          fetches >= 1 && fetches <= MAX_REFETCHES,
          `the key set was fetched ${fetches} times for ${PARALLEL} ${what} (at most ${MAX_REFETCHES})`,
        );
      } finally {
        op.misbehave();
      }
    }

    test("parallel callbacks that all need a rotated key (slow JWKS refetch) all log in", async () => {
      const op = ops.fresh;
      // the host has the current key set (it fetches it early); the OP rotates, old key gone
      await assertLoggedIn("fresh", await driveLogin(urls.fresh, { rd: RD }));
      await op.rotate("RS256", { dropOld: true });
      await new Promise((r) => setTimeout(r, 1100)); // unknown_kid_min_interval_seconds: 1
      await withSlowRefetch(op, "callbacks", async () => {
        const pending = [];
        for (let i = 0; i < PARALLEL; i++) {
          const jar = new Jar();
          const start = await jarGet(`${urls.fresh}/auth/login?rd=${encodeURIComponent(RD)}`, jar);
          assertSentToProvider("fresh", start);
          const authorize = await jarGet(start.location, null);
          pending.push({ jar, start, authorize });
        }
        const callbacks = await Promise.all(pending.map((p) => jarGet(p.authorize.location, p.jar)));
        for (const [i, cb] of callbacks.entries()) {
          assert.equal(cb.status, 302, `callback ${i}: ${describeStep(cb)}`);
          assert.equal(cb.location, RD);
          assert.ok(pending[i].jar.has(SESSION));
        }
      });
    });

    test("parallel bearer requests that all need a rotated key (slow JWKS refetch) are all allowed", async () => {
      const op = ops.fresh;
      await new Promise((r) => setTimeout(r, 1100)); // past the last refetch's rate limit
      await op.rotate("RS256", { dropOld: true });
      const tokens = await Promise.all(Array.from({ length: PARALLEL }, () => op.mint()));
      await withSlowRefetch(op, "requests", async () => {
        const answers = await Promise.all(
          tokens.map((t) =>
            fetch(`${urls.fresh}/api/items`, {
              headers: { authorization: `Bearer ${t}`, accept: "application/json" },
              redirect: "manual",
              signal: AbortSignal.timeout(10_000),
            }).then(async (r) => ({ status: r.status, body: await r.text() })),
          ),
        );
        for (const [i, a] of answers.entries()) assert.equal(a.status, 200, `request ${i}: ${a.status} ${a.body}`);
      });
    });
  });

  describe("RFC 9207 and one discovery document per isolate", () => {
    test("a provider that advertises RFC 9207 and omits `iss` is refused before the code exchange", async () => {
      // (then a good login: the OP sends `iss` again, as it advertises)
      await refusedBeforeTheCodeExchange("rfc9207", { authorizationIss: "omit" }, "login_mismatch");
    });

    test("the login flow and the key set share one discovery document (fetched once)", async () => {
      // Two logins (start, callback with ID-token check against the key set), a bearer request.
      const op = ops.rfc9207;
      await assertLoggedIn("rfc9207", await driveLogin(urls.rfc9207, { rd: RD }));
      const api = await fetch(`${urls.rfc9207}/api/items`, {
        headers: { authorization: `Bearer ${await op.mint()}`, accept: "application/json" },
        redirect: "manual",
      });
      assert.equal(api.status, 200, await api.text());
      if (traits.vms === 1) {
        assert.equal(op.count("discovery"), 1, "the discovery document was fetched once for login and keys");
      } else {
        // Envoy: each VM fetches it once (for its key set, at start); the login adds none
        const seen = op.count("discovery");
        assert.ok(seen >= 1 && seen <= traits.vms, `the discovery document was fetched ${seen} times by ${traits.vms} VMs`);
        await assertLoggedIn("rfc9207", await driveLogin(urls.rfc9207, { rd: RD }));
        assert.equal(op.count("discovery"), seen, "a second login fetched the discovery document again");
      }
      assert.ok(op.count("jwks") >= 1);
    });
  });

  describe("config plan: discovery and keys", () => {
    test("oidcc-client-test-discovery-issuer-mismatch: refused, the browser never reaches the OP", async () => {
      const flow = await driveLogin(urls.mismatch, { rd: RD });
      assert.ok(ops.mismatch.count("discovery") >= 1, "the gate asked for the discovery document");
      assert.equal(ops.mismatch.count("authorize"), 0, `sent to the OP anyway: ${describeStep(flow.start)}`);
      // the IdP (or the configured issuer) is wrong, not the user: a 502 that names it
      assert.equal(flow.start.status, 502, `a provider mismatch is the gateway's upstream failing: ${describeStep(flow.start)}`);
      await assertRefused("mismatch", flow, { reason: "provider_mismatch", tokenIssued: false, tokensBefore: 0 });
    });

    test("oidcc-client-test-signing-key-rotation: a new kid in the JWKS after start is fetched and accepted", async () => {
      const op = ops.rotate;
      const first = op.signingKid;
      await assertLoggedIn("rotate", await driveLogin(urls.rotate, { rd: RD }), { kid: first });
      const jwksBefore = op.count("jwks");
      const second = await op.rotate("RS256");
      await new Promise((r) => setTimeout(r, 1100)); // unknown_kid_min_interval_seconds: 1
      await assertLoggedIn("rotate", await driveLogin(urls.rotate, { rd: RD }), { kid: second });
      assert.ok(op.count("jwks") > jwksBefore, "the worker refetched the JWKS for the new kid");
      // and once more, with the old keys dropped from the JWKS
      await new Promise((r) => setTimeout(r, 1100));
      const third = await op.rotate("RS256", { dropOld: true });
      await new Promise((r) => setTimeout(r, 1100));
      await assertLoggedIn("rotate", await driveLogin(urls.rotate, { rd: RD }), { kid: third });
    });
  });

  describe("refresh: the ID token of a refresh grant is checked like the first (OIDC Core 12.2)", () => {
    // One login per case, all at once (the OP misbehaves per refresh token), then each session is
    // used in its last quarter, which makes the worker renew it with the refresh token.
    const cases = [
      { name: "a well-behaved refresh renews the session", knobs: { refreshToken: true }, renewed: true },
      { name: "no ID token in the refresh response keeps the identity", knobs: { noIdToken: true }, renewed: true },
      { name: "a refreshed ID token for another subject ends the session", knobs: { claims: { sub: "mallory" } } },
      { name: "a refreshed ID token with a bad signature ends the session", knobs: { signature: "bad" } },
      { name: "a refreshed ID token with alg none ends the session", knobs: { signature: "none" } },
      { name: "a refreshed ID token for another audience ends the session", knobs: { claims: { aud: "other" } } },
      { name: "a refreshed ID token from another issuer ends the session", knobs: { claims: { iss: "https://evil.example" } } },
      { name: "an expired refreshed ID token ends the session", knobs: { expired: true } },
      { name: "a refused refresh (invalid_grant) ends the session", knobs: { tokenError: { status: 400, error: "invalid_grant" } } },
    ];
    const logins = new Map();

    before(async () => {
      const op = ops.refresh;
      op.misbehave({ refreshToken: true });
      for (const c of cases) {
        const flow = await driveLogin(urls.refresh, { rd: RD });
        assertSentToProvider("refresh", flow.start);
        const issued = op.lastToken();
        assert.ok(issued.refreshToken, "the OP issued a refresh token");
        assert.ok(flow.jar.has(`${SESSION}_refresh`), `refresh cookie: ${flow.jar.names()}`);
        op.misbehaveOnRefresh(issued.refreshToken, { refreshToken: true, ...c.knobs });
        logins.set(c.name, { flow, refreshToken: issued.refreshToken });
      }
      op.misbehave();
      // into the last quarter of every session (whole seconds: 9 s after the last login + 1)
      await new Promise((r) => setTimeout(r, (REFRESH_SESSION_SECONDS * 3) / 4 * 1000 + 1000));
    });

    for (const c of cases) {
      test(c.name, async () => {
        const op = ops.refresh;
        const { flow, refreshToken } = logins.get(c.name);
        const before = flow.jar.cookies.get(SESSION);
        const page = await jarGet(`${urls.refresh}${RD}`, flow.jar);
        const grants = op.log.filter((e) => e.type === "token" && e.presented === refreshToken);
        assert.equal(grants.length, 1, "the worker used this session's refresh token once");
        assert.equal(grants[0].status, c.knobs.tokenError ? 400 : 200, JSON.stringify(grants[0]));
        if (c.renewed) {
          assert.equal(page.status, 200, describeStep(page));
          const seen = JSON.parse(page.body);
          assert.equal(seen.headers["x-edgegate-subject"], "alice");
          assert.ok(flow.jar.has(SESSION), "a session");
          assert.notEqual(flow.jar.cookies.get(SESSION), before, "a renewed session cookie");
          const me = await jarGet(`${urls.refresh}/auth/me`, flow.jar, { accept: "application/json" });
          assert.equal(me.status, 200, describeStep(me));
          assert.equal(JSON.parse(me.body).subject, "alice");
        } else {
          assert.equal(page.status, 302, `the session ended, back to login: ${describeStep(page)}`);
          assert.match(page.location, /^\/auth\/login\?rd=/);
          assert.ok(!page.body.includes("mallory"));
          assert.ok(!flow.jar.has(SESSION), `session cookie deleted: ${describeStep(page)}`);
          assert.ok(!flow.jar.has(`${SESSION}_refresh`), `refresh cookie deleted: ${describeStep(page)}`);
          const me = await jarGet(`${urls.refresh}/auth/me`, flow.jar, { accept: "application/json" });
          assert.equal(me.status, 401, describeStep(me));
        }
      });
    }
  });

  // Last: its scenario has been running in the background since the suite started.
  describe("key rotation with the default unknown-kid interval", () => {
    test("a key rotated right after the first fetch is accepted within 30 s of that fetch, not 60", async () => {
      const outcome = await rotate30Run;
      if (outcome.err) throw outcome.err;
    });
  });
}
