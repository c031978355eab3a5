// The worker's entry: everything happens in Rust (src/lib.rs); this only hands the request over.
import { handle } from "./edgegate_worker.js";

export default {
  fetch(request, env, ctx) {
    return handle(request, env, ctx);
  },
};
