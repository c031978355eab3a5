// Micro-benchmark worker: N signature verifications per request, by one primitive, so the driver
// (crypto-micro.mjs) can read workerd's CPU time around it. GET /?mode=<m>&alg=<a>&n=<N>.
// Modes: subtle (crypto.subtle.verify, key imported once), node (node:crypto verify with a cached
// KeyObject; ECDSA signatures converted to DER, PSS needs the JWK in the options object),
// nodejwk (node:crypto with the JWK in the options object: the key is parsed per call).
import * as nc from "node:crypto";

const SUBTLE = {
  RS256: [{ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, { name: "RSASSA-PKCS1-v1_5" }],
  PS256: [{ name: "RSA-PSS", hash: "SHA-256" }, { name: "RSA-PSS", saltLength: 32 }],
  ES256: [{ name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" }],
  ES384: [{ name: "ECDSA", namedCurve: "P-384" }, { name: "ECDSA", hash: "SHA-384" }],
  EdDSA: [{ name: "Ed25519" }, { name: "Ed25519" }],
};
const HASH = { RS256: "sha256", PS256: "sha256", ES256: "sha256", ES384: "sha384", EdDSA: null };

function b64u(s) {
  return Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
}
/** Raw r||s -> DER (what node:crypto takes when the key is a KeyObject). */
function p1363ToDer(sig) {
  const half = sig.length / 2;
  const int = (b) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    b = b.subarray(i);
    return b[0] & 0x80 ? [0x02, b.length + 1, 0, ...b] : [0x02, b.length, ...b];
  };
  const body = [...int(sig.subarray(0, half)), ...int(sig.subarray(half))];
  return Uint8Array.from(body.length < 128 ? [0x30, body.length, ...body] : [0x30, 0x81, body.length, ...body]);
}

let cases;
const subtleKeys = new Map();
const nodeKeys = new Map();

export default {
  async fetch(req, env) {
    cases ??= Object.fromEntries(
      Object.entries(typeof env.CASES === "string" ? JSON.parse(env.CASES) : env.CASES).map(([alg, c]) => [
        alg,
        { jwk: c.jwk, bare: { kty: c.jwk.kty, n: c.jwk.n, e: c.jwk.e, crv: c.jwk.crv, x: c.jwk.x, y: c.jwk.y }, data: new TextEncoder().encode(c.input), sig: b64u(c.sig) },
      ]),
    );
    const u = new URL(req.url);
    const mode = u.searchParams.get("mode");
    const alg = u.searchParams.get("alg");
    const n = Number(u.searchParams.get("n") ?? "0");
    const c = cases[alg];
    if (!c) return new Response("unknown alg", { status: 404 });
    let ok = 0;
    if (mode === "subtle") {
      const [imp, ver] = SUBTLE[alg];
      let key = subtleKeys.get(alg);
      if (!key) {
        key = await crypto.subtle.importKey("jwk", c.jwk, imp, false, ["verify"]);
        subtleKeys.set(alg, key);
      }
      for (let i = 0; i < n; i++) if (await crypto.subtle.verify(ver, key, c.sig, c.data)) ok++;
    } else if (mode === "node") {
      let key = nodeKeys.get(alg);
      if (!key) {
        key = nc.createPublicKey({ key: c.jwk, format: "jwk" });
        nodeKeys.set(alg, key);
      }
      for (let i = 0; i < n; i++) {
        let r;
        if (alg === "PS256") {
          // workerd's node:crypto RSA-PSS does not interoperate with WebCrypto's or jose's (its
          // signatures fail WebCrypto and theirs fail it): measured only as "nodejwk", which reports it.
          return new Response("PS256: node:crypto in workerd does not verify standard RSA-PSS", { status: 501 });
        } else if (alg.startsWith("ES")) {
          r = nc.verify(HASH[alg], c.data, key, p1363ToDer(c.sig));
        } else {
          r = nc.verify(HASH[alg], c.data, key, c.sig);
        }
        if (r) ok++;
      }
    } else if (mode === "nodejwk") {
      const opts = { key: c.bare, format: "jwk" };
      if (alg === "PS256") Object.assign(opts, { padding: nc.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
      if (alg.startsWith("ES")) opts.dsaEncoding = "ieee-p1363";
      for (let i = 0; i < n; i++) if (nc.verify(HASH[alg], c.data, opts, c.sig)) ok++;
    } else {
      return new Response("unknown mode", { status: 404 });
    }
    return new Response(String(ok), { status: ok === n ? 200 : 409 });
  },
};
