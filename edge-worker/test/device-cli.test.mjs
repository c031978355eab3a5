// `edgegate login <url>` (the real CLI binary, built with cargo; CARGO_TARGET_DIR is honoured)
// against the edge worker in real workerd with login.device, and oidc-provider: the CLI prints
// the code and the page, the test plays the browser (login at the provider, approve), the CLI
// stores the credential (0600, under XDG_CONFIG_HOME) and prints it with --print-token, and
// the credential opens a protected route at the origin. A denial ends the CLI with exit 1.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { assertIdentity, freePort, startOrigin, startWorkerd, workerDir } from "./harness.mjs";
import { startOP } from "./op.mjs";
import { SECRET, answerDevice, deviceConfig, openVerification } from "./device.mjs";

const root = dirname(workerDir);
const targetDir = process.env.CARGO_TARGET_DIR || join(root, "target");
const exe = join(targetDir, "debug", "edgegate");

/**
 * Starts `edgegate login` and resolves with {url (verification_uri_complete), done} as soon as
 * it printed the page; `done` resolves with {code, stdout, stderr} when it exits.
 */
function startLogin(args, env) {
  const child = spawn(exe, ["login", ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let timer;
  const done = new Promise((resolve) =>
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
  const url = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no URL printed:\n${stderr}`)), 20_000);
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => {
      stderr += d;
      const m = /\(or open (\S+)\)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return { url, done, child };
}

describe("edgegate login against the worker", () => {
  let origin;
  let op;
  let workerd;
  let base;
  let home;

  before(async () => {
    const build = spawnSync("cargo", ["build", "--quiet", "-p", "edgegate-cli"], {
      cwd: root,
      stdio: ["ignore", "inherit", "inherit"],
      timeout: 1_200_000,
    });
    assert.equal(build.status, 0, "cargo build -p edgegate-cli failed");
    assert.ok(existsSync(exe), `${exe} missing after the build`);
    origin = await startOrigin();
    const opPort = await freePort();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    op = await startOP({
      port: opPort,
      clients: [
        {
          client_id: "edge",
          client_secret: SECRET,
          token_endpoint_auth_method: "client_secret_basic",
          redirect_uris: [`${base}/auth/callback`],
        },
      ],
    });
    workerd = await startWorkerd({
      originPort: origin.port,
      workers: [{ name: "dev", port, origin: "binding", deviceGrants: "own", config: deviceConfig({ issuer: op.issuer, base }) }],
    });
    home = mkdtempSync(join(tmpdir(), "edgegate-login-"));
  });

  after(async () => {
    await workerd?.stop();
    await op?.stop();
    await origin?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  test("login: code shown, approved in the browser, credential stored 0600 and printed", async () => {
    const run = startLogin([base, "--print-token", "--client-name", "ci-laptop"], { XDG_CONFIG_HOME: home });
    const url = await run.url;
    assert.match(run.child.spawnargs.join(" "), /login/);
    const { jar, status, page } = await openVerification(base, url);
    assert.equal(status, 200, page);
    assert.match(page, /ci-laptop/);
    const approved = await answerDevice(base, jar, page);
    assert.equal(approved.status, 200);
    const { code, stdout, stderr } = await run.done;
    assert.equal(code, 0, stderr);
    assert.match(stderr, /To log in, open http:\/\/127\.0\.0\.1:\d+\/auth\/device/);
    assert.match(stderr, /enter the code: [BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}/);
    const token = stdout.trim();
    assert.ok(token.startsWith("egs_"), stdout);
    assert.ok(!stderr.includes(token), "the token is never on stderr");

    const file = join(home, "edgegate", "credentials.json");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const stored = JSON.parse(readFileSync(file, "utf8")).deployments[base];
    assert.equal(stored.access_token, token);
    assert.ok(stored.expires_at > Date.now() / 1000 + 3000);

    const r = await fetch(`${base}/admin/cli`, { headers: { authorization: `Bearer ${stored.access_token}` } });
    assert.equal(r.status, 200);
    assertIdentity(await r.json(), { subject: "alice", credential: "session", roles: "admin,staff" });
  });

  test("a denial ends the CLI with exit 1 and stores nothing", async () => {
    const other = mkdtempSync(join(tmpdir(), "edgegate-login-"));
    try {
      const run = startLogin([base], { XDG_CONFIG_HOME: other });
      const { jar, page } = await openVerification(base, await run.url, { user: "bob" });
      assert.equal((await answerDevice(base, jar, page, "deny")).status, 200);
      const { code, stdout, stderr } = await run.done;
      assert.equal(code, 1, stderr);
      assert.match(stderr, /denied/);
      assert.equal(stdout, "");
      assert.ok(!existsSync(join(other, "edgegate", "credentials.json")));
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  test("a deployment without login.device is a clear error", async () => {
    // spawned, not spawnSync: the origin answering it runs in this process
    const run = startLogin([`http://127.0.0.1:${origin.port}`, "--no-store", "--print-token"], {});
    run.url.catch(() => {});
    const r = await run.done;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /login\.device/);
  });
});
