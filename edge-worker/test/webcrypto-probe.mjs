// Test-only entry module: wraps crypto.subtle.verify and importKey to count the calls,
// then hands every request to the real worker. GET /__webcrypto answers the counters, so a test
// can prove which signatures went through WebCrypto, and (`decisions`) how many decisions the
// core's engine started in this isolate.
import worker, { UsedLinks } from "./worker.mjs";
import { decisionsStarted } from "./edgegate_worker.js";

const counts = { verify: 0, valid: 0, invalid: 0, algs: [], importKey: 0 };
const subtle = crypto.subtle;
const real = subtle.verify.bind(subtle);
subtle.verify = async (algorithm, key, signature, data) => {
  counts.verify++;
  counts.algs.push(typeof algorithm === "string" ? algorithm : algorithm.name);
  const ok = await real(algorithm, key, signature, data);
  counts[ok ? "valid" : "invalid"]++;
  return ok;
};

const realImport = subtle.importKey.bind(subtle);
subtle.importKey = (...args) => {
  counts.importKey++;
  return realImport(...args);
};

export default {
  fetch(request, env, ctx) {
    if (new URL(request.url).pathname === "/__webcrypto") {
      return Response.json({ ...counts, decisions: decisionsStarted() });
    }
    return worker.fetch(request, env, ctx);
  },
};
export { UsedLinks };
