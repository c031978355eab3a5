// The comparison worker for bench.sh: plain JS with npm `jose`, doing what edgegate does for a
// bearer JWT — verify the signature (key imported once per isolate), iss, aud, exp — then
// forward to the same ORIGIN service binding with the subject as a header, or answer 401.
import { importJWK, jwtVerify } from "jose";

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
    headers.delete("authorization");
    headers.set("x-user", String(payload.sub));
    return env.ORIGIN.fetch(new Request(request.url, { method: request.method, headers, body: request.body }));
  },
};
