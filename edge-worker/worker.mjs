// The worker's entry. The core decides everything (src/lib.rs); this file only moves the
// request: most requests are decided synchronously (decideSync, src/fast.rs) — with the
// signatures the core asks for verified here by WebCrypto — and anything that needs I/O before
// the verdict (key-set fetches, the magic-link POST, ...) goes through the async `handle`.
import { decideSync, handle } from "./edgegate_worker.js";

// Imported WebCrypto keys, by algorithm and JWK (a WebCrypto key is bound to one algorithm).
const keys = new Map();

async function verify({ id, checks }) {
  const valid = [];
  for (const c of checks) {
    let ok = false;
    try {
      let key = keys.get(c.jwk);
      if (!key) {
        const jwk = JSON.parse(c.jwk.slice(c.jwk.indexOf(":") + 1));
        key = await crypto.subtle.importKey("jwk", jwk, c.imp, false, ["verify"]);
        if (keys.size >= 64) keys.clear();
        keys.set(c.jwk, key);
      }
      ok = await crypto.subtle.verify(c.ver, key, c.signature, c.data);
    } catch (e) {
      console.error(`edgegate: WebCrypto could not verify a signature: ${e?.message ?? e}`);
    }
    valid.push(ok === true);
  }
  return { id, valid };
}

export default {
  async fetch(request, env, ctx) {
    let out = decideSync(request, env, undefined);
    // At most two rounds (a second when the keys changed while the first was verified); a
    // request still asking goes the async way, whose last round fails closed.
    for (let round = 0; out?.checks && round < 2; round++) {
      out = decideSync(request, env, await verify(out));
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
