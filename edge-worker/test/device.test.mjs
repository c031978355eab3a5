// Device authorization (RFC 8628, login.device) through the edge worker in real workerd,
// against a real OpenID Provider (npm `oidc-provider`, test/op.mjs): a device asks for a code,
// a browser (cookie jar) logs in through the provider and approves it, the device polls and
// receives a credential that opens a protected route at the origin. Then every error answer:
// pending, slow_down, denied, expired, reuse, a wrong code, the wrong-code limit, another
// session's confirmation, and a worker without the DEVICE_GRANTS binding.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { assertIdentity, freePort, startOrigin, startWorkerd } from "./harness.mjs";
import { browse, startOP } from "./op.mjs";
import { SECRET, answerDevice, assertBadInputsAreRefused, assertCredentialStaysAtTheEdge, confirmFields, deviceCode, deviceConfig, openVerification, pollOnce } from "./device.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe("device authorization through the worker against oidc-provider", () => {
  let origin;
  let op;
  let workerd;
  const base = {};

  before(async () => {
    origin = await startOrigin();
    const opPort = await freePort();
    for (const name of ["dev", "short", "slow", "unbound"]) base[name] = `http://127.0.0.1:${await freePort()}`;
    op = await startOP({
      port: opPort,
      clients: [
        {
          client_id: "edge",
          client_secret: SECRET,
          token_endpoint_auth_method: "client_secret_basic",
          redirect_uris: Object.values(base).map((b) => `${b}/auth/callback`),
        },
      ],
    });
    const port = (name) => Number(new URL(base[name]).port);
    workerd = await startWorkerd({
      originPort: origin.port,
      workers: [
        { name: "dev", port: port("dev"), origin: "binding", deviceGrants: "own", config: deviceConfig({ issuer: op.issuer, base: base.dev }) },
        {
          name: "short",
          port: port("short"),
          origin: "binding",
          deviceGrants: "own",
          config: deviceConfig({ issuer: op.issuer, base: base.short, device: { code_ttl_s: 10 } }),
        },
        {
          // the clock is in whole seconds: two polls in a row are surely within 2 s
          name: "slow",
          port: port("slow"),
          origin: "binding",
          deviceGrants: "own",
          config: deviceConfig({ issuer: op.issuer, base: base.slow, device: { interval_s: 2 } }),
        },
        { name: "unbound", port: port("unbound"), origin: "binding", config: deviceConfig({ issuer: op.issuer, base: base.unbound }) },
      ],
    });
  });

  after(async () => {
    await workerd?.stop();
    await op?.stop();
    await origin?.stop();
  });

  test("the whole flow: code, login at the provider, approval, credential, protected route", async () => {
    const code = await deviceCode(base.dev);
    assert.match(code.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    assert.equal(code.verification_uri, `${base.dev}/auth/device`);
    assert.equal(code.verification_uri_complete, `${base.dev}/auth/device?user_code=${code.user_code}`);
    assert.equal(code.expires_in, 600);
    assert.equal(code.interval, 1);

    let poll = await pollOnce(base.dev, code.device_code);
    assert.deepEqual([poll.status, poll.body.error], [400, "authorization_pending"]);

    const { jar, status, page } = await openVerification(base.dev, code.verification_uri_complete);
    assert.equal(status, 200, page);
    assert.match(page, /test-cli/);
    assert.match(page, /alice@example\.com/);
    assert.ok(page.includes(code.user_code));
    const approved = await answerDevice(base.dev, jar, page);
    assert.equal(approved.status, 200);
    assert.match(await approved.text(), /Device approved/);

    await sleep(1100);
    poll = await pollOnce(base.dev, code.device_code);
    assert.equal(poll.status, 200, JSON.stringify(poll.body));
    assert.equal(poll.body.token_type, "Bearer");
    assert.ok(poll.body.access_token.startsWith("egs_"));
    const token = poll.body.access_token;
    assert.ok(poll.body.expires_in > 3500 && poll.body.expires_in <= 3600, `${poll.body.expires_in}`);

    // the credential opens the protected route with alice's identity; it does not go upstream
    const r = await fetch(`${base.dev}/admin/reports`, { headers: { authorization: `Bearer ${poll.body.access_token}` } });
    assert.equal(r.status, 200);
    const seen = await r.json();
    assert.equal(seen.url, "/admin/reports");
    assertIdentity(seen, { subject: "alice", roles: "admin,staff", credential: "session", email: "alice@example.com" });
    assert.equal(seen.headers.authorization, undefined);
    // a JWT-only route does not take it; a forged one is refused
    assert.equal((await fetch(`${base.dev}/jwt/x`, { headers: { authorization: `Bearer ${poll.body.access_token}` } })).status, 401);
    const forged = `${poll.body.access_token.slice(0, -3)}AAA`;
    assert.equal((await fetch(`${base.dev}/admin/x`, { headers: { authorization: `Bearer ${forged}` } })).status, 401);
    // like the session cookie, it never goes upstream, also where no rule took it
    await assertCredentialStaysAtTheEdge(base.dev, poll.body.access_token);

    // single delivery
    await sleep(1100);
    poll = await pollOnce(base.dev, code.device_code);
    assert.deepEqual([poll.status, poll.body.error], [400, "invalid_grant"]);
    // and the code cannot be confirmed again
    const again = await answerDevice(base.dev, jar, page);
    assert.equal(again.status, 409);
    // the credential (nor the device code's secret) is in no log line
    await sleep(200);
    assert.ok(!workerd.logs().includes(token.slice(4)), "the credential is logged");
    assert.ok(!workerd.logs().includes(code.device_code.split(".")[1]), "the device code is logged");
  });

  test("slow_down: polling faster than the interval adds 5 seconds", async () => {
    const code = await deviceCode(base.slow);
    assert.equal(code.interval, 2);
    assert.equal((await pollOnce(base.slow, code.device_code)).body.error, "authorization_pending");
    const fast = await pollOnce(base.slow, code.device_code);
    assert.deepEqual([fast.status, fast.body.error, fast.body.interval], [400, "slow_down", 7]);
    await sleep(7100);
    assert.equal((await pollOnce(base.slow, code.device_code)).body.error, "authorization_pending");
  });

  test("denied: the device is told access_denied", async () => {
    const code = await deviceCode(base.dev);
    const { jar, page } = await openVerification(base.dev, code.verification_uri_complete);
    const denied = await answerDevice(base.dev, jar, page, "deny");
    assert.equal(denied.status, 200);
    const poll = await pollOnce(base.dev, code.device_code);
    assert.deepEqual([poll.status, poll.body.error], [400, "access_denied"]);
  });

  test("expired: a code past code_ttl_s is expired_token, and cannot be approved", async () => {
    const code = await deviceCode(base.short);
    assert.equal(code.expires_in, 10);
    const { jar, page } = await openVerification(base.short, code.verification_uri_complete);
    assert.ok(confirmFields(page).csrf);
    await sleep(10_500);
    const poll = await pollOnce(base.short, code.device_code);
    assert.deepEqual([poll.status, poll.body.error], [400, "expired_token"]);
    const late = await answerDevice(base.short, jar, page);
    assert.equal(late.status, 403, "the confirm form expired with the code");
  });

  test("unknown and forged device codes are invalid_grant; bad requests say what is wrong", async () => {
    const code = await deviceCode(base.dev);
    const [uc, secret] = code.device_code.split(".");
    assert.equal((await pollOnce(base.dev, `${uc}.${"A".repeat(43)}`)).body.error, "invalid_grant");
    assert.equal((await pollOnce(base.dev, `BBBBBBBB.${secret}`)).body.error, "invalid_grant");
    assert.equal((await pollOnce(base.dev, "nonsense")).body.error, "invalid_grant");
    const other = await fetch(`${base.dev}/auth/device/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=authorization_code&code=x",
    });
    assert.deepEqual([other.status, (await other.json()).error], [400, "unsupported_grant_type"]);
    assert.equal((await fetch(`${base.dev}/auth/device/code`)).status, 405);
  });

  test("wrong user codes: said so, counted, then refused with 429 for that user", async () => {
    const code = await deviceCode(base.short);
    const { jar } = await openVerification(base.short, `${base.short}/auth/device`, { user: "bob" });
    const form = await browse(jar, `${base.short}/auth/device`);
    assert.equal(form.status, 200);
    assert.match(await form.text(), /name=user_code/);
    const malformed = await browse(jar, `${base.short}/auth/device?user_code=HELLO`);
    assert.equal(malformed.status, 400);
    for (const wrong of ["BBBB-BBBB", "bbbb-bbbc", "BBBBBBBD"]) {
      const r = await browse(jar, `${base.short}/auth/device?user_code=${wrong}`);
      assert.equal(r.status, 404, wrong);
    }
    const limited = await browse(jar, `${base.short}/auth/device?user_code=${code.user_code}`);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get("retry-after"), "10");
    // another user still can
    const { status } = await openVerification(base.short, code.verification_uri_complete);
    assert.equal(status, 200);
  });

  test("wrong user codes sent at once are bounded by the limit too (no race past the counters)", async () => {
    // bob's own budget at the `slow` gate (3 a window): 20 wrong codes in parallel
    const { jar } = await openVerification(base.slow, `${base.slow}/auth/device`, { user: "bob" });
    const codes = Array.from({ length: 20 }, (_, i) => `BBBB-BB${"BCDFGHJKLMNPQRSTVWXZ"[i]}B`);
    const statuses = await Promise.all(codes.map(async (c) => (await browse(jar, `${base.slow}/auth/device?user_code=${c}`)).status));
    const told = statuses.filter((s) => s === 404).length;
    assert.ok(told <= 3, `${told} wrong codes were answered, over the limit of 3: ${statuses}`);
    assert.ok(statuses.every((s) => s === 404 || s === 429), `${statuses}`);
    // and the right code afterwards waits too: the limit holds for the window
    const code = await deviceCode(base.slow);
    assert.equal((await browse(jar, `${base.slow}/auth/device?user_code=${code.user_code}`)).status, 429);
  });

  test("bad inputs: oversized, malformed, repeated fields, very long codes get a clear 4xx", async () => {
    const { jar, status } = await openVerification(base.dev, `${base.dev}/auth/device`);
    assert.equal(status, 200);
    await assertBadInputsAreRefused(base.dev, jar);
  });

  test("a confirmation works only from the session that saw the page", async () => {
    const code = await deviceCode(base.dev);
    const alice = await openVerification(base.dev, code.verification_uri_complete);
    const bob = await openVerification(base.dev, code.verification_uri_complete, { user: "bob" });
    assert.equal(bob.status, 200);
    // bob's browser posts alice's form
    const stolen = await answerDevice(base.dev, bob.jar, alice.page);
    assert.equal(stolen.status, 403);
    // without a session at all
    const fields = confirmFields(alice.page);
    const anon = await fetch(`${base.dev}/auth/device`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ ...fields, action: "approve" }).toString(),
    });
    assert.equal(anon.status, 401);
    assert.equal((await pollOnce(base.dev, code.device_code)).body.error, "authorization_pending");
  });

  test("without the DEVICE_GRANTS binding the device routes fail closed", async () => {
    const r = await fetch(`${base.unbound}/auth/device/code`, { method: "POST", body: "" });
    assert.equal(r.status, 500);
    await sleep(200);
    assert.match(workerd.logs(), /DEVICE_GRANTS Durable Object binding/);
  });
});
