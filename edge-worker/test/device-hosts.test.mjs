// Device authorization (login.device) through Envoy, with the suite shared by the hosts
// (EDGEGATE_RP_HOSTS, rp-harness.mjs): the Envoy wasm filter keeps the flow's records in
// Envoy's shared data, the native module in its process memory (per Envoy process either way).
// The worker's own, longer suite is device.test.mjs (Durable Object, binding checks); here the
// worker runs only when EDGEGATE_RP_HOSTS names it with Envoy.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { assertIdentity, freePort, startOrigin } from "./harness.mjs";
import { startOP } from "./op.mjs";
import { GATE_HOSTS, HOST_TRAITS, startGates } from "./rp-harness.mjs";
import { SECRET, answerDevice, assertBadInputsAreRefused, assertCredentialStaysAtTheEdge, deviceCode, deviceConfig, openVerification, pollOnce } from "./device.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hosts = GATE_HOSTS.length === 1 && GATE_HOSTS[0] === "worker" ? [] : GATE_HOSTS;

for (const hostName of hosts) {
  describe(`device authorization, host: ${hostName}`, () => {
    let origin;
    let op;
    let gw;
    let base;
    let shortBase;

    before(async () => {
      origin = await startOrigin();
      const opPort = await freePort();
      const port = await freePort();
      const shortPort = await freePort();
      base = `http://127.0.0.1:${port}`;
      shortBase = `http://127.0.0.1:${shortPort}`;
      op = await startOP({
        port: opPort,
        clients: [{ client_id: "edge", client_secret: SECRET, token_endpoint_auth_method: "client_secret_basic", redirect_uris: [`${base}/auth/callback`, `${shortBase}/auth/callback`] }],
      });
      gw = await startGates(hostName, {
        originPort: origin.port,
        gates: [
          { name: "dev", port, deviceGrants: "own", config: deviceConfig({ issuer: op.issuer, base, device: { interval_s: 2 } }) },
          { name: "short", port: shortPort, deviceGrants: "own", config: deviceConfig({ issuer: op.issuer, base: shortBase, device: { code_ttl_s: 10 } }) },
        ],
      });
      assert.ok(HOST_TRAITS[hostName]);
    });

    after(async () => {
      await gw?.stop();
      await op?.stop();
      await origin?.stop();
    });

    test("code, pending, slow_down, login and approval, credential once, protected route", async () => {
      const code = await deviceCode(base);
      assert.equal(code.verification_uri, `${base}/auth/device`);
      assert.equal((await pollOnce(base, code.device_code)).body.error, "authorization_pending");
      const fast = await pollOnce(base, code.device_code);
      assert.deepEqual([fast.body.error, fast.body.interval], ["slow_down", 7]);

      const { jar, status, page } = await openVerification(base, code.verification_uri_complete);
      assert.equal(status, 200, page);
      assert.match(page, /test-cli/);
      assert.equal((await answerDevice(base, jar, page)).status, 200);

      await sleep(7100);
      const ok = await pollOnce(base, code.device_code);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.ok(ok.body.access_token.startsWith("egs_"));
      const r = await fetch(`${base}/admin/device`, { headers: { authorization: `Bearer ${ok.body.access_token}` } });
      assert.equal(r.status, 200);
      const seen = await r.json();
      assertIdentity(seen, { subject: "alice", roles: "admin,staff", credential: "session" });
      assert.equal(seen.headers.authorization, undefined);
      await assertCredentialStaysAtTheEdge(base, ok.body.access_token);
      assert.equal((await pollOnce(base, code.device_code)).body.error, "invalid_grant");
      assert.equal((await answerDevice(base, jar, page)).status, 409, "a code is confirmed once");
      await sleep(200);
      assert.ok(!gw.logs().includes(ok.body.access_token.slice(4)), "the credential is logged");
      assert.ok(!gw.logs().includes(code.device_code.split(".")[1]), "the device code is logged");
      // The user code by its first half only: the log line is there, the whole code is not.
      const [head] = code.user_code.split("-");
      assert.ok(gw.logs().includes(`code ${head}-**** issued`), "no issue line naming the code's first half");
      for (const whole of [code.user_code, code.user_code.replace("-", "")]) {
        assert.ok(!gw.logs().includes(whole), "the user code is logged");
      }
    });

    test("expired: a code past code_ttl_s is expired_token, and cannot be approved", async () => {
      const code = await deviceCode(shortBase);
      assert.equal(code.expires_in, 10);
      const { jar, page } = await openVerification(shortBase, code.verification_uri_complete);
      await sleep(10_500);
      const poll = await pollOnce(shortBase, code.device_code);
      assert.deepEqual([poll.status, poll.body.error], [400, "expired_token"]);
      assert.equal((await answerDevice(shortBase, jar, page)).status, 403, "the confirm form expired with the code");
    });

    test("bad inputs: oversized, malformed, repeated fields, very long codes get a clear 4xx", async () => {
      const { jar, status } = await openVerification(base, `${base}/auth/device`);
      assert.equal(status, 200);
      await assertBadInputsAreRefused(base, jar);
    });

    test("denied, unknown and wrong codes", async () => {
      const code = await deviceCode(base);
      const { jar, page } = await openVerification(base, code.verification_uri_complete, { user: "bob" });
      assert.equal((await answerDevice(base, jar, page, "deny")).status, 200);
      assert.equal((await pollOnce(base, code.device_code)).body.error, "access_denied");
      assert.equal((await pollOnce(base, `BBBBBBBB.${"A".repeat(43)}`)).body.error, "invalid_grant");
      const wrong = await fetch(`${base}/auth/device?user_code=BBBB-BBBB`, { headers: { cookie: jar.header(base + "/auth/device"), accept: "text/html" }, redirect: "manual" });
      assert.equal(wrong.status, 404);
    });
  });
}
