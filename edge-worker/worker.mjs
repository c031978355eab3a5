// The worker's entry. The core decides everything (src/lib.rs); this file only moves the
// request: most requests are decided synchronously (decideSync, src/fast.rs) — with the
// signatures the core asks for verified by WebCrypto, awaited here — and anything that needs I/O before
// the verdict (key-set fetches, the magic-link POST, ...) goes through the async `handle`.
import { decideSync, handle } from "./edgegate_worker.js";

export default {
  async fetch(request, env, ctx) {
    let out = decideSync(request, env, undefined, undefined);
    // `[id, promise]`: the core started WebCrypto verifications (with keys imported earlier in
    // this isolate) and decides with what they resolve to. At most two rounds (a second when
    // the keys changed while the first was verified); a request still asking goes the async
    // way, whose last round fails closed.
    for (let round = 0; Array.isArray(out) && round < 2; round++) {
      let valid = false;
      try {
        valid = await out[1];
      } catch (e) {
        console.error(`edgegate: WebCrypto could not verify a signature: ${e?.message ?? e}`);
      }
      out = decideSync(request, env, out[0], valid);
    }
    if (out instanceof Response) return out;
    if (out instanceof Request) {
      // the same choice as src/lib.rs: the ORIGIN service binding, else ORIGIN_URL
      return env.ORIGIN !== null && typeof env.ORIGIN === "object" ? env.ORIGIN.fetch(out) : fetch(out);
    }
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
