// One real-browser login per host (EDGEGATE_RP_HOSTS, rp-harness.mjs: the worker in real
// workerd, and/or real Envoy with the proxy-wasm filter; default: the worker): headless Chromium
// (Debian's `chromium`, see ../browser-setup.sh), driven by npm `playwright-core` (no browser
// download), opens a protected page on the gate, is sent to /auth/login, then to the OpenID Provider's login page (npm
// `oidc-provider` with devInteractions, test/op.mjs), signs in and consents by filling and
// clicking its forms, comes back through /auth/callback and lands on the protected page, where
// the origin echoes the identity headers: the user's name must be visible. Then logout through
// the provider's end-session page, after which the page asks for a login again.
//
// Skipped, with the reason, only when Chromium is not installed (run ./browser-setup.sh).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { startOrigin } from "./harness.mjs";
import { USERS, startOP } from "./op.mjs";
import { describeEachHost, freePorts, startGates } from "./rp-harness.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

function chromiumMissing() {
  try {
    execFileSync(CHROMIUM, ["--version"], { stdio: "pipe", timeout: 20_000 });
    return false;
  } catch (e) {
    return `Chromium is not installed at ${CHROMIUM} (${e.code ?? e.message}): run edge-worker/browser-setup.sh`;
  }
}
const skip = chromiumMissing();

describeEachHost(suite);

