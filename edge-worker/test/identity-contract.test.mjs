// The identity contract, tried as an attacker would, against the worker in real workerd (issue 11).
// The same classes as envoy/tests/test_identity_contract.py, judged by what the echoing origin
// actually received (raw header names, the CGI environ keys they merge into, trailers).
// Requests go over raw sockets where fetch would normalise them (header case, `_`, repeats,
// Host, CONNECT). Tokens are minted with npm `jose`, API keys by a JS reimplementation of the
// documented format: independent of edgegate's Rust code.
//
// Request trailers: workers have no API for them (a Request exposes none), so there is nothing
// for the worker to strip; one test checks that trailers sent to workerd never reach the origin.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { SignJWT } from "jose";
import { startOrigin, startWorkerd } from "./harness.mjs";
import { mintApiKey } from "./apikeys.mjs";

// --- credentials ---------------------------------------------------------------------------------
const keyHash = (k) => `sha256:${createHash("sha256").update(k).digest("hex")}`;
const secret = () => randomBytes(32).toString("base64url");

const AUD = "contract";
const LOCAL_ISSUER = "https://local.test";
const FWD_ISSUER = "https://fwd.test";
const HS = secret();
const FWD = secret();
const SESSION = secret();
const STAFF_KEY = mintApiKey();
const ADMIN_KEY = mintApiKey();
const now = () => Math.floor(Date.now() / 1000);

async function jwt({ roles = ["staff"], sub = "staff-user", issuer = LOCAL_ISSUER } = {}) {
  const [key, kid] = issuer === FWD_ISSUER ? [FWD, "f1"] : [HS, "hs1"];
  const t = now();
  return new SignJWT({ iss: issuer, aud: AUD, sub, iat: t, exp: t + 300, roles })
    .setProtectedHeader({ alg: "HS256", kid, typ: "JWT" })
    .sign(Buffer.from(key, "base64url"));
}

// A session cookie value in edgegate's documented format (HS256 JWS, aud edgegate-session).
async function session({ sub = "sess-user", roles = ["staff"] } = {}) {
  const t = now();
  return new SignJWT({ aud: "edgegate-session", sub, rl: roles, pv: "magic_link", cr: "magic_link", iat: t, exp: t + 600 })
    .setProtectedHeader({ alg: "HS256", kid: "s1", typ: "JWT" })
    .sign(Buffer.from(SESSION, "base64url"));
}

// --- configs (the same as the Envoy suite's) ----------------------------------------------------
const provider = (name, issuer, key, kid, extra = {}) => ({
  name,
  issuer,
  audiences: [AUD],
  algorithms: ["HS256"],
  shared_secrets: [{ kid, secret: key }],
  claims: { roles: ["roles"] },
  ...extra,
});

const RULES = [
  { name: "public", match: { path: { prefix: "/public" } }, require: { public: true } },
  {
    name: "delete-needs-admin",
    match: { path: { prefix: "/items" }, methods: ["DELETE"] },
    credentials: ["session", "jwt", "api_key"],
    require: { roles_any: ["admin"] },
  },
  { name: "app", match: { path: { prefix: "/" } }, credentials: ["session", "jwt", "api_key"] },
];

function mainConfig(top = {}) {
  return {
    realm: "contract",
    jwt: {
      providers: [provider("local", LOCAL_ISSUER, HS, "hs1")],
      from: { header: "x-jwt-assertion", cookie: "access_token" },
    },
    api_keys: {
      header: "x-api-key",
      keys: [
        { name: "staff-key", hash: keyHash(STAFF_KEY), roles: ["staff"] },
        { name: "admin-key", hash: keyHash(ADMIN_KEY), roles: ["admin"] },
      ],
    },
    session: { keys: [{ kid: "s1", secret: SESSION }] },
    rules: RULES,
    ...top,
  };
}

function forwardConfig() {
  const cfg = mainConfig();
  cfg.jwt.providers.push(provider("fwd", FWD_ISSUER, FWD, "f1", { forward: true }));
  cfg.api_keys.forward = true;
  return cfg;
}

