// Test harness: a small origin that echoes what it received, and real workerd (npm `workerd`)
// running the built worker (dist/) in front of it. Everything listens on 127.0.0.1; processes
// are started and stopped by PID with bounded timeouts.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { createServer as netServer } from "node:net";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const workerDir = dirname(here);
const dist = join(workerDir, "dist");

/** The real `edgegate` CLI (CARGO_TARGET_DIR is honoured; EDGEGATE_CLI: a binary already built). */
const cliExe =
  process.env.EDGEGATE_CLI || join(process.env.CARGO_TARGET_DIR || join(dirname(workerDir), "target"), "debug", "edgegate");

/** Builds the `edgegate` CLI with cargo (once per test file, in its `before`), unless EDGEGATE_CLI names one. */
export function buildEdgegateCli() {
  if (process.env.EDGEGATE_CLI) return;
  const build = spawnSync("cargo", ["build", "--quiet", "-p", "edgegate-cli"], {
    cwd: dirname(workerDir),
    stdio: ["ignore", "inherit", "inherit"],
    timeout: 1_200_000,
  });
  assert.equal(build.status, 0, "cargo build -p edgegate-cli failed");
  assert.ok(existsSync(cliExe), `${cliExe} missing after the build`);
}

/** Runs `edgegate ...args`; its stdout (a non-zero exit fails the test). */
export function edgegateCli(...args) {
  const r = spawnSync(cliExe, args, { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, `edgegate ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

export function workerdBinary() {
  for (const p of [
    join(workerDir, "node_modules/@cloudflare/workerd-linux-64/bin/workerd"),
    join(workerDir, "node_modules/.bin/workerd"),
  ]) {
    if (existsSync(p)) return p;
  }
  throw new Error("workerd is not installed: run `npm ci` in edge-worker/");
}

/**
 * A free TCP port on 127.0.0.1, closed again before use. It is drawn below Linux's ephemeral
 * range (32768–60999): a port the kernel picks for `listen(0)` is also what outgoing connections
 * of the test files running in parallel take, so between the check and workerd's bind another
 * process could hold it ("Address already in use"). Random ports from 20000–32767 are tried
 * until one binds.
 */
export async function freePort() {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12768);
    const ok = await new Promise((resolve) => {
      const s = netServer();
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error("no free port in 20000-32767 on 127.0.0.1");
}

/**
 * An origin that answers every request with JSON: {method, url, headers, body}, except the
 * paths given to `route(path, {status, headers, body})` (e.g. a JWKS or discovery document).
 * The JSON also holds what a CGI-style app would see: `rawHeaders` ([name, value] in order and
 * as received), `environ` (WSGI/Rack/PHP keys: `HTTP_` + upper case, `-` -> `_`, repeats joined
 * with `,`) and request `trailers`. `received` lists every echoed request, `seen(path)` says
 * whether a request for `path` (with its query) reached the origin at all.
 */
export async function startOrigin() {
  const routes = new Map();
  const hits = new Map();
  // Header bounds are the gate's to enforce (431 headers_too_large): the origin itself accepts
  // up to 256 KiB of headers (Node's default is 16 KiB), so a request the gate let through is
  // seen here, not refused by Node.
  const server = createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
    const fixed = routes.get(req.url);
    if (fixed) {
      hits.set(req.url, (hits.get(req.url) ?? 0) + 1);
      res.writeHead(fixed.status ?? 200, { "content-type": "application/json", ...fixed.headers });
      res.end(typeof fixed.body === "string" ? fixed.body : JSON.stringify(fixed.body));
      return;
    }
    arrived.add(req.url);
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size <= 1 << 20) chunks.push(c);
    });
    req.on("end", () => {
      const pairs = (raw) => raw.flatMap((v, i) => (i % 2 ? [] : [[v, raw[i + 1]]]));
      const rawHeaders = pairs(req.rawHeaders);
      const environ = {};
      for (const [n, v] of rawHeaders) {
        const k = "HTTP_" + n.toUpperCase().replaceAll("-", "_");
        environ[k] = k in environ ? `${environ[k]},${v}` : v;
      }
      const echo = {
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        rawHeaders,
        environ,
        trailers: pairs(req.rawTrailers),
      };
      received.push(echo);
      const body = JSON.stringify(echo);
      res.writeHead(200, { "content-type": "application/json", "x-origin": "echo" });
      res.end(body);
    });
  });
  const received = [];
  const arrived = new Set();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    route: (path, reply) => routes.set(path, reply),
    hits: (path) => hits.get(path) ?? 0,
    received,
    seen: (path) => arrived.has(path) || hits.has(path),
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** The session key the worker tests' configs share (32 bytes, base64url; test-only). */
export const SESSION_SECRET_B64 = "jwoaIj8MA4uqORbygI3Aqi_UBO4gJmB9oGyzqIjWUPI";

/** A rule for `/admin`: a session or a JWT with the `admin` role; a browser without one is sent
 * to `/auth/login`. */
export const ADMIN_BEHIND_LOGIN = Object.freeze({
  name: "admin",
  match: { path: { prefix: "/admin" } },
  credentials: ["session", "jwt"],
  require: { roles_any: ["admin"] },
  login_url: "/auth/login",
});

/** Each identity header the origin echoed (`x-edgegate-<name>` in `seen.headers`) has the value
 * `expected` gives for `<name>`. */
export function assertIdentity(seen, expected) {
  for (const [name, value] of Object.entries(expected)) {
    assert.equal(seen.headers[`x-edgegate-${name}`], value, `x-edgegate-${name}`);
  }
}

/** A GET of `url` with `token` as bearer credential: {status, body (the JSON when it parses, else
 * the text), www (the WWW-Authenticate header)}. */
export async function getWithBearer(url, token) {
  const r = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const text = await r.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, body, www: r.headers.get("www-authenticate") };
}

function capnpString(s) {
  return JSON.stringify(s);
}

/**
 * Starts workerd with one socket per worker. `workers` is a list of
 * {name, config (object or raw string), origin: "binding" | "url", usedLinks?: "own" | "<worker>",
 *  deviceGrants?: "own" (binds DEVICE_GRANTS for login.device),
 *  port? (fixed port, e.g. when the config must name the worker's own URL), text? ({BINDING: value},
 *  extra text bindings such as secrets),
 * vars?: {NAME: "text"} (extra text bindings), flags?: [compatibility flags],
 * entry?: "/abs/path.mjs" (a main module put before worker.mjs, e.g. a test probe that wraps it),
 * services?: {BINDING: "<worker>"} (service bindings to other workers of this run),
 * tails?: ["<worker>"], streamingTails?: ["<worker>"] (workers that get this one's tail events)}.
 * `experimental`: run workerd with --experimental (for experimental compatibility flags).
 * Returns {urls: {name: "http://127.0.0.1:port"}, logs(), stop()}.
 */
export async function startWorkerd({ originPort, workers, experimental = false }) {
  mkdirSync(join(here, ".run"), { recursive: true });
  const dir = mkdtempSync(join(here, ".run", "w-"));
  for (const f of ["worker.mjs", "edgegate_worker.js", "edgegate_worker_bg.wasm"]) {
    if (!existsSync(join(dist, f))) throw new Error(`dist/${f} is missing: run ./build.sh first`);
    copyFileSync(join(dist, f), join(dir, f));
  }
  const urls = {};
  const services = [];
  const sockets = [];
  const defs = [];
  for (const w of workers) {
    const port = w.port ?? (await freePort());
    urls[w.name] = `http://127.0.0.1:${port}`;
    const configFile = `config-${w.name}.json`;
    writeFileSync(join(dir, configFile), typeof w.config === "string" ? w.config : JSON.stringify(w.config));
    const bindings = [
      ...Object.entries(w.vars ?? {}).map(([n, v]) => `(name = ${capnpString(n)}, text = ${capnpString(v)})`),
      `(name = "EDGEGATE_CONFIG", text = embed ${capnpString(configFile)})`,
      w.origin === "url"
        ? `(name = "ORIGIN_URL", text = ${capnpString(`http://127.0.0.1:${originPort}`)})`
        : `(name = "ORIGIN", service = "origin")`,
    ];
    for (const [name, value] of Object.entries(w.text ?? {})) {
      bindings.push(`(name = ${capnpString(name)}, text = ${capnpString(value)})`);
    }
    for (const [name, service] of Object.entries(w.services ?? {})) {
      bindings.push(`(name = ${capnpString(name)}, service = ${capnpString(service)})`);
    }
    let tails = "";
    if (w.tails) tails += `tails = [${w.tails.map(capnpString).join(", ")}],\n  `;
    if (w.streamingTails) tails += `streamingTails = [${w.streamingTails.map(capnpString).join(", ")}],\n  `;
    // `usedLinks: "own"` defines the UsedLinks Durable Object namespace in this worker;
    // `usedLinks: "<worker>"` binds the namespace another worker defines (shared single use).
    let durable = "";
    const namespaces = [];
    if (w.usedLinks === "own") {
      namespaces.push(`(className = "UsedLinks", uniqueKey = "edgegate-used-links")`);
      bindings.push(`(name = "USED_LINKS", durableObjectNamespace = "UsedLinks")`);
    } else if (w.usedLinks) {
      bindings.push(
        `(name = "USED_LINKS", durableObjectNamespace = (className = "UsedLinks", serviceName = ${capnpString(w.usedLinks)}))`,
      );
    }
    // deviceGrants: "own" binds DEVICE_GRANTS (class DeviceGrants) for login.device.
    if (w.deviceGrants === "own") {
      namespaces.push(`(className = "DeviceGrants", uniqueKey = "edgegate-device-grants-${w.name}")`);
      bindings.push(`(name = "DEVICE_GRANTS", durableObjectNamespace = "DeviceGrants")`);
    }
    if (namespaces.length) {
      // In-memory storage loses an object's data when workerd evicts it after 10 s idle; device
      // records must outlive that (a code lives minutes), so those workers store on disk.
      let storage = "(inMemory = void)";
      if (w.deviceGrants === "own") {
        const disk = join(dir, `do-${w.name}`);
        mkdirSync(disk, { recursive: true });
        services.push(`(name = ${capnpString(`do-disk-${w.name}`)}, disk = (path = ${capnpString(disk)}, writable = true))`);
        storage = `(localDisk = ${capnpString(`do-disk-${w.name}`)})`;
      }
      durable = `durableObjectNamespaces = [${namespaces.join(", ")}],
  durableObjectStorage = ${storage},`;
    }
    services.push(`(name = ${capnpString(w.name)}, worker = .${w.name})`);
    sockets.push(
      `(name = ${capnpString(w.name)}, address = ${capnpString(`127.0.0.1:${port}`)}, http = (), service = ${capnpString(w.name)})`,
    );
    let entry = "";
    if (w.entry) {
      const name = `entry-${w.name}.mjs`;
      copyFileSync(w.entry, join(dir, name));
      entry = `(name = ${capnpString(name)}, esModule = embed ${capnpString(name)}),`;
    }
    defs.push(`const ${w.name} :Workerd.Worker = (
  modules = [
    ${entry}
    (name = "worker.mjs", esModule = embed "worker.mjs"),
    (name = "edgegate_worker.js", esModule = embed "edgegate_worker.js"),
    (name = "edgegate_worker_bg.wasm", wasm = embed "edgegate_worker_bg.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  compatibilityFlags = ${JSON.stringify(w.flags ?? [])},
  bindings = [
    ${bindings.join(",\n    ")},
  ],
  ${durable}
  ${tails}globalOutbound = "net",
);`);
  }
  const capnp = `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    ${services.join(",\n    ")},
    (name = "origin", external = (address = ${capnpString(`127.0.0.1:${originPort}`)}, http = ())),
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [
    ${sockets.join(",\n    ")},
  ],
);

${defs.join("\n\n")}
`;
  writeFileSync(join(dir, "workerd.capnp"), capnp);

  return serveWorkerd(dir, urls, ["--verbose", ...(experimental ? ["--experimental"] : [])]);
}

/**
 * Spawns `cmd` with `args`, collecting its stdout and stderr. Returns {child, output(),
 * terminate(graceMs)}: terminate() ends the process by its PID (SIGTERM, SIGKILL after
 * `graceMs`) and resolves once it exited; a process already gone is left alone. The workerd and
 * Envoy launchers use it.
 */
export function spawnCollecting(cmd, args, { env } = {}) {
  let out = "";
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...(env ? { env } : {}) });
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise((resolve) => child.once("exit", (code, sig) => resolve({ code, sig })));
  const terminate = async (graceMs) => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, "SIGTERM");
      const t = setTimeout(() => {
        try {
          process.kill(child.pid, "SIGKILL");
        } catch {}
      }, graceMs);
      await exited;
      clearTimeout(t);
    }
  };
  return { child, output: () => out, terminate };
}

