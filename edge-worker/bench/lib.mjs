// Shared by the benchmarks: keys and tokens minted with npm `jose`, a workerd config writer for
// any mix of workers, and workerd's CPU time from /proc.
import { readdirSync, readFileSync, statSync, writeFileSync, mkdirSync, mkdtempSync, copyFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { freePort, serveWorkerd } from "../test/harness.mjs";

export const benchDir = dirname(fileURLToPath(import.meta.url));
export const workerDir = dirname(benchDir);
export const ISSUER = "https://idp.bench";
export const ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];

/** One key pair per algorithm (RSA 2048 for RS256 and PS256, as most IdPs use). */
export async function mintKeys() {
  const keys = {};
  for (const alg of ALGS) {
    const pair = await generateKeyPair(alg, { modulusLength: 2048, extractable: true });
    keys[alg] = { ...pair, jwk: { ...(await exportJWK(pair.publicKey)), kid: `k-${alg}`, alg, use: "sig" } };
  }
  return keys;
}

/** A realistic access token (about 20 claims' worth of payload). */
export async function mintToken(keys, alg, extra = {}) {
  const t = Math.floor(Date.now() / 1000);
  return new SignJWT({
    iss: ISSUER, aud: "api", sub: "user-1234567890", iat: t, exp: t + 3600,
    email: "alice@example.com", roles: ["staff", "reader"], scope: "openid email profile", ...extra,
  })
    .setProtectedHeader({ alg, kid: `k-${alg}`, typ: "JWT" })
    .sign(keys[alg].privateKey);
}

/** The edgegate config the benchmarks use: one provider with every algorithm's key. */
export function edgegateConfig(keys, { cache = true } = {}) {
  return {
    realm: "bench",
    jwt: {
      providers: [{
        name: "bench", issuer: ISSUER, audiences: ["api"], algorithms: ALGS,
        jwks: { keys: ALGS.map((a) => keys[a].jwk) }, claims: { roles: ["roles"] },
      }],
      cache: { max_entries: cache ? 1024 : 0 },
    },
    rules: [
      { name: "public", match: { path: { prefix: "/public" } }, require: { public: true } },
      { name: "api", match: { path: { prefix: "/" } }, credentials: ["jwt"], require: { roles_any: ["staff"] } },
    ],
  };
}

/** Every file under `dir` as a workerd module list entry, named by its path relative to `base`. */
export function moduleList(dir, base, prefix = "") {
  const out = [];
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) out.push(...moduleList(p, base, prefix));
    else if (f.endsWith(".js") || f.endsWith(".mjs")) {
      const name = prefix + relative(base, p);
      out.push(`(name = ${JSON.stringify(name)}, esModule = embed ${JSON.stringify(relative(base, p))})`);
    }
  }
  return out;
}

/**
 * Starts workerd. `workers`: [{name, modules: [capnp module entries], files: {name: absPath},
 * bindings: [capnp], flags: [...]}]; files are copied next to the config. Returns {urls, pid, stop, logs}.
 */
export async function startWorkerd(workers, { originPort } = {}) {
  mkdirSync(join(benchDir, ".run"), { recursive: true });
  const dir = mkdtempSync(join(benchDir, ".run", "b-"));
  const urls = {};
  const services = [];
  const sockets = [];
  const defs = [];
  for (const w of workers) {
    for (const [name, src] of Object.entries(w.files ?? {})) {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      copyFileSync(src, join(dir, name));
    }
    const port = await freePort();
    urls[w.name] = `http://127.0.0.1:${port}`;
    services.push(`(name = ${JSON.stringify(w.name)}, worker = .${w.name})`);
    sockets.push(`(name = ${JSON.stringify(w.name)}, address = "127.0.0.1:${port}", http = (), service = ${JSON.stringify(w.name)})`);
    defs.push(`const ${w.name} :Workerd.Worker = (
  modules = [${w.modules.join(", ")}],
  compatibilityDate = "2025-09-01",
  compatibilityFlags = ${JSON.stringify(w.flags ?? [])},
  bindings = [${(w.bindings ?? []).join(", ")}],
  globalOutbound = "net",
);`);
  }
  const origin = originPort
    ? `(name = "origin", external = (address = "127.0.0.1:${originPort}", http = ())),`
    : "";
  writeFileSync(join(dir, "workerd.capnp"), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [${services.join(", ")}, ${origin} (name = "net", network = (allow = ["public", "private", "local"]))],
  sockets = [${sockets.join(", ")}],
);
${defs.join("\n")}
`);
  return serveWorkerd(dir, urls);
}

/** workerd's CPU time (user + system, all threads) in microseconds, from /proc/<pid>/stat. */
export function cpuMicros(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields 14 and 15 (utime, stime) are at 11 and 12 after the ")" of the command name
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
}
export const CLK_TCK = 100;

/** The edgegate worker's module entries and files (from dist/, built by build.sh). */
export function edgegateModules() {
  const dist = join(workerDir, "dist");
  return {
    modules: [
      `(name = "worker.mjs", esModule = embed "eg/worker.mjs")`,
      `(name = "edgegate_worker.js", esModule = embed "eg/edgegate_worker.js")`,
      `(name = "edgegate_worker_bg.wasm", wasm = embed "eg/edgegate_worker_bg.wasm")`,
    ],
    files: Object.fromEntries(
      ["worker.mjs", "edgegate_worker.js", "edgegate_worker_bg.wasm"].map((f) => [`eg/${f}`, join(dist, f)]),
    ),
  };
}

/** The same with nanosecond resolution: the sum of every thread's /proc/<pid>/task/<tid>/schedstat
 * (time on CPU), for short measurements where clock ticks are too coarse. */
export function cpuMicrosPrecise(pid) {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {}
  }
  return ns / 1000;
}