const DEV = { dev_mode: { enabled: true, identity: { subject: "dev-alice", roles: ["admin"] } } };
const DEV_REFUSED = {
  devkeys: { ...DEV, api_keys: { keys: [{ name: "k", hash: keyHash(mintApiKey()) }] } },
  devmagic: { ...DEV, magic_links: { keys: [{ kid: "m", secret: secret() }] } },
  devissuer: { ...DEV, jwt: { providers: [provider("p", "https://idp.example.com", secret(), "k")] } },
};

// --- raw HTTP/1.1 over a socket ------------------------------------------------------------------
function parseResponse(buf) {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no response head: ${buf.subarray(0, 200)}`);
  const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
  const status = Number(lines[0].split(" ")[1]);
  const headers = {};
  for (const ln of lines.slice(1)) {
    const i = ln.indexOf(":");
    headers[ln.slice(0, i).trim().toLowerCase()] = ln.slice(i + 1).trim();
  }
  let rest = buf.subarray(end + 4);
  let body = rest;
  if ((headers["transfer-encoding"] ?? "").includes("chunked")) {
    const parts = [];
    for (;;) {
      const nl = rest.indexOf("\r\n");
      const size = parseInt(rest.subarray(0, nl).toString().split(";")[0], 16);
      if (!size) break;
      parts.push(rest.subarray(nl + 2, nl + 2 + size));
      rest = rest.subarray(nl + 2 + size + 2);
    }
    body = Buffer.concat(parts);
  } else if (headers["content-length"] !== undefined) {
    body = rest.subarray(0, Number(headers["content-length"]));
  }
  const text = body.toString("utf8");
  return { status, headers, text, json: () => JSON.parse(text) };
}

/**
 * One request with the head exactly as given: `headers` is a list of [name, value] (any case,
 * `_`, repeats). `trailers` sends the body chunked with those trailer fields.
 */
function raw(base, method, target, headers = [], { host = "127.0.0.1", body = "", trailers } = {}) {
  const { port } = new URL(base);
  const lines = [`${method} ${target} HTTP/1.1`, `host: ${host}`, "connection: close"];
  for (const [n, v] of headers) lines.push(`${n}: ${v}`);
  let payload = Buffer.from(body);
  if (trailers) {
    lines.push("transfer-encoding: chunked", "te: trailers");
    const chunk = payload.length ? `${payload.length.toString(16)}\r\n${body}\r\n` : "";
    payload = Buffer.from(`${chunk}0\r\n${trailers.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`);
  } else if (payload.length || ["POST", "PUT", "PATCH"].includes(method)) {
    lines.push(`content-length: ${payload.length}`);
  }
  const data = Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), payload]);
  return new Promise((resolve, reject) => {
    const chunks = [];
    const sock = connect(Number(port), "127.0.0.1");
    sock.setTimeout(10_000, () => sock.destroy(new Error("raw request timed out")));
    sock.on("connect", () => sock.end(data));
    sock.on("data", (c) => chunks.push(c));
    sock.on("error", (e) => (chunks.length ? null : reject(e)));
    sock.on("close", () => {
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    });
  });
}

// --- the setup: one workerd, one worker per config ------------------------------------------------
let origin;
let wd;
let main, fwd, reject, dev, narrow;

before(async () => {
  origin = await startOrigin();
  wd = await startWorkerd({
    originPort: origin.port,
    workers: [
      { name: "main", config: mainConfig(), origin: "binding" },
      { name: "fwd", config: forwardConfig(), origin: "binding" },
      { name: "reject", config: mainConfig({ method_override: "reject" }), origin: "binding" },
      { name: "dev", config: DEV, origin: "binding" },
      // Only the subject goes upstream (`identity_headers.send`), under a renamed email header.
      {
        name: "narrow",
        config: mainConfig({ identity_headers: { send: ["subject"], email: "x-user-mail" } }),
        origin: "binding",
      },
      ...Object.entries(DEV_REFUSED).map(([name, config]) => ({ name, config, origin: "binding" })),
    ],
  });
  ({ main, fwd, reject, dev, narrow } = wd.urls);
});

after(async () => {
  await wd?.stop();
  await origin?.stop();
});

let counter = 0;
const unique = (prefix) => `${prefix}/${process.pid}-${++counter}-${randomBytes(4).toString("hex")}`;
const SPOOF = "spoofed-admin";
const IDENTITY = [
  "x-edgegate-subject", "x-edgegate-email", "x-edgegate-name", "x-edgegate-roles", "x-edgegate-permissions",
  "x-edgegate-credential", "x-edgegate-provider", "x-edgegate-key-name", "x-edgegate-expires", "x-edgegate-dev-mode",
];
const norm = (n) => n.toLowerCase().replaceAll("_", "-");
const isIdentity = (n) => IDENTITY.includes(norm(n));

function echoed(res) {
  assert.equal(res.status, 200, `expected the origin's 200, got ${res.status}: ${res.text.slice(0, 400)}`);
  assert.equal(res.headers["x-origin"], "echo");
  return res.json();
}

function smuggled(echo) {
  return [
    ...echo.rawHeaders.filter(([n, v]) => isIdentity(n) && v.includes(SPOOF)),
    ...Object.entries(echo.environ).filter(([k, v]) => k.startsWith("HTTP_X_EDGEGATE_") && v.includes(SPOOF)),
    ...echo.trailers.filter(([n]) => isIdentity(n)),
  ];
}

function denied(res, path, status, reason) {
  assert.equal(res.status, status, `${path}: ${res.status} ${res.text.slice(0, 400)}`);
  assert.equal(res.json().reason, reason);
  assert.ok(!origin.seen(path), `${path} reached the origin`);
}

const bearer = (t) => ["authorization", `Bearer ${t}`];
const cookiesOf = (echo) => echo.rawHeaders.filter(([n]) => n.toLowerCase() === "cookie").map(([, v]) => v);

// === 1. identity headers in every spelling =======================================================
const SPELLINGS = [
  "x-edgegate-roles", // the exact name: removed today
  "X-EDGEGATE-ROLES", // upper case, same name: removed today
  "x_edgegate_roles",
  "X_EDGEGATE_ROLES",
  "x-edgegate_credential",
  "X_Edgegate-Subject",
  "x_edgegate_dev_mode",
];

describe("identity headers in every spelling", () => {
  for (const name of SPELLINGS) {
    test(`${name} on a public route`, async () => {
      const echo = echoed(await raw(main, "GET", unique("/public/spell"), [[name, SPOOF]]));
      assert.deepEqual(smuggled(echo), []);
    });

    test(`${name} next to a real identity`, async () => {
      const echo = echoed(await raw(main, "GET", unique("/app/spell"), [bearer(await jwt()), [name, SPOOF]]));
      assert.deepEqual(smuggled(echo), []);
      if (norm(name) === "x-edgegate-roles") {
        // the app reads exactly edgegate's value, under every key a CGI app may look at
        assert.equal(echo.environ.HTTP_X_EDGEGATE_ROLES, "staff");
      }
    });
  }

  test("every spelling at once, with repeats", async () => {
    const headers = [...SPELLINGS.map((n) => [n, SPOOF]), ["X_EDGEGATE_ROLES", `${SPOOF}2`], ["x-edgegate_email", SPOOF]];
    const echo = echoed(await raw(main, "GET", unique("/app/mixed"), [bearer(await jwt()), ...headers]));
    assert.deepEqual(smuggled(echo), []);
    assert.equal(echo.environ.HTTP_X_EDGEGATE_ROLES, "staff");
  });
});

describe("identity_headers.send", () => {
  // The Envoy suite's test_headers_left_out_of_send_are_not_sent_and_client_copies_are_still_removed.
  for (const kind of ["bearer JWT", "session cookie"]) {
    test(`only the subject goes upstream; client copies of every identity header are removed (${kind})`, async () => {
      const names = [...IDENTITY.filter((n) => n !== "x-edgegate-email"), "x-user-mail", "x_edgegate_roles", "X_User_Mail"];
      const credential = kind === "bearer JWT" ? bearer(await jwt()) : ["cookie", `edgegate_session=${await session()}`];
      const echo = echoed(await raw(narrow, "GET", unique("/app/narrow"), [...names.map((n) => [n, SPOOF]), credential]));
      assert.deepEqual(smuggled(echo), []);
      const sent = echo.rawHeaders.filter(([n]) => isIdentity(n) || norm(n) === "x-user-mail");
      assert.deepEqual(sent, [["x-edgegate-subject", kind === "bearer JWT" ? "staff-user" : "sess-user"]]);
      const environ = Object.keys(echo.environ).filter((k) => /^HTTP_X_(EDGEGATE_|USER_MAIL)/.test(k));
      assert.deepEqual(environ, ["HTTP_X_EDGEGATE_SUBJECT"]);
    });
  }
});

// === 2. request trailers ==========================================================================
describe("request trailers", () => {
  test.skip("identity names in request trailers are removed: workers have no request-trailers API (nothing to strip)", () => {});

  test("trailers sent to workerd never reach the origin", async () => {
    const path = unique("/public/tr");
    const res = await raw(main, "POST", path, [], {
      body: "hello",
      trailers: [["x-edgegate-roles", SPOOF], ["x_edgegate_subject", SPOOF], ["x-checksum", "abc"]],
    });
    if (res.status === 200) {
      const echo = res.json();
      assert.deepEqual(smuggled(echo), []);
      assert.equal(echo.body, "hello");
    } else {
      assert.ok(res.status >= 400 && res.status < 500, `${res.status}`);
    }
  });
});

// === 3. method override ===========================================================================
describe("method override", () => {
  const staff = async () => bearer(await jwt({ roles: ["staff"] }));
  const admin = async () => bearer(await jwt({ roles: ["admin"], sub: "root" }));

  for (const header of ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "x-http-method-override", "X_HTTP_METHOD_OVERRIDE"]) {
    test(`${header}: DELETE cannot pass a DELETE-needs-admin rule`, async () => {
      const path = unique("/items/ov");
      denied(await raw(main, "POST", path, [await staff(), [header, "DELETE"]], { body: "{}" }), path, 403, "missing_role");
    });
  }

  for (const value of ["delete", "GET, DELETE", "GET,DELETE", " DELETE "]) {
    test(`value ${JSON.stringify(value)}`, async () => {
      const path = unique("/items/ovl");
      denied(await raw(main, "POST", path, [await staff(), ["X-HTTP-Method-Override", value]], { body: "{}" }), path, 403, "missing_role");
    });
  }

  test("repeated headers count as a list", async () => {
    const path = unique("/items/ovr");
    const h = [await staff(), ["x-http-method-override", "GET"], ["x-http-method-override", "DELETE"]];
    denied(await raw(main, "POST", path, h, { body: "{}" }), path, 403, "missing_role");
  });

  test("an override in another carrier than the first", async () => {
    const path = unique("/items/ovc");
    const h = [await staff(), ["x-http-method-override", "GET"], ["x-method-override", "DELETE"]];
    denied(await raw(main, "POST", path, h, { body: "{}" }), path, 403, "missing_role");
  });

  for (const query of ["_method=DELETE", "a=1&_method=delete", "_method=GET,DELETE"]) {
    test(`query ${query}`, async () => {
      const target = `${unique("/items/ovq")}?${query}`;
      denied(await raw(main, "POST", target, [await staff()], { body: "{}" }), target, 403, "missing_role");
    });
  }

  test("an override the caller may do passes, and the header is forwarded (passes today)", async () => {
    for (const [who, value] of [[await admin(), "DELETE"], [await staff(), "GET"]]) {
      const echo = echoed(await raw(main, "POST", unique("/items/ok"), [who, ["X-HTTP-Method-Override", value]], { body: "{}" }));
      assert.equal(echo.headers["x-http-method-override"], value);
    }
    const path = unique("/items/plain");
    denied(await raw(main, "DELETE", path, [await staff()]), path, 403, "missing_role");
  });

  for (const value of ["DE LETE", "DELETE;x", "DELETE/x", "A,B,C,D,E,F,G,H,I"]) {
    test(`${JSON.stringify(value)} is not a method (list): 400`, async () => {
      const path = unique("/items/bad");
      const res = await raw(main, "POST", path, [await admin(), ["X-HTTP-Method-Override", value]], { body: "{}" });
      assert.equal(res.status, 400, `${res.status} ${res.text.slice(0, 300)}`);
      assert.ok(!origin.seen(path));
    });
  }

  for (const [name, value] of [["X-HTTP-Method-Override", "GET"], ["X-HTTP-Method", "POST"], ["x-method-override", "PUT"], ["query", "GET"]]) {
    test(`reject mode refuses ${name}`, async () => {
      const base = unique("/items/rej");
      const target = name === "query" ? `${base}?_method=${value}` : base;
      const h = [await admin(), ...(name === "query" ? [] : [[name, value]])];
      denied(await raw(reject, "POST", target, h, { body: "{}" }), target, 400, "method_override_refused");
    });
  }

  test("reject mode without an override serves", async () => {
    echoed(await raw(reject, "POST", unique("/items/norej"), [await staff()], { body: "{}" }));
  });
});

