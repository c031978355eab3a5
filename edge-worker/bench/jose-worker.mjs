// The comparison worker for bench.sh: plain JS with npm `jose`, doing what edgegate does for a
// bearer JWT — verify the signature (key imported once per isolate), iss, aud, exp — then
// forward to the same ORIGIN service binding with the subject as a header, or answer 401.
// With IDENTITY_HEADERS = "edgegate" it also does edgegate's header work: removes every
// client-sent identity header and sets the same identity headers edgegate sets.
import { importJWK, jwtVerify } from "jose";

const STRIP = ["subject", "email", "name", "roles", "permissions", "credential", "provider", "key-name", "expires", "dev-mode"].map(
  (h) => `x-edgegate-${h}`,
);
const kidOf = (auth) => JSON.parse(atob(auth.slice(7).split(".")[0].replace(/-/g, "+").replace(/_/g, "/"))).kid;

let keys;
async function keyFor(header, env) {
  keys ??= new Map(
    await Promise.all(env.JWKS.keys.map(async (k) => [k.kid, { alg: k.alg, key: await importJWK(k, k.alg) }])),
  );
  const k = keys.get(header.kid);
  if (!k || k.alg !== header.alg) throw new Error("unknown key");
  return k.key;
}

export default {
  async fetch(request, env) {
    const auth = request.headers.get("authorization") ?? "";
    if (!auth.startsWith("Bearer ")) return new Response("no token", { status: 401 });
    let payload;
    try {
      ({ payload } = await jwtVerify(auth.slice(7), (h) => keyFor(h, env), {
        issuer: env.ISSUER,
        audience: "api",
        algorithms: ["RS256", "ES256"],
      }));
    } catch {
      return new Response("bad token", { status: 401, headers: { "www-authenticate": 'Bearer error="invalid_token"' } });
    }
    const headers = new Headers(request.headers);
    if (env.IDENTITY_HEADERS === "edgegate") {
      for (const h of STRIP) headers.delete(h);
      headers.set("x-edgegate-subject", String(payload.sub));
      if (payload.email) headers.set("x-edgegate-email", String(payload.email));
      if (Array.isArray(payload.roles)) headers.set("x-edgegate-roles", payload.roles.join(","));
      headers.set("x-edgegate-credential", "jwt");
      headers.set("x-edgegate-provider", "bench");
      headers.set("x-edgegate-key-name", String(kidOf(auth)));
      headers.set("x-edgegate-expires", String(payload.exp));
    } else {
      headers.delete("authorization");
      headers.set("x-user", String(payload.sub));
    }
    return env.ORIGIN.fetch(new Request(request.url, { method: request.method, headers, body: request.body }));
  },
};
