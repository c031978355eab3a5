// Runs a wasm32-wasip1 program (filter/core/examples/bench_wasm.rs) in node's V8 via node:wasi.
// Usage: node filter/core/benches/run_wasm_bench.mjs <path/to/bench_wasm.wasm> [ms-per-alg]
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env } from "node:process";

const [file, ms] = argv.slice(2);
if (!file) {
  console.error("usage: node run_wasm_bench.mjs <bench_wasm.wasm> [ms-per-alg]");
  process.exit(2);
}
const wasi = new WASI({ version: "preview1", args: ["bench_wasm", ...(ms ? [ms] : [])], env });
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
wasi.start(instance);
