// A real OpenID Provider for the login tests: npm `oidc-provider` (panva), in-process, on
// 127.0.0.1, with `devInteractions` (plain HTML login and consent forms any test can post),
// static confidential clients, and test users whose roles are in a custom `roles` claim.
// Also a small cookie jar and a "browser" that follows the provider's forms, so the tests drive
// the whole authorization code flow over HTTP.
import { createServer } from "node:http";
import { exportJWK, generateKeyPair } from "jose";
import Provider from "oidc-provider";

/** Test users: any password works (devInteractions); roles land in the `roles` claim. */
export const USERS = {
  alice: { email: "alice@example.com", name: "Alice Liddell", roles: ["admin", "staff"] },
  bob: { email: "bob@example.com", name: "Bob", roles: ["staff"] },
};

/**
 * Starts the provider on `port` (127.0.0.1). `clients` is oidc-provider client metadata
 * (client_id, client_secret, redirect_uris, token_endpoint_auth_method, ...).
 * Returns {issuer, provider, stop()}.
 */
export async function startOP({ port, clients, ttl = {} }) {
  const issuer = `http://127.0.0.1:${port}`;
  const { privateKey } = await generateKeyPair("RS256", { modulusLength: 2048, extractable: true });
  const signing = { ...(await exportJWK(privateKey)), kid: "op-rs1", alg: "RS256", use: "sig" };
  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      ...c,
    })),
    jwks: { keys: [signing] },
    cookies: { keys: ["edgegate-test-op-cookie-key"] },
    async findAccount(_ctx, id) {
      const user = USERS[id];
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: user.email, email_verified: true, name: user.name, roles: user.roles };
        },
      };
    },
    claims: {
      openid: ["sub"],
      email: ["email", "email_verified"],
      profile: ["name", "roles"],
    },
    // Scope-requested claims go into the ID token too (the worker reads roles from it).
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      RefreshToken: 86_400,
      Interaction: 600,
      Session: 3600,
      Grant: 86_400,
      ...ttl,
    },
    // Every refresh rotates the refresh token: a used one is refused (and revokes the grant),
    // so a worker that refreshed once per parallel request would lose the session.
    rotateRefreshToken: () => true,
    // Refresh tokens for clients allowed the grant that asked for offline_access.
    async issueRefreshToken(_ctx, client, code) {
      return client.grantTypeAllowed("refresh_token") && code.scopes.has("offline_access");
    },
  });
  // Node 20 and oidc-provider's warnings about dev settings are expected here.
  provider.on("server_error", (_ctx, err) => console.error("op server_error:", err));
  const server = createServer(provider.callback());
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const listen = () => new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const close = () =>
    new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    });
  return {
    issuer,
    provider,
    /** The provider's signing key (kid `op-rs1`), for tests that mint tokens of this issuer. */
    privateKey,
    /** An outage: the port refuses connections until `resume` (the provider keeps its state). */
    pause: close,
    resume: listen,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/**
 * A browser's cookie store, enough for these tests: cookies are per host name (not port, as
 * in browsers), matched by path prefix, deleted by Max-Age=0 or a past Expires, and dropped at
 * Max-Age. `Secure` is ignored (everything runs on http://127.0.0.1, which browsers treat as
 * a secure context too).
 */
export class Jar {
  constructor() {
    this.cookies = new Map(); // `${host}|${path}|${name}` -> {name, value, path, expires}
  }
  store(url, response) {
    const u = new URL(url);
    for (const line of response.headers.getSetCookie()) this.setCookie(u, line);
  }
  setCookie(u, line) {
    const [pair, ...attrs] = line.split(";");
    const eq = pair.indexOf("=");
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    let path = u.pathname.replace(/\/[^/]*$/, "") || "/";
    let expires = Infinity;
    for (const a of attrs) {
      const [k, v = ""] = a.trim().split("=");
      const key = k.toLowerCase();
      if (key === "path") path = v || "/";
      if (key === "max-age") expires = Date.now() + Number(v) * 1000;
      if (key === "expires" && expires === Infinity) expires = Date.parse(v);
    }
    const id = `${u.hostname}|${path}|${name}`;
    if (expires <= Date.now()) this.cookies.delete(id);
    else this.cookies.set(id, { name, value, path, expires, host: u.hostname });
  }
  header(url) {
    const u = new URL(url);
    const now = Date.now();
    return [...this.cookies.values()]
      .filter((c) => c.host === u.hostname && c.expires > now)
      .filter((c) => u.pathname === c.path || u.pathname.startsWith(c.path.endsWith("/") ? c.path : `${c.path}/`))
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`)
      .join("; ");
  }
  get(name) {
    return [...this.cookies.values()].find((c) => c.name === name && c.expires > Date.now())?.value;
  }
  names() {
    return [...this.cookies.values()].filter((c) => c.expires > Date.now()).map((c) => c.name);
  }
  delete(name) {
    for (const [k, c] of this.cookies) if (c.name === name) this.cookies.delete(k);
  }
}

/** One request as a browser sends it: the jar's cookies, no redirect following. */
export async function browse(jar, url, { method = "GET", body, headers = {} } = {}) {
  const h = { accept: "text/html,application/xhtml+xml", ...headers };
  const cookie = jar.header(url);
  if (cookie) h.cookie = cookie;
  if (body !== undefined) h["content-type"] = "application/x-www-form-urlencoded";
  const res = await fetch(url, { method, body, headers: h, redirect: "manual", signal: AbortSignal.timeout(10_000) });
  jar.store(url, res);
  return res;
}

/**
 * Follows the provider from the authorization URL through its login and consent forms as
 * `user`, and returns the URL it redirects to under `stopAt` (the callback) without following it.
 */
export async function throughProvider(jar, authorizationUrl, stopAt, user = "alice") {
  let url = authorizationUrl;
  let method = "GET";
  let body;
  for (let step = 0; step < 20; step++) {
    const res = await browse(jar, url, { method, body });
    if (res.status >= 300 && res.status < 400) {
      await res.arrayBuffer();
      const next = new URL(res.headers.get("location"), url).href;
      if (next.startsWith(stopAt)) return next;
      [url, method, body] = [next, "GET", undefined];
      continue;
    }
    const html = await res.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    if (res.status !== 200 || !action) {
      throw new Error(`the provider answered ${res.status} at ${url}:\n${html.slice(0, 2000)}`);
    }
    url = new URL(action.replaceAll("&amp;", "&"), url).href;
    method = "POST";
    body = /name="login"/.test(html)
      ? new URLSearchParams({ prompt: "login", login: user, password: "any" }).toString()
      : new URLSearchParams({ prompt: "consent" }).toString();
  }
  throw new Error("the provider did not redirect back within 20 steps");
}