// === 4. consumed credentials stay at the edge =====================================================
describe("consumed credentials", () => {
  test("a bearer JWT is not forwarded", async () => {
    const echo = echoed(await raw(main, "GET", "/app/c1", [["Authorization", `Bearer ${await jwt()}`]]));
    assert.equal(echo.headers["x-edgegate-credential"], "jwt");
    assert.equal(echo.headers.authorization, undefined);
  });

  test("a bearer API key is not forwarded", async () => {
    const echo = echoed(await raw(main, "GET", "/app/c2", [bearer(STAFF_KEY)]));
    assert.equal(echo.headers["x-edgegate-credential"], "api_key");
    assert.equal(echo.headers.authorization, undefined);
  });

  test("the API-key header is not forwarded", async () => {
    const echo = echoed(await raw(main, "GET", "/app/c3", [["X-Api-Key", STAFF_KEY]]));
    assert.equal(echo.headers["x-edgegate-key-name"], "staff-key");
    assert.equal(echo.headers["x-api-key"], undefined);
  });

  test("the JWT header source is not forwarded", async () => {
    const echo = echoed(await raw(main, "GET", "/app/c4", [["x-jwt-assertion", await jwt()]]));
    assert.equal(echo.headers["x-edgegate-credential"], "jwt");
    assert.equal(echo.headers["x-jwt-assertion"], undefined);
  });

  test("the JWT cookie is not forwarded; other cookies are, in order", async () => {
    const echo = echoed(await raw(main, "GET", "/app/c5", [["cookie", `z=1; access_token=${await jwt()}; a=2; m=3`]]));
    assert.equal(echo.headers["x-edgegate-credential"], "jwt");
    assert.deepEqual(cookiesOf(echo), ["z=1; a=2; m=3"]);
  });

  test("the session cookie and edgegate's own cookies are removed", async () => {
    const cookie = `theme=dark; edgegate_session=${await session()}; lang=en; edgegate_session_refresh=r3fr3sh; edgegate_login_abc=state1; edgegate_login_x-y=state2; tail=1`;
    const echo = echoed(await raw(main, "GET", "/app/c6", [["cookie", cookie]]));
    assert.equal(echo.headers["x-edgegate-subject"], "sess-user");
    assert.deepEqual(cookiesOf(echo), ["theme=dark; lang=en; tail=1"]);
  });

  test("several cookie headers: no edgegate cookie reaches the origin", async () => {
    // HTTP/1.1 clients must not send several Cookie headers (RFC 6265 5.4); workerd joins them
    // with ", " (a session cookie among them would then be refused: fail closed). The credential
    // here is a bearer token; what must not happen is an edgegate cookie reaching the origin.
    const echo = echoed(
      await raw(main, "GET", unique("/app/c7"), [
        bearer(await jwt()),
        ["cookie", "a=1; edgegate_session_refresh=r"],
        ["Cookie", "b=2; edgegate_login_q=s"],
        ["cookie", "c=3"],
      ]),
    );
    const cookies = cookiesOf(echo);
    assert.ok(cookies.length <= 1, JSON.stringify(cookies));
    assert.ok(!cookies.some((c) => c.includes("edgegate_")), JSON.stringify(cookies));
    assert.match(cookies[0] ?? "", /a=1/);
  });

  test("only edgegate cookies: no cookie header at all", async () => {
    const echo = echoed(await raw(main, "GET", "/app/c8", [["cookie", `edgegate_session=${await session()}; edgegate_login_z=1`]]));
    assert.deepEqual(cookiesOf(echo), []);
  });

  test("edgegate cookies are removed on public routes too", async () => {
    const echo = echoed(await raw(main, "GET", "/public/c9", [["cookie", `keep=1; edgegate_session=${await session()}; edgegate_login_a=1`]]));
    assert.deepEqual(cookiesOf(echo), ["keep=1"]);
  });

  test("what edgegate did not consume reaches the origin (passes today)", async () => {
    const echo = echoed(await raw(main, "GET", "/app/c11", [["x-api-key", STAFF_KEY], ["x-request-id", "r1"], ["x-custom", "v"]]));
    assert.equal(echo.headers["x-request-id"], "r1");
    assert.equal(echo.headers["x-custom"], "v");
  });

  // The Envoy suite's test_a_second_authorization_header_never_rides_along_a_forwarded_token.
  const FORGED = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiIsInJvbGVzIjpbImFkbWluIl19.";
  for (const order of ["valid first", "forged first"]) {
    test(`a second authorization header never rides along a forwarded token (${order})`, async () => {
      const valid = `Bearer ${await jwt({ issuer: FWD_ISSUER, sub: "fwd-user" })}`;
      const pair = order === "valid first" ? [valid, FORGED] : [FORGED, valid];
      const path = unique("/app/twice");
      denied(await raw(fwd, "GET", path, pair.map((v) => ["authorization", v])), path, 400, "repeated_credential");
    });
  }

  test("a forwarded API-key header sent twice is refused", async () => {
    const path = unique("/app/twice-key");
    denied(await raw(fwd, "GET", path, [["x-api-key", STAFF_KEY], ["X-Api-Key", ADMIN_KEY]]), path, 400, "repeated_credential");
  });

  test("forward: true forwards that provider's token, never edgegate's cookies", async () => {
    const token = await jwt({ issuer: FWD_ISSUER, sub: "fwd-user" });
    const echo = echoed(
      // (no session cookie here: the rule reads sessions first, and the token must be the credential)
      await raw(fwd, "GET", "/app/f1", [bearer(token), ["cookie", "a=1; edgegate_session_refresh=r; edgegate_login_s=1"]]),
    );
    assert.equal(echo.headers["x-edgegate-provider"], "fwd");
    assert.equal(echo.headers.authorization, `Bearer ${token}`);
    assert.deepEqual(cookiesOf(echo), ["a=1"]);
  });

  test("forward is per provider", async () => {
    const echo = echoed(await raw(fwd, "GET", "/app/f2", [bearer(await jwt())]));
    assert.equal(echo.headers["x-edgegate-provider"], "local");
    assert.equal(echo.headers.authorization, undefined);
  });

  test("api_keys.forward: true forwards the key", async () => {
    const echo = echoed(await raw(fwd, "GET", "/app/f3", [["x-api-key", STAFF_KEY]]));
    assert.equal(echo.headers["x-api-key"], STAFF_KEY);
  });
});

