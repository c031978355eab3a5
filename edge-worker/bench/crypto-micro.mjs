// CPU per signature verification in workerd, by primitive: WebCrypto (crypto.subtle.verify),
// node:crypto (nodejs_compat), and the edgegate worker itself (per request, token cache off,
// minus a public request: parsing + signature + claims), with each of its crypto backends.
//   node bench/crypto-micro.mjs [N]
import { ALGS, cpuMicrosPrecise as cpuMicros, edgegateConfig, edgegateModules, mintKeys, mintToken, startWorkerd, benchDir } from "./lib.mjs";
import { join } from "node:path";
import { createServer } from "node:http";

const N = Number(process.argv[2] ?? 2000);
const keys = await mintKeys();
const cases = {};
const tokens = {};
for (const alg of ALGS) {
  const t = await mintToken(keys, alg);
  tokens[alg] = t;
  const i = t.lastIndexOf(".");
  cases[alg] = { jwk: keys[alg].jwk, input: t.slice(0, i), sig: t.slice(i + 1) };
}
const origin = createServer((req, res) => res.end("ok"));
await new Promise((r) => origin.listen(0, "127.0.0.1", r));
const eg = edgegateModules();
const egWorker = (name, crypto, cache = false) => ({
  name,
  ...eg,
  flags: ["nodejs_compat"],
  bindings: [
    `(name = "EDGEGATE_CONFIG", json = ${JSON.stringify(JSON.stringify(edgegateConfig(keys, { cache })))})`,
    `(name = "ORIGIN_URL", text = "http://127.0.0.1:${origin.address().port}")`,
    ...(crypto ? [`(name = "EDGEGATE_CRYPTO", text = ${JSON.stringify(crypto)})`] : []),
  ],
});
const w = await startWorkerd([
  {
    name: "prims",
    modules: [`(name = "prims-worker.mjs", esModule = embed "prims-worker.mjs")`],
    files: { "prims-worker.mjs": join(benchDir, "prims-worker.mjs") },
    flags: ["nodejs_compat"],
    bindings: [`(name = "CASES", json = ${JSON.stringify(JSON.stringify(cases))})`],
  },
  egWorker("egcached", null, true),
  egWorker("egdefault", null),
  egWorker("egwasm", "wasm"),
]);

async function measure(fn) {
  await fn(1); // warm: key import, JIT
  const best = [];
  for (let r = 0; r < 3; r++) {
    const c0 = cpuMicros(w.pid);
    await fn(N);
    best.push((cpuMicros(w.pid) - c0) / N);
  }
  return Math.min(...best);
}
const rows = [];
try {
  for (const alg of ALGS) {
    const row = { alg };
    for (const mode of ["subtle", "node", "nodejwk"]) {
      // one request of N verifications; the request itself is noise at this N
      try {
        row[mode] = await measure(async (n) => {
          const r = await fetch(`${w.urls.prims}/?mode=${mode}&alg=${alg}&n=${n}`);
          if (r.status !== 200) throw new Error(`${mode} ${alg}: ${r.status} ${await r.text()}`);
        });
      } catch (e) {
        row[mode] = undefined;
        console.error(`${e.message}`);
      }
    }
    if (!process.env.PRIMS_ONLY) {
      // The same token against the same config: cache off (verified every time) minus cache on
      // (verified once): what one verification costs the worker, glue and second phase included.
      const burst = (url) => async (n) => {
        for (let i = 0; i < Math.ceil(n / 10); i++) {
          const r = await fetch(`${url}/api`, { headers: { authorization: `Bearer ${tokens[alg]}` } });
          await r.arrayBuffer();
          if (r.status !== 200) throw new Error(`${url} ${alg}: ${r.status}`);
        }
      };
      const cached = await measure(burst(w.urls.egcached));
      row.edgegate = ((await measure(burst(w.urls.egdefault))) - cached) * 10;
      row.edgegate_wasm = ((await measure(burst(w.urls.egwasm))) - cached) * 10;
      row.cached_request = cached * 10;
    }
    rows.push(row);
    console.error(JSON.stringify(row));
  }
} finally {
  await w.stop();
  origin.close();
}
const f = (x) => (x === undefined ? "-" : `${x.toFixed(0)}`).padStart(8);
console.log(`CPU µs per signature verification in workerd (N=${N}, best of 3)`);
console.log("  subtle/node/nodejwk: the primitive alone (WebCrypto; node:crypto with a cached KeyObject; node:crypto parsing the JWK per call)");
console.log("  edgegate: a request with the token verified (cache off) minus the same request served from the token cache;");
console.log("            eg_wasm: the same with EDGEGATE_CRYPTO=wasm (ring/p256/p384 in wasm); cached: the whole cached request");
console.log("alg     subtle    node nodejwk edgegate eg_wasm  cached");
for (const r of rows) console.log(`${r.alg.padEnd(6)}${f(r.subtle)}${f(r.node)}${f(r.nodejwk)}${f(r.edgegate)}${f(r.edgegate_wasm)}${f(r.cached_request)}`);
