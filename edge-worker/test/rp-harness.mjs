// Helpers for the OIDC login tests (rp-conformance.test.mjs, browser.test.mjs), next to
// harness.mjs (which they reuse and do not change):
//
// - startWorkersAt: like harness.startWorkerd, but each worker listens on a port chosen BEFORE
//   its config is written, because the login config needs the worker's own absolute
//   `redirect_uri` (http://127.0.0.1:<port>/auth/callback); and it takes extra text bindings
//   (e.g. the OIDC_CLIENT_SECRET secret);
// - Jar: a minimal cookie jar (one host: 127.0.0.1);
// - driveLogin: /auth/login -> the OP's /authorize -> /auth/callback, by hand, one hop at a time,
//   so a test sees every response.
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, workerDir, workerdBinary } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(workerDir, "dist");
const q = (s) => JSON.stringify(s);

/**
 * Starts one workerd with the given workers. `workers`: [{name, port, config (object), bindings?
 * ({NAME: "text"})}], every worker with an `ORIGIN` service binding to 127.0.0.1:originPort and
 * the `network` outbound that may reach 127.0.0.1 (the OP). Returns {urls, logs(), stop(), pid}.
 */
export async function startWorkersAt({ originPort, workers }) {
  mkdirSync(join(here, ".run"), { recursive: true });
  const dir = mkdtempSync(join(here, ".run", "rp-"));
  for (const f of ["worker.mjs", "edgegate_worker.js", "edgegate_worker_bg.wasm"]) {
    if (!existsSync(join(dist, f))) throw new Error(`dist/${f} is missing: run ./build.sh first`);
    copyFileSync(join(dist, f), join(dir, f));
  }
  const urls = {};
  const services = [];
  const sockets = [];
  const defs = [];
  for (const w of workers) {
    if (!/^[a-z][a-z0-9]*$/.test(w.name)) throw new Error(`worker name ${w.name}: lower-case letters and digits`);
    urls[w.name] = `http://127.0.0.1:${w.port}`;
    const configFile = `config-${w.name}.json`;
    writeFileSync(join(dir, configFile), JSON.stringify(w.config));
    const bindings = [
      `(name = "EDGEGATE_CONFIG", text = embed ${q(configFile)})`,
      `(name = "ORIGIN", service = "origin")`,
      ...Object.entries(w.bindings ?? {}).map(([k, v]) => `(name = ${q(k)}, text = ${q(v)})`),
    ];
    services.push(`(name = ${q(w.name)}, worker = .${w.name})`);
    sockets.push(`(name = ${q(w.name)}, address = ${q(`127.0.0.1:${w.port}`)}, http = (), service = ${q(w.name)})`);
    defs.push(`const ${w.name} :Workerd.Worker = (
  modules = [
    (name = "worker.mjs", esModule = embed "worker.mjs"),
    (name = "edgegate_worker.js", esModule = embed "edgegate_worker.js"),
    (name = "edgegate_worker_bg.wasm", wasm = embed "edgegate_worker_bg.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  bindings = [
    ${bindings.join(",\n    ")},
  ],
  globalOutbound = "net",
);`);
  }
  writeFileSync(
    join(dir, "workerd.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    ${services.join(",\n    ")},
    (name = "origin", external = (address = ${q(`127.0.0.1:${originPort}`)}, http = ())),
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [
    ${sockets.join(",\n    ")},
  ],
);

${defs.join("\n\n")}
`,
  );

  let out = "";
  const child = spawn(workerdBinary(), ["serve", join(dir, "workerd.capnp"), "--verbose"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise((resolve) => child.once("exit", (code, sig) => resolve({ code, sig })));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, "SIGTERM");
      const t = setTimeout(() => {
        try {
          process.kill(child.pid, "SIGKILL");
        } catch {}
      }, 3000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  for (const url of Object.values(urls)) {
    for (;;) {
      if (child.exitCode !== null) {
        await stop();
        throw new Error(`workerd exited early:\n${out}`);
      }
      try {
        await fetch(`${url}/__ready`, { signal: AbortSignal.timeout(1000), redirect: "manual" });
        break;
      } catch {
        if (Date.now() > deadline) {
          await stop();
          throw new Error(`workerd did not come up in 20 s:\n${out}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  return { urls, logs: () => out, stop, pid: child.pid };
}

/** Distinct free ports (freePort can hand out the same one twice in a row). */
export async function freePorts(n) {
  const ports = new Set();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

/** A cookie jar for one host. Honours deletion (empty value, Max-Age<=0, Expires in the past). */
export class Jar {
  constructor() {
    this.cookies = new Map();
  }
  /** Takes the Set-Cookie headers of a response; returns them parsed ([{name, value, attrs}]). */
  take(res) {
    const seen = [];
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...rest] = line.split(";");
      const i = pair.indexOf("=");
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const attrs = Object.fromEntries(
        rest.map((a) => {
          const j = a.indexOf("=");
          return j < 0 ? [a.trim().toLowerCase(), true] : [a.slice(0, j).trim().toLowerCase(), a.slice(j + 1).trim()];
        }),
      );
      const expired =
        value === "" ||
        (attrs["max-age"] !== undefined && Number(attrs["max-age"]) <= 0) ||
        (typeof attrs.expires === "string" && Date.parse(attrs.expires) <= Date.now());
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
      seen.push({ name, value, attrs, expired });
    }
    return seen;
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
  has(name) {
    return this.cookies.has(name);
  }
  names() {
    return [...this.cookies.keys()];
  }
}

/** GET without following redirects; with the jar's cookies, taking its Set-Cookies. */
export async function jarGet(url, jar, headers = {}) {
  const h = { accept: "text/html", ...headers };
  if (jar && jar.cookies.size) h.cookie = jar.header();
  const res = await fetch(url, { headers: h, redirect: "manual", signal: AbortSignal.timeout(10_000) });
  const setCookies = jar ? jar.take(res) : [];
  const body = await res.text();
  return { status: res.status, location: res.headers.get("location"), headers: res.headers, setCookies, body, url };
}

/**
 * Drives a login by hand: GET base/auth/login?rd=… -> (302) the OP's /authorize -> (302) the
 * callback -> its answer. `tamperCallback(url)` may change the callback URL before it is sent.
 * Returns {jar, start, authorize, callback}; a step that did not happen is undefined.
 */
export async function driveLogin(base, { rd = "/app/page", jar = new Jar(), tamperCallback, loginPath = "/auth/login" } = {}) {
  const start = await jarGet(`${base}${loginPath}?rd=${encodeURIComponent(rd)}`, jar);
  if (start.status !== 302 || !start.location) return { jar, start };
  const authorize = await jarGet(new URL(start.location, base).toString(), null);
  if (authorize.status !== 302 || !authorize.location) return { jar, start, authorize };
  const cb = new URL(authorize.location, start.location);
  tamperCallback?.(cb);
  const callback = await jarGet(cb.toString(), jar);
  return { jar, start, authorize, callback };
}

/** A short description of a step for assertion messages. */
export function describeStep(step) {
  if (!step) return "(not reached)";
  const cookies = step.setCookies.map((c) => `${c.name}${c.expired ? "(deleted)" : ""}`).join(",");
  return `${step.status} location=${step.location} set-cookie=[${cookies}] body=${step.body.slice(0, 300)}`;
}