// === 5. dev mode ==================================================================================
describe("dev mode", () => {
  for (const host of ["127.0.0.1", "localhost", "LOCALHOST:8080", "127.9.8.7:1", "[::1]", "[::1]:4443", "localhost:80"]) {
    test(`serves loopback host ${host} (passes today)`, async () => {
      const echo = echoed(await raw(dev, "GET", unique("/dev/ok"), [], { host }));
      assert.equal(echo.headers["x-edgegate-subject"], "dev-alice");
      assert.equal(echo.headers["x-edgegate-dev-mode"], "true");
    });
  }

  for (const host of ["example.com", "app.localhost", "localhost.evil.com", "127.0.0.1.nip.io", "[::2]", "10.0.0.1", "evil.com:80"]) {
    test(`refuses host ${host}`, async () => {
      const path = unique("/dev/no");
      denied(await raw(dev, "GET", path, [], { host }), path, 403, "dev_mode_not_local");
    });
  }

  test("an absolute-form target: the dev identity only goes with a loopback authority", async () => {
    // `GET http://example.com/x` with `Host: localhost`: whichever of the two workerd takes as
    // the URL's authority, edgegate must decide on that same one.
    const path = unique("/dev/abs");
    const res = await raw(dev, "GET", `http://example.com${path}`, [], { host: "localhost" });
    if (res.status === 200) {
      assert.match(res.json().headers.host, /^(localhost|127\.[0-9.]+|\[::1\])(:\d+)?$/i);
    } else {
      assert.ok([400, 403].includes(res.status), `${res.status} ${res.text.slice(0, 300)}`);
      assert.ok(!origin.seen(path));
    }
  });

  for (const name of Object.keys(DEV_REFUSED)) {
    test(`dev mode with ${name} is refused at load: every request fails closed`, async () => {
      const path = unique("/dev/refused");
      const res = await raw(wd.urls[name], "GET", path, [], { host: "localhost" });
      assert.equal(res.status, 500, `${res.status} ${res.text.slice(0, 300)}`);
      assert.equal(res.json().reason, "invalid_config");
      assert.ok(!origin.seen(path));
      assert.match(wd.logs(), /dev_mode/);
    });
  }
});

