// A small OpenID Provider (authorization code flow + PKCE) on 127.0.0.1 that a test can tell to
// misbehave, to reproduce the relying-party checks of the OpenID conformance suite's basic and
// config plans locally. Plain node:http; tokens are signed by npm `jose`, independently of
// edgegate's Rust code.
//
//   const op = await startOp({ clientId: "edge", clientSecret, redirectUris: [cb] });
//   op.issuer                         // http://127.0.0.1:<port>
//   op.misbehave({ claims: { nonce: "wrong" } })   // for the next logins; op.misbehave() resets
//   await op.rotate("RS256")          // a new signing key with a new kid, published in the JWKS
//   op.log                            // what the OP saw and answered, for assertions
//   await op.stop()
//
// Endpoints: /.well-known/openid-configuration, /authorize (302 straight back with code and
// state: no login page; the browser test uses npm `oidc-provider`, test/op.mjs), /token
// (authorization_code with client authentication and PKCE S256, refresh_token), /jwks, /logout
// (end_session_endpoint), /userinfo.
//
// Knobs (all optional; `misbehave()` replaces the previous set):
//   alg: "RS256" | "ES256" | "HS256"     signing algorithm (HS256 uses the client secret)
//   signature: "bad" | "none"            corrupt the signature / `alg: none` with no signature
//   hsSecret: string                     HS256 with this secret instead of the client secret
//   omitKid: true                        no `kid` in the ID token's header
//   kid: string                          this `kid` in the header (whatever key signs)
//   claims: {...}                        ID token claims overridden (e.g. iss, aud, nonce, azp)
//   omit: ["sub", "iat", ...]            ID token claims left out
//   expired: true                        iat two hours ago, exp one hour ago
//   atHash: "bad" | "omit"               a wrong / no at_hash (default: the correct one)
//   discoveryIssuer: string              the discovery document names this issuer
//   authorizationIss: "send" | "omit" | string   RFC 9207 `iss` in the authorization response
//                                        (the OP's issuer, none, or the given wrong value);
//                                        default: sent only by an OP started with
//                                        `issParameterSupported: true`
//   refreshToken: true                   the token response carries a refresh_token
//   tokenError: { status, error }        the token endpoint refuses
//   noIdToken: true                      the token response has no id_token
//   tokenBody: string                    the token endpoint answers 200 with this raw body
//   embedJwk: true                       signed by a fresh key offered in the header's `jwk`
//   jwksDelayMs: number                  the JWKS answers this much later
// `misbehaveOnRefresh(refreshToken, knobs)` sets knobs for the refresh grants of one refresh
// token only, so logins with different misbehaviours at refresh time can run at once.
import { createServer } from "node:http";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { SignJWT, exportJWK, generateKeyPair } from "jose";

const b64u = (buf) => Buffer.from(buf).toString("base64url");
const sha256 = (s) => createHash("sha256").update(s).digest();
const now = () => Math.floor(Date.now() / 1000);

/** at_hash / c_hash: left half of the hash (the alg's hash size) of the token, base64url. */
export function tokenHash(alg, token) {
  const bits = alg.endsWith("384") ? "sha384" : alg.endsWith("512") ? "sha512" : "sha256";
  const d = createHash(bits).update(token).digest();
  return b64u(d.subarray(0, d.length / 2));
}

