// The worker's entry: everything happens in Rust (src/lib.rs); this only hands the request over.
import { handle } from "./edgegate_worker.js";

export default {
  fetch(request, env, ctx) {
    return handle(request, env, ctx);
  },
};

// Single use of magic links across isolates and locations: one Durable Object per link `jti`
// (bound as USED_LINKS). A Durable Object runs one event at a time, so get-then-put is atomic.
// POST body: the link's expiry (Unix seconds). 204 = first use, 409 = already used.
export class UsedLinks {
  constructor(state) {
    this.storage = state.storage;
  }
  async fetch(request) {
    const expires = Number(await request.text());
    if (!Number.isSafeInteger(expires)) return new Response(null, { status: 400 });
    if ((await this.storage.get("used")) !== undefined) return new Response(null, { status: 409 });
    await this.storage.put("used", expires);
    // Forget the link once it has expired (the core refuses it by then anyway).
    await this.storage.setAlarm(expires * 1000 + 60_000);
    return new Response(null, { status: 204 });
  }
  async alarm() {
    await this.storage.deleteAll();
  }
}
