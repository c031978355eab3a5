// The worker's entry. The core decides everything (src/lib.rs); this file only moves the
// request: most requests are decided synchronously (decideSync, src/fast.rs) — with the
// signatures the core asks for verified by WebCrypto, awaited here — and a decision that needs
// I/O first (key-set fetches, the magic-link POST, ...) is resumed by the async `handle`.
import { connectRefusal, decideSync, handle, headersTooLarge } from "./edgegate_worker.js";

// The core's header bounds (filter/core/src/limits.rs: MAX_HEADERS, MAX_HEADER_BYTES), checked here
// while the headers are counted and BEFORE any of them is copied into the head string: over
// either bound the request gets the core's 431 and nothing more is read.
const MAX_HEADERS = 200;
const MAX_HEADER_BYTES = 96 * 1024;

// Events that are not HTTP requests: edgegate guards HTTP only. Each is logged once per
// isolate and otherwise ignored (no exception, so nothing is retried or reported as a crash).
const ignored = new Set();
function ignore(kind) {
  if (ignored.has(kind)) return;
  ignored.add(kind);
  console.warn(`edgegate: ignoring a ${kind} event: the worker guards HTTP requests only`);
}

export default {
  async fetch(request, env, ctx) {
    // The request's method, URL and headers as one string: one crossing into wasm.
    let head = `${request.method}\n${request.url}`;
    let count = 0;
    let bytes = 0;
    for (const [name, value] of request.headers) {
      count += 1;
      bytes += name.length + value.length; // byte strings: one UTF-16 unit per byte
      if (count > MAX_HEADERS || bytes > MAX_HEADER_BYTES) return headersTooLarge();
      head += `\n${name}\n${value}`;
    }
    let out = decideSync(request, env, undefined, undefined, head);
    // `[id, promise]`: the core's decision is paused on a signature, whose WebCrypto
    // verification already started (with a key imported earlier in this isolate); the result
    // resumes it. A request has one credential per rule it must pass, so a few rounds at most.
    for (let round = 0; Array.isArray(out) && round < 8; round++) {
      let valid = false;
      try {
        valid = await out[1];
      } catch (e) {
        console.error(`edgegate: WebCrypto could not verify a signature: ${e?.message ?? e}`);
      }
      out = decideSync(request, env, out[0], valid, undefined);
    }
    // A number: the decision is paused on I/O (a key to import, keys to fetch, the
    // magic-link form); the async path resumes it under that id.
    if (typeof out === "number") return handle(request, env, ctx, out);
    if (Array.isArray(out)) return handle(request, env, ctx, out[0]);
    if (typeof out === "string") {
      // Allowed, through the ORIGIN binding: "count\nname\nvalue..." — `count` client headers
      // to keep (every identity header it sent already removed), then the identity headers.
      const parts = out.split("\n");
      const keep = 1 + 2 * Number(parts[0]);
      const headers = new Headers();
      for (let i = 1; i + 1 < parts.length; i += 2) {
        if (i < keep) headers.append(parts[i], parts[i + 1]);
        else headers.set(parts[i], parts[i + 1]);
      }
      return env.ORIGIN.fetch(
        new Request(request.url, { method: request.method, headers, redirect: "manual", body: request.body }),
      );
    }
    if (out instanceof Response) return out;
    if (out instanceof Request) {
      // the same choice as src/lib.rs: the ORIGIN service binding, else ORIGIN_URL
      return env.ORIGIN !== null && typeof env.ORIGIN === "object" ? env.ORIGIN.fetch(out) : fetch(out);
    }
    return handle(request, env, ctx, undefined);
  },

  // An HTTP CONNECT (workerd hands it here, not to fetch) or a service binding's connect():
  // a tunnel no rule can judge. workerd has ALREADY answered an HTTP client's CONNECT with
  // `200` when this runs (the handler only gets the tunnel), so the core's 405 is written into
  // the tunnel and the tunnel is closed; nothing reaches the origin. Without this handler
  // workerd answers 500 after an uncaught "does not export a connect() function".
  async connect(socket) {
    try {
      const writer = socket.writable.getWriter();
      await writer.write(new TextEncoder().encode(connectRefusal()));
      await writer.close();
    } catch {
      // the client went away: nothing to refuse
    }
    try {
      await socket.close();
    } catch {}
  },

  scheduled() {
    ignore("scheduled");
  },
  queue() {
    ignore("queue");
  },
  tail() {
    ignore("tail");
  },
  tailStream() {
    ignore("tailStream");
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

// Device authorization records (login.device, RFC 8628): one Durable Object per record key
// (bound as DEVICE_GRANTS). The core decides everything; this object only stores one value
// with a version and does compare-and-set, atomic because a Durable Object runs one event at a
// time. POST {"op":"get"} -> 200 {value, version} | 404; POST {"op":"cas", value, expect
// (null: create only if absent; a number: replace only if the version is still that),
// expires_at (Unix seconds: forgotten after)} -> 204 written | 409 lost.
export class DeviceGrants {
  constructor(state) {
    this.storage = state.storage;
  }
  async fetch(request) {
    let op;
    try {
      op = await request.json();
    } catch {
      return new Response(null, { status: 400 });
    }
    const now = Math.floor(Date.now() / 1000);
    let rec = await this.storage.get("rec");
    if (rec !== undefined && now >= rec.expires_at) rec = undefined;
    if (op?.op === "get") {
      if (rec === undefined) return new Response(null, { status: 404 });
      return Response.json({ value: rec.value, version: rec.version });
    }
    if (op?.op !== "cas" || typeof op.value !== "string" || !Number.isSafeInteger(op.expires_at)) {
      return new Response(null, { status: 400 });
    }
    const current = rec === undefined ? null : rec.version;
    if ((op.expect ?? null) !== current) return new Response(null, { status: 409 });
    const version = ((await this.storage.get("version")) ?? 0) + 1;
    await this.storage.put({ rec: { value: op.value, version, expires_at: op.expires_at }, version });
    await this.storage.setAlarm(op.expires_at * 1000 + 60_000);
    return new Response(null, { status: 204 });
  }
  async alarm() {
    const rec = await this.storage.get("rec");
    // a later write moved the expiry: wait for that one
    if (rec !== undefined && Date.now() < rec.expires_at * 1000) {
      await this.storage.setAlarm(rec.expires_at * 1000 + 60_000);
      return;
    }
    await this.storage.deleteAll();
  }
}