function suite(hostName, traits) {
  let origin;
  let op;
  let gw; // the started host (rp-harness.mjs startGates)
  let browser;
  let base;
  const opRequests = [];

  before(async () => {
    if (skip) return;
    const { chromium } = await import("playwright-core");
    origin = await startOrigin();
    const [port, opPort] = await freePorts(2);
    base = `http://127.0.0.1:${port}`;
    const secret = randomBytes(32).toString("base64url");
    op = await startOP({
      port: opPort,
      clients: [
        {
          client_id: "edge",
          client_secret: secret,
          token_endpoint_auth_method: "client_secret_basic",
          redirect_uris: [`${base}/auth/callback`],
          post_logout_redirect_uris: [`${base}/signed-out`],
        },
      ],
    });
    op.provider.on("grant.success", () => opRequests.push("token"));
    op.provider.on("end_session.success", () => opRequests.push("end_session"));
    const config = {
      realm: "browser",
      jwt: {
        providers: [
          {
            name: "op",
            issuer: op.issuer,
            algorithms: ["RS256"],
            remote_jwks: { oidc_issuer: op.issuer },
            claims: { roles: ["roles"] },
          },
        ],
      },
      session: { keys: [{ kid: "s1", secret: randomBytes(32).toString("base64url") }], lifetime_seconds: 3600 },
      login: {
        provider: "op",
        client_id: "edge",
        // the worker takes the secret from its OIDC_CLIENT_SECRET binding; Envoy has no bindings
        ...(traits.bindings ? {} : { client_secret: secret }),
        token_endpoint_auth_method: "client_secret_basic",
        redirect_uri: `${base}/auth/callback`,
        scopes: ["openid", "email", "profile", "offline_access"],
        login_path: "/auth/login",
        logout_path: "/auth/logout",
        me_path: "/auth/me",
        post_logout_redirect_uri: `${base}/signed-out`,
        refresh_keys: [{ kid: "r1", secret: randomBytes(32).toString("base64url") }],
      },
      rules: [
        { name: "signed-out", match: { path: { exact: "/signed-out" } }, require: { public: true } },
        { name: "app", match: { path: { prefix: "/app" } }, credentials: ["session"], login_url: "/auth/login" },
      ],
      default_rule: { login_url: "/auth/login" },
    };
    gw = await startGates(hostName, {
      originPort: origin.port,
      gates: [{ name: "gate", port, config, ...(traits.bindings ? { text: { OIDC_CLIENT_SECRET: secret } } : {}) }],
    });
    // Running as root needs --no-sandbox (playwright-core passes it unless chromiumSandbox is set).
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30_000 });
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
    await op?.stop();
    await origin?.stop();
  });

  test("Chromium logs in through the provider's login page and sees the protected page", { skip }, async () => {
    const context = await browser.newContext();
    // offline: the provider's pages @import a web font; only 127.0.0.1 is reachable
    await context.route(/^https?:\/\/(?!127\.0\.0\.1[:/])/, (route) => route.abort());
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const visited = [];
    page.on("request", (r) => {
      if (r.isNavigationRequest()) visited.push(r.url()); // every redirect hop too
    });

    await page.goto(`${base}/app/reports?month=11`);
    // sent to the worker's login, then to the provider's login form
    await page.waitForSelector('input[name="login"]');
    assert.ok(page.url().startsWith(`${op.issuer}/`), page.url());
    assert.ok(visited.some((u) => u.startsWith(`${base}/auth/login?rd=`)), visited.join("\n"));
    assert.ok(visited.some((u) => u.startsWith(`${op.issuer}/auth?`)), visited.join("\n"));
    assert.equal(opRequests.length, 0, "no code exchange before the user signed in");

    await page.fill('input[name="login"]', "alice");
    await page.fill('input[name="password"]', "any");
    await page.click('button[type="submit"]');
    // the consent page, then back through the callback to the page first asked for
    await page.waitForSelector('button:has-text("Continue")');
    await Promise.all([page.waitForURL(`${base}/app/reports?month=11`), page.click('button:has-text("Continue")')]);
    assert.ok(visited.some((u) => u.startsWith(`${base}/auth/callback?code=`)), visited.join("\n"));
    assert.deepEqual(opRequests, ["token"]);

    const name = USERS.alice.name;
    const text = await page.locator("body").innerText();
    assert.ok(text.includes(name), `the user's name on the page:\n${text.slice(0, 2000)}`);
    const seen = JSON.parse(text);
    assert.equal(seen.url, "/app/reports?month=11");
    assert.equal(seen.headers["x-edgegate-subject"], "alice");
    assert.equal(seen.headers["x-edgegate-name"], name);
    assert.equal(seen.headers["x-edgegate-credential"], "session");

    // the browser kept the session cookie as the gate set it, and no attempt cookie
    const cookies = await context.cookies(base);
    const session = cookies.find((c) => c.name === "edgegate_session");
    assert.ok(session, `session cookie in the browser: ${cookies.map((c) => c.name)}`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Lax");
    assert.ok(!cookies.some((c) => c.name.startsWith("edgegate_login_")), cookies.map((c) => c.name).join(","));
    // the page's own script cannot read the session (HttpOnly)
    assert.ok(!(await page.evaluate(() => document.cookie)).includes("edgegate_session"));

    // /auth/me in the same browser
    const me = await page.evaluate(async () => (await fetch("/auth/me", { headers: { accept: "application/json" } })).json());
    assert.equal(me.subject, "alice");
    assert.equal(me.name, name);
    assert.deepEqual(me.roles, USERS.alice.roles);

    // logout: the provider's end-session page, "Yes, sign me out", back to the post-logout page
    await page.goto(`${base}/auth/logout`);
    const endSession = visited.filter((u) => u.startsWith(`${op.issuer}/`)).at(-1);
    assert.ok(new URL(endSession).searchParams.get("id_token_hint"), `id_token_hint sent: ${endSession}`);
    assert.ok(!(await context.cookies(base)).some((c) => c.name === "edgegate_session"), "session cookie gone");
    await Promise.all([page.waitForURL(`${base}/signed-out`), page.click('button[name="logout"]')]);
    assert.ok(opRequests.includes("end_session"));
    await page.goto(`${base}/app/reports`);
    await page.waitForSelector('input[name="login"]');
    assert.ok(page.url().startsWith(`${op.issuer}/`), page.url());
    await context.close();
  });
}
