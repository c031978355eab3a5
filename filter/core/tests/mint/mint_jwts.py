#!/usr/bin/env python3
"""Mints JWTs with an implementation independent of edgegate (PyJWT + cryptography/jwcrypto).

Prints one JSON document: the providers' public JWKS and secrets, a fixed `now`, and cases
(token + the verdict edgegate must reach: "ok" or a reason code). The Rust test
`filter/core/tests/independent_jwt.rs` feeds them through the core.
"""
import base64, hashlib, hmac, json, sys, time

import jwt  # PyJWT
from jwcrypto import jwk as jwcrypto_jwk
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives import serialization

NOW = 1_800_000_000
ISS_RSA, ISS_EC, ISS_HS = "https://idp.example.com/realms/desk", "https://ec.example.com", "https://hs.example.com"
# A key set as real IdPs publish it: one kid on keys of different types, an encryption key.
ISS_MIX = "https://mixed.example.com"
AUD = "desk"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def public_jwk(private_key, kid, alg):
    pem = private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    k = json.loads(jwcrypto_jwk.JWK.from_pem(pem).export_public())
    k.update({"kid": kid, "alg": alg, "use": "sig"})
    return k


rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_key2 = rsa.generate_private_key(public_exponent=65537, key_size=3072)
p256 = ec.generate_private_key(ec.SECP256R1())
p384 = ec.generate_private_key(ec.SECP384R1())
p521 = ec.generate_private_key(ec.SECP521R1())
ed = ed25519.Ed25519PrivateKey.generate()
hs_secret = hashlib.sha512(b"edgegate independent test secret").digest()

rsa_jwks = {"keys": [public_jwk(rsa_key, "rsa-1", "RS256"), public_jwk(rsa_key2, "rsa-2", "PS256")]}
# The EC provider publishes keys without a JWK alg, so one key serves several algorithms' checks.
ec_keys = [public_jwk(p256, "p256", "ES256"), public_jwk(p384, "p384", "ES384"), public_jwk(ed, "ed", "EdDSA"),
           public_jwk(p521, "p521", "ES512")]
ec_jwks = {"keys": ec_keys}
# Mixed: RSA, P-256 and P-521 keys all under kid "k" (RFC 7517 §4.5), no JWK alg on the EC
# ones, plus an RSA-OAEP encryption key and an ECDH-ES one under the same kid.
mix_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
mix_p256 = ec.generate_private_key(ec.SECP256R1())
mix_p521 = ec.generate_private_key(ec.SECP521R1())
def no_alg(k):
    k = dict(k)
    k.pop("alg")
    return k
mix_enc = public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048), "k", "RSA-OAEP")
mix_enc["use"] = "enc"
mix_ecdh = no_alg(public_jwk(ec.generate_private_key(ec.SECP256R1()), "k", "x"))
mix_ecdh.pop("use")
mix_ecdh["alg"] = "ECDH-ES"
mix_jwks = {"keys": [public_jwk(mix_rsa, "k", "RS256"), no_alg(public_jwk(mix_p256, "k", "x")),
                     no_alg(public_jwk(mix_p521, "k", "x")), mix_enc, mix_ecdh]}
# A second provider on the HS issuer with public-key algorithms only (the way out of "mixes
# HMAC with public-key algorithms").
hs_pub = ec.generate_private_key(ec.SECP256R1())
hs_pub_jwks = {"keys": [public_jwk(hs_pub, "hs-pub", "ES256")]}

def claims(iss=ISS_RSA, **over):
    c = {"iss": iss, "sub": "user-1", "aud": AUD, "iat": NOW - 10, "exp": NOW + 300,
         "email": "a@example.com", "realm_access": {"roles": ["agent", "administrators"]},
         "scope": "openid tickets:read", "amr": ["pwd", "otp"]}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}

cases = []
def case(name, token, expect):
    cases.append({"name": name, "token": token, "expect": expect})

def raw(header: dict, payload: dict, sig: bytes) -> str:
    return b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + b64u(json.dumps(payload).encode()) + "." + b64u(sig)

