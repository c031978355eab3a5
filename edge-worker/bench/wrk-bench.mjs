// edgegate vs a plain JS `jose` worker in one workerd, under wrk on 127.0.0.1 (see ../bench.sh).
// Every target answers the same request (GET /api with the same bearer token) by forwarding to
// the same trivial origin worker. Rounds are interleaved; each prints req/s and workerd's CPU per
// request (process CPU from /proc/<pid>/stat over the round / requests wrk completed).
//   BENCH_SECONDS (5) BENCH_ROUNDS (3) BENCH_CONNECTIONS (8) BENCH_THREADS (1)
//   BENCH_TARGETS (passthrough,edgegate,edgegateNoCache,edgegateWasmNoCache,joseHeaders,jose)
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { CLK_TCK, ISSUER, benchDir, cpuMicros, edgegateConfig, edgegateModules, mintKeys, mintToken, moduleList, startWorkerd, workerDir } from "./lib.mjs";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const THREADS = Number(process.env.BENCH_THREADS ?? 1);

const keys = await mintKeys();
const tokens = { RS256: await mintToken(keys, "RS256"), ES256: await mintToken(keys, "ES256") };
const eg = edgegateModules();
const origin = `(name = "ORIGIN", service = "origin")`;
const egWorker = (name, { cache, crypto }) => ({
  name,
  ...eg,
  bindings: [
    `(name = "EDGEGATE_CONFIG", json = ${JSON.stringify(JSON.stringify(edgegateConfig(keys, { cache })))})`,
    origin,
    ...(crypto ? [`(name = "EDGEGATE_CRYPTO", text = ${JSON.stringify(crypto)})`] : []),
  ],
});
const joseDir = join(workerDir, "node_modules/jose/dist/webapi");
const w = await startWorkerd([
  {
    name: "origin",
    modules: [`(name = "origin-worker.mjs", esModule = embed "origin-worker.mjs")`],
    files: { "origin-worker.mjs": join(benchDir, "origin-worker.mjs") },
  },
  egWorker("edgegate", { cache: true }),
  egWorker("edgegateNoCache", { cache: false }),
  egWorker("edgegateWasmNoCache", { cache: false, crypto: "wasm" }),
  {
    // the floor: forwards every request untouched, no authentication at all
    name: "passthrough",
    modules: [`(name = "passthrough-worker.mjs", esModule = embed "passthrough-worker.mjs")`],
    files: { "passthrough-worker.mjs": join(benchDir, "passthrough-worker.mjs") },
    bindings: [origin],
  },
  ...["jose", "joseHeaders"].map((name) => ({
    name,
    modules: [
      `(name = "jose-worker.mjs", esModule = embed "jose-worker.mjs")`,
      // `import ... from "jose"` resolves to this module, which re-exports jose's web build
      `(name = "jose", esModule = ${JSON.stringify('export * from "jose/dist/webapi/index.js";')})`,
      ...moduleList(joseDir, join(workerDir, "node_modules")),
    ],
    files: {
      "jose-worker.mjs": join(benchDir, "jose-worker.mjs"),
      ...Object.fromEntries(
        moduleList(joseDir, join(workerDir, "node_modules")).map((m) => {
          const rel = m.match(/embed "([^"]+)"/)[1];
          return [rel, join(workerDir, "node_modules", rel)];
        }),
      ),
    },
    bindings: [
      `(name = "JWKS", json = ${JSON.stringify(JSON.stringify({ keys: ["RS256", "ES256"].map((a) => keys[a].jwk) }))})`,
      `(name = "ISSUER", text = ${JSON.stringify(ISSUER)})`,
      origin,
      ...(name === "joseHeaders" ? [`(name = "IDENTITY_HEADERS", text = "edgegate")`] : []),
    ],
  })),
]);