function safeEqual(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

async function readBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > limit) throw new Error("body too large");
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Starts the OP. Options: clientId ("edge"), clientSecret (32+ chars; HS256 signs with its
 * UTF-8 bytes, OIDC Core 10.1), redirectUris (exact match; settable later via
 * `op.client.redirectUris`), authMethod ("client_secret_basic" | "client_secret_post"),
 * alg ("RS256" default: the first signing key's algorithm), users ({sub: {name, email, roles}}),
 * issParameterSupported (RFC 9207: discovery says so and `iss` is sent by default).
 */
export async function startOp(options = {}) {
  const client = {
    id: options.clientId ?? "edge",
    secret: options.clientSecret ?? b64u(randomBytes(32)),
    redirectUris: options.redirectUris ?? [],
    authMethod: options.authMethod ?? "client_secret_basic",
  };
  const users = options.users ?? {
    alice: { name: "Alice Example", email: "alice@example.com", roles: ["staff"] },
  };
  const defaultUser = options.defaultUser ?? Object.keys(users)[0];

  // Asymmetric signing keys by kid; `published` lists the kids in the JWKS.
  const keys = new Map();
  let published = [];
  let signingKid;
  let knobs = {};
  let keyCounter = 0;
  const log = [];
  const codes = new Map(); // code -> {nonce, challenge, redirectUri, sub, used}
  const refreshTokens = new Map(); // refresh token -> {sub}
  const refreshKnobs = new Map(); // refresh token -> knobs for its refresh grants

  async function addKey(alg = "RS256", kid = undefined) {
    kid ??= `${alg.toLowerCase()}-${++keyCounter}`;
    const pair = await generateKeyPair(alg, alg.startsWith("RS") ? { modulusLength: 2048 } : {});
    const jwk = { ...(await exportJWK(pair.publicKey)), kid, alg, use: "sig" };
    keys.set(kid, { alg, privateKey: pair.privateKey, jwk });
    return kid;
  }

  const firstAlg = options.alg ?? "RS256";
  signingKid = await addKey(firstAlg === "HS256" ? "RS256" : firstAlg);
  published = [signingKid];

  let server;
  let issuer;

  function discovery() {
    return {
      issuer: knobs.discoveryIssuer ?? issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      jwks_uri: `${issuer}/jwks`,
      userinfo_endpoint: `${issuer}/userinfo`,
      end_session_endpoint: `${issuer}/logout`,
      response_types_supported: ["code"],
      grant_types_supported: ["authorization_code", "refresh_token"],
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: ["RS256", "ES256", "HS256"],
      token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
      code_challenge_methods_supported: ["S256"],
      scopes_supported: ["openid", "email", "profile", "offline_access"],
      // RFC 9207: claimed only when started with `issParameterSupported: true` (it then sends
      // `iss` unless told to omit it); otherwise it sends `iss` only when told to
      authorization_response_iss_parameter_supported: Boolean(options.issParameterSupported),
    };
  }

  /** Signs an ID token as the knobs say. */
  async function idToken(sub, nonce, accessToken, knobs) {
    const alg = knobs.alg ?? (firstAlg === "HS256" ? "HS256" : keys.get(signingKid).alg);
    const t = now();
    const user = users[sub] ?? {};
    let claims = {
      iss: issuer,
      sub,
      aud: client.id,
      iat: knobs.expired ? t - 7200 : t,
      exp: knobs.expired ? t - 3600 : t + 300,
      auth_time: t,
      nonce,
      at_hash: tokenHash(alg === "none" ? "RS256" : alg, accessToken),
      name: user.name,
      email: user.email,
      roles: user.roles,
    };
    if (knobs.atHash === "bad") claims.at_hash = tokenHash(alg, `${accessToken}x`);
    if (knobs.atHash === "omit") delete claims.at_hash;
    claims = { ...claims, ...(knobs.claims ?? {}) };
    for (const c of knobs.omit ?? []) delete claims[c];
    for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];

    if (knobs.signature === "none") {
      const header = { alg: "none", typ: "JWT" };
      return `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}.`;
    }
    let key;
    const header = { alg, typ: "JWT" };
    if (alg === "HS256") {
      key = Buffer.from(knobs.hsSecret ?? client.secret, "utf8");
    } else {
      const k = keys.get(signingKid);
      if (k.alg !== alg) throw new Error(`the signing key ${signingKid} is ${k.alg}, not ${alg}`);
      key = k.privateKey;
      header.kid = signingKid;
    }
    if (knobs.embedJwk) {
      // an attacker's own key, offered in the header (RFC 7515 `jwk`) for the RP to trust
      const pair = await generateKeyPair(alg, alg.startsWith("RS") ? { modulusLength: 2048 } : {});
      key = pair.privateKey;
      header.jwk = await exportJWK(pair.publicKey);
      delete header.kid;
    }
    if (knobs.kid !== undefined) header.kid = knobs.kid;
    if (knobs.omitKid) delete header.kid;
    let jwt = await new SignJWT(claims).setProtectedHeader(header).sign(key);
    if (knobs.signature === "bad") {
      const [h, p, s] = jwt.split(".");
      const sig = Buffer.from(s, "base64url");
      sig[Math.floor(sig.length / 2)] ^= 0x01;
      jwt = `${h}.${p}.${b64u(sig)}`;
    }
    return jwt;
  }

  function send(res, status, body, headers = {}) {
    const text = typeof body === "string" ? body : JSON.stringify(body);
    res.writeHead(status, {
      "content-type": typeof body === "string" ? "text/html; charset=utf-8" : "application/json",
      "cache-control": "no-store",
      ...headers,
    });
    res.end(text);
  }

  function redirectWithCode(res, request, sub) {
    const code = b64u(randomBytes(24));
    codes.set(code, {
      nonce: request.nonce,
      challenge: request.code_challenge,
      redirectUri: request.redirect_uri,
      scope: request.scope,
      sub,
      used: false,
      issued: Date.now(),
    });
    const back = new URL(request.redirect_uri);
    back.searchParams.set("code", code);
    back.searchParams.set("state", request.state);
    const iss = knobs.authorizationIss ?? (options.issParameterSupported ? "send" : undefined);
    if (iss && iss !== "omit") {
      back.searchParams.set("iss", iss === "send" ? issuer : iss);
    }
    res.writeHead(302, { location: back.toString(), "cache-control": "no-store" });
    res.end();
  }

  /** Checks an authorization request; returns an error string or null. */
  function badAuthorizationRequest(q) {
    if (q.client_id !== client.id) return "unknown client_id";
    if (!client.redirectUris.includes(q.redirect_uri)) return `redirect_uri not registered: ${q.redirect_uri}`;
    if (q.response_type !== "code") return "response_type must be code";
    if (!(q.scope ?? "").split(" ").includes("openid")) return "scope lacks openid";
    if (!q.state) return "no state";
    if (!q.nonce) return "no nonce";
    if (q.code_challenge_method !== "S256") return "code_challenge_method must be S256";
    if (!/^[A-Za-z0-9_-]{43}$/.test(q.code_challenge ?? "")) return "code_challenge is not a S256 value";
    return null;
  }

  function clientAuth(req, form) {
    const auth = req.headers.authorization;
    if (auth?.startsWith("Basic ")) {
      const raw = Buffer.from(auth.slice(6), "base64").toString("utf8");
      const i = raw.indexOf(":");
      if (i < 0) return { error: "malformed Basic credentials" };
      // RFC 6749 2.3.1: both parts are form-urlencoded before base64
      const dec = (s) => decodeURIComponent(s.replace(/\+/g, " "));
      const id = dec(raw.slice(0, i));
      const secret = dec(raw.slice(i + 1));
      if (form.has("client_secret")) return { error: "two client authentication methods" };
      return { method: "client_secret_basic", id, secret };
    }
    if (form.has("client_secret")) {
      return { method: "client_secret_post", id: form.get("client_id"), secret: form.get("client_secret") };
    }
    return { error: "no client authentication" };
  }

  async function tokenEndpoint(req, res) {
    const entry = { type: "token", at: Date.now() };
    log.push(entry);
    const fail = (status, error, description) => {
      entry.status = status;
      entry.error = error;
      entry.description = description;
      send(res, status, { error, error_description: description });
    };
    if (req.method !== "POST") return fail(405, "invalid_request", "POST only");
    if (!(req.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded")) {
      return fail(400, "invalid_request", "form body expected");
    }
    const form = new URLSearchParams(await readBody(req));
    entry.grantType = form.get("grant_type");
    if (entry.grantType === "refresh_token") entry.presented = form.get("refresh_token");
    const auth = clientAuth(req, form);
    entry.authMethod = auth.method;
    if (auth.error) return fail(401, "invalid_client", auth.error);
    if (auth.method !== client.authMethod) {
      return fail(401, "invalid_client", `registered for ${client.authMethod}, used ${auth.method}`);
    }
    if (auth.id !== client.id || !safeEqual(auth.secret, client.secret)) {
      return fail(401, "invalid_client", "wrong client credentials");
    }
    if (form.has("client_id") && form.get("client_id") !== client.id) {
      return fail(401, "invalid_client", "client_id in the body is another client");
    }
    // a refresh grant obeys the knobs set for its refresh token, if any
    const rtKnobs = form.get("grant_type") === "refresh_token" ? refreshKnobs.get(form.get("refresh_token") ?? "") : undefined;
    const k = rtKnobs ?? knobs;
    if (k.tokenError) return fail(k.tokenError.status ?? 400, k.tokenError.error ?? "invalid_grant", "told to refuse");

    let sub;
    let nonce;
    if (form.get("grant_type") === "authorization_code") {
      const code = codes.get(form.get("code") ?? "");
      if (!code) return fail(400, "invalid_grant", "unknown code");
      if (code.used) return fail(400, "invalid_grant", "code already used");
      code.used = true;
      if (Date.now() - code.issued > 60_000) return fail(400, "invalid_grant", "code expired");
      if (form.get("redirect_uri") !== code.redirectUri) return fail(400, "invalid_grant", "redirect_uri differs");
      const verifier = form.get("code_verifier") ?? "";
      if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier)) return fail(400, "invalid_grant", "malformed code_verifier");
      if (b64u(sha256(verifier)) !== code.challenge) return fail(400, "invalid_grant", "PKCE verifier does not match");
      sub = code.sub;
      nonce = code.nonce;
    } else if (form.get("grant_type") === "refresh_token") {
      const rt = refreshTokens.get(form.get("refresh_token") ?? "");
      if (!rt) return fail(400, "invalid_grant", "unknown refresh token");
      sub = rt.sub;
      nonce = undefined;
    } else {
      return fail(400, "unsupported_grant_type", "authorization_code or refresh_token");
    }
    const accessToken = b64u(randomBytes(32));
    const body = {
      access_token: accessToken,
      token_type: "Bearer",
      expires_in: 300,
      id_token: await idToken(sub, nonce, accessToken, k),
      scope: "openid email profile",
    };
    if (k.noIdToken) delete body.id_token;
    if (k.tokenBody !== undefined) {
      entry.status = 200;
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      return res.end(k.tokenBody);
    }
    if (k.refreshToken) {
      body.refresh_token = b64u(randomBytes(32));
      refreshTokens.set(body.refresh_token, { sub });
    }
    entry.status = 200;
    entry.idToken = body.id_token;
    entry.refreshToken = body.refresh_token;
    entry.sub = sub;
    send(res, 200, body);
  }

  async function handle(req, res) {
    const url = new URL(req.url, issuer);
    const q = Object.fromEntries(url.searchParams);
    switch (url.pathname) {
      case "/.well-known/openid-configuration":
        log.push({ type: "discovery", at: Date.now() });
        return send(res, 200, discovery());
      case "/jwks":
        log.push({ type: "jwks", kids: [...published], at: Date.now() });
        if (knobs.jwksDelayMs) await new Promise((r) => setTimeout(r, knobs.jwksDelayMs));
        return send(res, 200, { keys: published.map((kid) => keys.get(kid).jwk) }, { "cache-control": "max-age=300" });
      case "/authorize": {
        const entry = { type: "authorize", query: q };
        log.push(entry);
        const bad = badAuthorizationRequest(q);
        if (bad) {
          entry.error = bad;
          return send(res, 400, `<!doctype html><title>Bad request</title><p>${escapeHtml(bad)}</p>`);
        }
        return redirectWithCode(res, q, defaultUser);
      }
      case "/token":
        return tokenEndpoint(req, res);
      case "/userinfo":
        return send(res, 401, { error: "invalid_token" });
      case "/logout": {
        log.push({ type: "logout", query: q });
        const target = q.post_logout_redirect_uri;
        if (target) {
          res.writeHead(302, { location: target });
          return res.end();
        }
        return send(res, 200, "<!doctype html><p>signed out</p>");
      }
      default:
        return send(res, 404, { error: "not_found" });
    }
  }

  server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      log.push({ type: "crash", error: String(e?.stack ?? e) });
      if (!res.headersSent) send(res, 500, { error: "server_error" });
      else res.end();
    });
  });
  await new Promise((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  issuer = `http://127.0.0.1:${server.address().port}`;

  return {
    get issuer() {
      return issuer;
    },
    get port() {
      return server.address().port;
    },
    client,
    log,
    /** Replaces the misbehaviour knobs (none: behave). */
    misbehave(k = {}) {
      knobs = { ...k };
    },
    /** Knobs for the refresh grants of one refresh token (instead of the global ones). */
    misbehaveOnRefresh(refreshToken, k = {}) {
      refreshKnobs.set(refreshToken, { ...k });
    },
    /** A new key, published in the JWKS. */
    addKey: async (alg, kid) => {
      const k = await addKey(alg, kid);
      published.push(k);
      return k;
    },
    /** Which kids the JWKS lists (in order). */
    publish(kids) {
      for (const k of kids) if (!keys.has(k)) throw new Error(`no key ${k}`);
      published = [...kids];
    },
    signWith(kid) {
      if (!keys.has(kid)) throw new Error(`no key ${kid}`);
      signingKid = kid;
    },
    get signingKid() {
      return signingKid;
    },
    get publishedKids() {
      return [...published];
    },
    /** Key rotation: a new key with a new kid, added to the JWKS and used from now on. */
    async rotate(alg = keys.get(signingKid).alg, { dropOld = false } = {}) {
      const kid = await addKey(alg);
      published = dropOld ? [kid] : [...published, kid];
      signingKid = kid;
      return kid;
    },
    /** An ID token as /token would issue it now (for bearer use), with optional knobs. */
    mint: (sub = defaultUser, k = {}) => idToken(sub, undefined, b64u(randomBytes(16)), k),
    /** The last token-endpoint entry of the log. */
    lastToken() {
      return log.filter((e) => e.type === "token").at(-1);
    },
    count(type) {
      return log.filter((e) => e.type === type).length;
    },
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