# --- every algorithm, signed by PyJWT ---
case("RS256", jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rsa-1"}), "ok")
case("RS384 not allowed", jwt.encode(claims(), rsa_key, "RS384", headers={"kid": "rsa-1"}), "alg_not_allowed")
case("PS256 with a key pinned to RS256 by its JWK alg", jwt.encode(claims(), rsa_key, "PS256", headers={"kid": "rsa-1"}), "alg_key_mismatch")
case("PS256", jwt.encode(claims(), rsa_key2, "PS256", headers={"kid": "rsa-2"}), "ok")
case("ES256", jwt.encode(claims(ISS_EC), p256, "ES256", headers={"kid": "p256"}), "ok")
case("ES384", jwt.encode(claims(ISS_EC), p384, "ES384", headers={"kid": "p384"}), "ok")
case("EdDSA", jwt.encode(claims(ISS_EC), ed, "EdDSA", headers={"kid": "ed"}), "ok")
case("HS256", jwt.encode(claims(ISS_HS), hs_secret, "HS256"), "ok")
case("HS384", jwt.encode(claims(ISS_HS), hs_secret, "HS384"), "ok")
case("HS512", jwt.encode(claims(ISS_HS), hs_secret, "HS512"), "ok")
case("aud as array", jwt.encode(claims(aud=["other", AUD]), rsa_key, "RS256", headers={"kid": "rsa-1"}), "ok")
case("fractional exp", jwt.encode(claims(exp=NOW + 300.5), rsa_key, "RS256", headers={"kid": "rsa-1"}), "ok")
case("ES512", jwt.encode(claims(ISS_EC), p521, "ES512", headers={"kid": "p521"}), "ok")
case("ES512 without kid", jwt.encode(claims(ISS_EC), p521, "ES512"), "ok")
case("ES512 by another P-521 key", jwt.encode(claims(ISS_EC), ec.generate_private_key(ec.SECP521R1()), "ES512", headers={"kid": "p521"}), "bad_signature")
case("ES512 with the P-384 key's kid", jwt.encode(claims(ISS_EC), p521, "ES512", headers={"kid": "p384"}), "alg_key_mismatch")
# One kid, three key types: each token finds the key that fits its alg.
case("mixed kid RS256", jwt.encode(claims(ISS_MIX), mix_rsa, "RS256", headers={"kid": "k"}), "ok")
case("mixed kid ES256", jwt.encode(claims(ISS_MIX), mix_p256, "ES256", headers={"kid": "k"}), "ok")
case("mixed kid ES512", jwt.encode(claims(ISS_MIX), mix_p521, "ES512", headers={"kid": "k"}), "ok")
case("mixed kid ES256 by another P-256 key", jwt.encode(claims(ISS_MIX), p256, "ES256", headers={"kid": "k"}), "bad_signature")
case("mixed kid EdDSA (allowed, no key fits)", jwt.encode(claims(ISS_MIX), ed, "EdDSA", headers={"kid": "k"}), "alg_key_mismatch")
case("mixed kid PS256 (RSA key pinned to RS256)", jwt.encode(claims(ISS_MIX), mix_rsa, "PS256", headers={"kid": "k"}), "alg_key_mismatch")
# Two providers share ISS_HS: HS* tokens go to one, ES256 to the other.
case("shared issuer ES256", jwt.encode(claims(ISS_HS), hs_pub, "ES256", headers={"kid": "hs-pub"}), "ok")
case("shared issuer ES384 (neither provider allows it)", jwt.encode(claims(ISS_HS), p384, "ES384", headers={"kid": "hs-pub"}), "alg_not_allowed")
# NumericDate: fractions compared (truncation would get these wrong), 2^53 the bound.
case("fractional exp within skew", jwt.encode(claims(exp=NOW - 59.5), rsa_key, "RS256", headers={"kid": "rsa-1"}), "ok")
case("fractional nbf beyond skew", jwt.encode(claims(nbf=NOW + 60.5), rsa_key, "RS256", headers={"kid": "rsa-1"}), "token_not_yet_valid")
case("fractional iat beyond skew", jwt.encode(claims(iat=NOW + 60.25), rsa_key, "RS256", headers={"kid": "rsa-1"}), "issued_in_future")
case("exp beyond 2^53", jwt.encode(claims(exp=2**53 + 1), rsa_key, "RS256", headers={"kid": "rsa-1"}), "malformed_claims")
case("exp 1e300", jwt.encode(claims(exp=1e300), rsa_key, "RS256", headers={"kid": "rsa-1"}), "malformed_claims")
case("nbf beyond 2^53", jwt.encode(claims(nbf=2**60), rsa_key, "RS256", headers={"kid": "rsa-1"}), "malformed_claims")
case("iat beyond 2^53", jwt.encode(claims(iat=2**53 + 2), rsa_key, "RS256", headers={"kid": "rsa-1"}), "malformed_claims")

# --- refusals ---
case("expired", jwt.encode(claims(exp=NOW - 120, iat=NOW - 600), rsa_key, "RS256", headers={"kid": "rsa-1"}), "token_expired")
case("expired within skew", jwt.encode(claims(exp=NOW - 30), rsa_key, "RS256", headers={"kid": "rsa-1"}), "ok")
case("nbf future", jwt.encode(claims(nbf=NOW + 600), rsa_key, "RS256", headers={"kid": "rsa-1"}), "token_not_yet_valid")
case("iat future", jwt.encode(claims(iat=NOW + 600, exp=NOW + 900), rsa_key, "RS256", headers={"kid": "rsa-1"}), "issued_in_future")
case("no exp", jwt.encode(claims(exp=None), rsa_key, "RS256", headers={"kid": "rsa-1"}), "missing_claim")
case("no sub", jwt.encode(claims(sub=None), rsa_key, "RS256", headers={"kid": "rsa-1"}), "missing_claim")
case("wrong aud", jwt.encode(claims(aud="other"), rsa_key, "RS256", headers={"kid": "rsa-1"}), "wrong_audience")
case("no aud", jwt.encode(claims(aud=None), rsa_key, "RS256", headers={"kid": "rsa-1"}), "wrong_audience")
case("unknown iss", jwt.encode(claims(iss="https://evil.example.com"), rsa_key, "RS256", headers={"kid": "rsa-1"}), "unknown_issuer")
case("too long-lived", jwt.encode(claims(exp=NOW + 90000), rsa_key, "RS256", headers={"kid": "rsa-1"}), "lifetime_too_long")
case("unknown kid", jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rsa-9"}), "unknown_kid")
other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
case("wrong key", jwt.encode(claims(), other_rsa, "RS256", headers={"kid": "rsa-1"}), "bad_signature")
case("signature of another key size", jwt.encode(claims(), rsa_key2, "RS256", headers={"kid": "rsa-1"}), "bad_signature_format")
case("HS256 not allowed for RSA provider", jwt.encode(claims(), hs_secret, "HS256", headers={"kid": "rsa-1"}), "alg_not_allowed")
case("ES256 signed by the wrong curve key", jwt.encode(claims(ISS_EC), p256, "ES256", headers={"kid": "p384"}), "alg_key_mismatch")
case("jku header", jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rsa-1", "jku": "https://evil/jwks"}), "untrusted_header_key")
case("jwk header", jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rsa-1", "jwk": rsa_jwks["keys"][0]}), "untrusted_header_key")
case("x5u header", jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rsa-1", "x5u": "https://evil/cert"}), "untrusted_header_key")
case("crit", jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rsa-1", "crit": ["exp"], "exp": 1}), "unsupported_crit")
case("alg none", raw({"alg": "none", "typ": "JWT"}, claims(), b""), "alg_none")
case("alg NONE", raw({"alg": "NONE"}, claims(), b"x"), "alg_none")

# Algorithm confusion: an HS256 token whose HMAC key is the RSA public key bytes (PEM and DER).
pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
for label, keybytes in [("pem", pem), ("n", rsa_key.public_key().public_numbers().n.to_bytes(256, "big"))]:
    h = {"alg": "HS256", "kid": "rsa-1"}
    signing_input = b64u(json.dumps(h).encode()) + "." + b64u(json.dumps(claims()).encode())
    sig = hmac.new(keybytes, signing_input.encode(), hashlib.sha256).digest()
    case(f"alg confusion ({label})", signing_input + "." + b64u(sig), "alg_not_allowed")

# A tampered payload (valid signature of another payload).
good = jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rsa-1"})
h, p, s = good.split(".")
case("tampered payload", h + "." + b64u(json.dumps(claims(sub="admin")).encode()) + "." + s, "bad_signature")
case("padded signature", good + "==", "bad_base64")
case("trailing garbage", good + ".x", "malformed_token")

# ECDSA in DER instead of raw r||s (what a naive signer emits).
from cryptography.hazmat.primitives import hashes
h = {"alg": "ES256", "kid": "p256"}
si = b64u(json.dumps(h).encode()) + "." + b64u(json.dumps(claims(ISS_EC)).encode())
der = p256.sign(si.encode(), ec.ECDSA(hashes.SHA256()))
case("ES256 DER signature", si + "." + b64u(der), "bad_signature_format")
case("ES256 zero signature", si + "." + b64u(b"\0" * 64), "bad_signature_format")
h = {"alg": "ES512", "kid": "p521"}
si = b64u(json.dumps(h).encode()) + "." + b64u(json.dumps(claims(ISS_EC)).encode())
der = p521.sign(si.encode(), ec.ECDSA(hashes.SHA512()))
case("ES512 DER signature", si + "." + b64u(der), "bad_signature_format")

json.dump({
    "now": NOW,
    "rsa": {"issuer": ISS_RSA, "jwks": rsa_jwks},
    "ec": {"issuer": ISS_EC, "jwks": ec_jwks},
    "hs": {"issuer": ISS_HS, "secret": b64u(hs_secret), "public_jwks": hs_pub_jwks},
    "mixed": {"issuer": ISS_MIX, "jwks": mix_jwks},
    "audience": AUD,
    "cases": cases,
}, sys.stdout, indent=1)