const targets = (process.env.BENCH_TARGETS ?? "passthrough,edgegate,edgegateNoCache,edgegateWasmNoCache,joseHeaders,jose").split(",");
if (!targets.includes("jose")) targets.push("jose");
const results = {};
try {
  // Every target must allow the good token and refuse a tampered one before anything is timed.
  for (const t of targets.filter((t) => t !== "passthrough")) {
    for (const alg of Object.keys(tokens)) {
      const ok = await fetch(`${w.urls[t]}/api`, { headers: { authorization: `Bearer ${tokens[alg]}` } });
      const bad = await fetch(`${w.urls[t]}/api`, { headers: { authorization: `Bearer ${tokens[alg].slice(0, -4)}AAAA` } });
      if (ok.status !== 200 || (await ok.text()) !== "ok\n" || bad.status !== 401) {
        throw new Error(`${t} ${alg}: good token ${ok.status}, tampered ${bad.status}\n${w.logs()}`);
      }
    }
  }
  for (let round = 1; round <= ROUNDS; round++) {
    for (const alg of Object.keys(tokens)) {
      for (const t of targets) {
        const c0 = cpuMicros(w.pid);
        const out = execFileSync("wrk", [
          `-t${THREADS}`, `-c${CONNECTIONS}`, `-d${SECONDS}s`,
          "-H", `Authorization: Bearer ${tokens[alg]}`, `${w.urls[t]}/api`,
        ], { encoding: "utf8" });
        const cpu = cpuMicros(w.pid) - c0;
        const requests = Number(out.match(/(\d+) requests in/)[1]);
        const non2xx = Number(out.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0);
        const errors = out.match(/Socket errors: .*/)?.[0];
        if (non2xx || errors) throw new Error(`${t} ${alg}: ${non2xx} non-2xx responses ${errors ?? ""}\n${out}`);
        const rps = Number(out.match(/Requests\/sec:\s+([\d.]+)/)[1]);
        (results[`${t} ${alg}`] ??= []).push({ rps, cpuPerReq: cpu / requests });
        console.error(`round ${round} ${alg} ${t}: ${rps.toFixed(0)} req/s, ${(cpu / requests).toFixed(0)} µs CPU/req`);
      }
    }
  }
} finally {
  await w.stop();
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`\nworkerd ${SECONDS}s x ${ROUNDS} interleaved rounds, wrk -t${THREADS} -c${CONNECTIONS}, medians; CPU = workerd process user+sys (/proc, ${1e6 / CLK_TCK} µs ticks) / requests`);
console.log("target                  alg       req/s  CPU µs/req  CPU ratio vs jose  req/s ratio vs jose  CPU ratio vs joseHeaders");
for (const alg of Object.keys(tokens)) {
  const jose = results[`jose ${alg}`];
  const jr = median(jose.map((r) => r.rps));
  const jc = median(jose.map((r) => r.cpuPerReq));
  const jh = results[`joseHeaders ${alg}`];
  const jhc = jh ? median(jh.map((r) => r.cpuPerReq)) : NaN;
  for (const t of targets) {
    const rs = results[`${t} ${alg}`];
    const rps = median(rs.map((r) => r.rps));
    const cpu = median(rs.map((r) => r.cpuPerReq));
    console.log(
      `${t.padEnd(24)}${alg.padEnd(6)}${rps.toFixed(0).padStart(10)}${cpu.toFixed(0).padStart(12)}${(cpu / jc).toFixed(2).padStart(19)}${(rps / jr).toFixed(2).padStart(21)}${(cpu / jhc).toFixed(2).padStart(26)}`,
    );
  }
}
console.log("passthrough: a JS worker forwarding without any check (the floor)");
console.log("jose: verifies, sets one header; joseHeaders: the same plus edgegate's header work (strips the 10 identity headers, sets the same 7)");
console.log("edgegate: cache on, the same token repeated (as shipped); NoCache: jwt.cache.max_entries 0, every request verified");
console.log("CPU ratio < 1 / req/s ratio > 1: edgegate is cheaper / faster than the jose worker");
