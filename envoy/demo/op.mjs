// The demo's OpenID Provider: npm `oidc-provider` (the one the login tests use, pinned in
// edge-worker/package.json), on http://127.0.0.1:10003 by default, with one confidential client
// for envoy/envoy.yaml's `login` section and two demo users. Its login page is one click, no
// password and no consent screen: "log in as alice" or "as bob" (every scope the client asks for
// is granted). DEMO ONLY: the client secret is published here and the keys are made at start.
//
//   node envoy/demo/op.mjs [--port 10003]
//
// envoy/run.sh starts it; `envoy/run.sh` installs edge-worker's node dependencies first.
import { generateKeyPairSync } from "node:crypto";
import { createServer } from "node:http";

// oidc-provider from edge-worker/node_modules (the repository's one pinned copy).
const { default: Provider } = await import(new URL("../../edge-worker/node_modules/oidc-provider/lib/index.js", import.meta.url));

const portArg = process.argv.indexOf("--port");
const PORT = portArg > 0 ? Number(process.argv[portArg + 1]) : 10003;
const ISSUER = `http://127.0.0.1:${PORT}`;
/** Where Envoy serves the callback (envoy/envoy.yaml's login.redirect_uri). */
const APP = process.env.EDGEGATE_DEMO_APP || "http://127.0.0.1:10000";

// Must match envoy/envoy.yaml's `login` section (envoy/tests/test_demo.py checks it).
export const CLIENT_ID = "edgegate-demo-app";
export const CLIENT_SECRET = "demo-client-secret-published-in-the-repo";

/** The demo users; their roles arrive in the ID token's `roles` claim. */
const USERS = {
  alice: { email: "alice@example.com", name: "Alice (admin)", roles: ["admin", "staff"] },
  bob: { email: "bob@example.com", name: "Bob (staff)", roles: ["staff"] },
};

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: "jwk" }), kid: "demo-op-1", alg: "RS256", use: "sig" };

const provider = new Provider(ISSUER, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [`${APP}/auth/callback`],
      post_logout_redirect_uris: [`${APP}/`],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  jwks: { keys: [signing] },
  cookies: { keys: ["edgegate-demo-op-cookie-key"] },
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
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name", "roles"] },
  // The claims of the granted scopes go into the ID token too (edgegate reads roles from it).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, RefreshToken: 86_400, Interaction: 600, Session: 3600, Grant: 86_400 },
  async issueRefreshToken(_ctx, client, code) {
    return client.grantTypeAllowed("refresh_token") && code.scopes.has("offline_access");
  },
});
provider.on("server_error", (_ctx, err) => console.error("demo op: server_error:", err));

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Grants the client every scope and claim it asked for (the demo has no consent screen). */
async function grantAll(details, accountId) {
  const { params, grantId } = details;
  const grant = grantId ? await provider.Grant.find(grantId) : new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(String(params.scope || "openid"));
  if (params.claims) {
    const claims = JSON.parse(params.claims);
    grant.addOIDCClaims([...Object.keys(claims.id_token || {}), ...Object.keys(claims.userinfo || {})]);
  }
  return grant.save();
}

function page(res, status, html) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(`<!doctype html><meta charset=utf-8><title>edgegate demo IdP</title>
<style>body{font:16px system-ui;margin:3em auto;max-width:32em}button{font:inherit;padding:.4em 1em;margin:.3em 0}</style>
<h1>edgegate demo IdP</h1>${html}`);
}

async function readForm(req) {
  let body = "";
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 4096) break;
  }
  return new URLSearchParams(body);
}

/** The interaction routes (login page, one-click login); everything else is oidc-provider's. */
async function interaction(req, res) {
  const url = new URL(req.url, ISSUER);
  const m = /^\/interaction\/([^/]+)(\/login)?$/.exec(url.pathname);
  if (!m) return false;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    page(res, 400, "<p>This login attempt has expired. Go back to the app and start again.</p>");
    return true;
  }
  const { uid, prompt, session } = details;
  if (prompt.name === "consent" && session?.accountId) {
    // Already logged in here (e.g. a second login): grant and go straight back, no screen.
    const grantId = await grantAll(details, session.accountId);
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return true;
  }
  if (req.method === "POST" && m[2]) {
    const user = (await readForm(req)).get("user");
    if (!USERS[user]) {
      page(res, 400, `<p>No demo user ${esc(user)}.</p>`);
      return true;
    }
    const grantId = await grantAll(details, user);
    await provider.interactionFinished(req, res, { login: { accountId: user }, consent: { grantId } }, { mergeWithLastSubmission: false });
    return true;
  }
  const buttons = Object.entries(USERS)
    .map(
      ([id, u]) => `<form method=post action="/interaction/${esc(uid)}/login">
<input type=hidden name=user value="${esc(id)}"><button>Log in as ${esc(id)}</button> ${esc(u.email)}, roles: ${esc(u.roles.join(", "))}</form>`,
    )
    .join("\n");
  page(res, 200, `<p>Client <code>${esc(details.params.client_id)}</code> asks you to log in. Pick a demo user (no password):</p>\n${buttons}`);
  return true;
}

const callback = provider.callback();
const server = createServer(async (req, res) => {
  try {
    if (await interaction(req, res)) return;
  } catch (err) {
    console.error("demo op:", err);
    if (!res.headersSent) page(res, 500, "<p>The demo IdP failed; see its log.</p>");
    return;
  }
  callback(req, res);
});
server.listen(PORT, "127.0.0.1", () => console.log(`demo op: ${ISSUER} (client ${CLIENT_ID}, users ${Object.keys(USERS).join(", ")})`));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 1000).unref());