/**
 * Runs `workerd serve <dir>/workerd.capnp <args>` and waits (20 s at most) until every URL of
 * `urls` ({name: url}) answers. Returns {urls, pid, logs(), stop()}; stop() ends workerd by its
 * PID (SIGTERM, SIGKILL after 3 s) and removes `dir`. The tests and the benchmarks start it so.
 */
export async function serveWorkerd(dir, urls, args = []) {
  const { child, output, terminate } = spawnCollecting(workerdBinary(), [
    "serve",
    join(dir, "workerd.capnp"),
    ...args,
  ]);

  const stop = async () => {
    await terminate(3000);
    rmSync(dir, { recursive: true, force: true });
  };

  // Wait (bounded) until every socket answers.
  const deadline = Date.now() + 20_000;
  for (const url of Object.values(urls)) {
    for (;;) {
      if (child.exitCode !== null) {
        await stop();
        throw new Error(`workerd exited early:\n${output()}`);
      }
      try {
        await fetch(`${url}/__ready`, { signal: AbortSignal.timeout(1000), redirect: "manual" });
        break;
      } catch {
        if (Date.now() > deadline) {
          await stop();
          throw new Error(`workerd did not come up in 20 s:\n${output()}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  return { urls, logs: output, stop, pid: child.pid };
}