// === 6. bounds and non-HTTP methods ===============================================================
describe("bounds", () => {
  test("more than 200 headers: 431 headers_too_large", async () => {
    const path = unique("/public/many");
    const h = Array.from({ length: 250 }, (_, i) => [`x-h${i}`, "v"]);
    denied(await raw(main, "GET", path, h), path, 431, "headers_too_large");
  });

  test("more than 96 KiB of headers: 431, nothing copied", async () => {
    const path = unique("/public/big");
    const h = Array.from({ length: 26 }, (_, i) => [`x-junk-${i}`, "j".repeat(4000)]);
    const res = await raw(main, "GET", path, [...h, ["x-edgegate-roles", SPOOF]]);
    assert.equal(res.status, 431, `${res.status} ${res.text.slice(0, 300)}`);
    assert.ok(!origin.seen(path));
    // workerd may refuse a head this large itself (no JSON then); if edgegate answered, say why
    if ((res.headers["content-type"] ?? "").startsWith("application/json")) {
      assert.equal(res.json().reason, "headers_too_large");
    }
  });

  test("headers within the bounds pass (passes today)", async () => {
    const h = [...Array.from({ length: 12 }, (_, i) => [`x-junk-${i}`, "j".repeat(3000)]), ...Array.from({ length: 100 }, (_, i) => [`x-h${i}`, "v"])];
    echoed(await raw(main, "GET", unique("/public/fits"), h));
  });

  test("CONNECT: 405 method_not_allowed, not an uncaught exception, nothing tunnelled", async () => {
    // A tunnel to the origin itself, with a request inside it.
    const path = unique("/tunnelled");
    const head = `CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nhost: 127.0.0.1:${origin.port}\r\n\r\n`;
    const inner = `GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`;
    const out = await new Promise((resolve, reject) => {
      const chunks = [];
      const sock = connect(Number(new URL(main).port), "127.0.0.1");
      sock.setTimeout(10_000, () => sock.destroy(new Error("CONNECT timed out")));
      sock.on("connect", () => sock.end(head + inner));
      sock.on("data", (c) => chunks.push(c));
      sock.on("error", (e) => (chunks.length ? null : reject(e)));
      sock.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
    });
    // workerd may answer a CONNECT with 200 itself and hand the worker only the tunnel: then the
    // refusal is what the tunnel carries. Either way: 405 with the reason, and nothing reached.
    const refusal = out.startsWith("HTTP/1.1 200 ") ? out.slice(out.indexOf("\r\n\r\n") + 4) : out;
    assert.match(refusal, /^HTTP\/1\.1 405 /, out.slice(0, 400));
    assert.match(refusal, /"reason":"method_not_allowed"/, out.slice(0, 400));
    assert.ok(!origin.seen(path), `${path} reached the origin through the tunnel`);
    assert.ok(!origin.received.some((e) => e.method === "CONNECT"));
  });
});
