"""Key sets as real IdPs publish them, through a real Envoy (issue 11): an ES512 (P-521) token is
verified (by Envoy's `verify_signature`, BoringSSL, in the wasm packaging), and a JWKS that puts one `kid` on RSA, P-256
and P-521 keys, next to encryption keys, loads and selects the key by `kid` and fit. Tokens are
minted by PyJWT (cryptography), independent of the Rust code; each accepted request is judged by
the identity the echo upstream received."""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives.asymmetric import ec, rsa
import pytest
from jwcrypto import jwk

from support import creds
from support.config import Secrets, full_config, idp_cluster
from support.http import bearer, get
from support.idp import SigningKey
from test_native import checks, tamper


def start(start_envoy, idp, algorithms):
    cfg = full_config(Secrets(), idp.url)
    cfg["jwt"]["providers"][0]["algorithms"] = algorithms
    return start_envoy(cfg, clusters={idp_cluster(idp.url): idp.port})


def upstream_saw(r) -> dict:
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["headers"]


def p521_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES512", ec.generate_private_key(ec.SECP521R1()))


def test_es512_is_verified_by_envoy_and_forgeries_are_refused(start_envoy, idp, packaging):
    key = p521_key("p521")
    idp.idp.publish(key, make_current=False)
    env = start(start_envoy, idp, ["RS256", "ES512"])
    assert get(env.url("/x"), headers=bearer(idp.idp.mint())).status_code == 200  # keys fetched
    base = checks(env)
    h = upstream_saw(get(env.url("/x"), headers=bearer(idp.idp.mint(key=key, sub="es512-user"))))
    assert h["x-edgegate-subject"] == "es512-user"
    assert h["x-edgegate-key-name"] == "p521"
    if packaging.kind == "wasm":
        # Where the check ran: the proxy-wasm filter hands it to Envoy's verify_signature (the
        # native module verifies in-process with the core's own backend, and has no such counter).
        c = checks(env)
        assert c.get("host", 0) - base.get("host", 0) == 1, (base, c)  # BoringSSL did it
        assert c.get("wasm", 0) == base.get("wasm", 0), (base, c)
    r = get(env.url("/x"), headers=bearer(tamper(idp.idp.mint(key=key, sub="mallory"))))
    assert r.status_code == 401 and r.json()["reason"] == "bad_signature", r.text
    # a valid ES512 signature over other claims
    good, other = idp.idp.mint(key=key, sub="carol"), idp.idp.mint(key=key, sub="admin")
    swapped = ".".join(other.split(".")[:2] + [good.split(".")[2]])
    r = get(env.url("/x"), headers=bearer(swapped))
    assert r.status_code == 401 and r.json()["reason"] == "bad_signature", r.text
    # signed by another P-521 key under the published kid
    r = get(env.url("/x"), headers=bearer(idp.idp.mint(key=p521_key("p521"), sub="mallory")))
    assert r.status_code == 401 and r.json()["reason"] == "bad_signature", r.text


def test_one_kid_on_keys_of_different_types_next_to_encryption_keys(start_envoy, idp):
    keys = {
        "RS256": SigningKey("shared", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ES256": SigningKey("shared", "ES256", ec.generate_private_key(ec.SECP256R1())),
        "ES512": p521_key("shared"),
    }
    published = [keys["RS256"].public_jwk()]
    # the EC keys without a JWK alg, as many IdPs publish them
    for alg in ("ES256", "ES512"):
        k = keys[alg].public_jwk()
        del k["alg"]
        published.append(k)
    enc = json.loads(jwk.JWK.from_pyca(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
                     .export_public())
    enc.update({"kid": "shared", "use": "enc", "alg": "RSA-OAEP-256"})
    ecdh = json.loads(jwk.JWK.from_pyca(ec.generate_private_key(ec.SECP256R1()).public_key()).export_public())
    ecdh.update({"kid": "shared", "alg": "ECDH-ES"})
    published += [enc, ecdh]
    idp.idp.jwks = lambda: {"keys": published}  # the handler serves whatever this returns
    env = start(start_envoy, idp, ["RS256", "ES256", "ES512"])
    for alg, key in keys.items():
        r = get(env.url("/x"), headers=bearer(idp.idp.mint(key=key, sub=f"user-{alg}")))
        h = upstream_saw(r)
        assert h["x-edgegate-subject"] == f"user-{alg}", alg
        assert h["x-edgegate-key-name"] == "shared", alg
    # the kid is shared, the keys are not: an ES256 token signed by another P-256 key fails
    r = get(env.url("/x"), headers=bearer(idp.idp.mint(key=SigningKey("shared", "ES256", ec.generate_private_key(ec.SECP256R1())))))
    assert r.status_code == 401 and r.json()["reason"] == "bad_signature", r.text
    # an alg the provider does not allow never reaches a key
    r = get(env.url("/x"), headers=bearer(idp.idp.mint(key=SigningKey("shared", "PS256", keys["RS256"].private))))
    assert r.status_code == 401 and r.json()["reason"] == "alg_not_allowed", r.text


def test_two_providers_share_an_issuer_hmac_in_one_public_keys_in_the_other(start_envoy, idp):
    """The way out the "mixes HMAC with public-key algorithms" error names, through Envoy: the
    IdP's RS256 keys (remote) and an HS256 secret under the same issuer, in two providers."""
    s = Secrets()
    cfg = full_config(s, idp.url)
    remote = cfg["jwt"]["providers"][0]
    local = next(p for p in cfg["jwt"]["providers"] if p["name"] == "local")
    remote["algorithms"] = ["RS256"]
    local["issuer"] = remote["issuer"]
    local["claims"] = {"roles": ["roles"]}
    env = start_envoy(cfg, clusters={idp_cluster(idp.url): idp.port})
    h = upstream_saw(get(env.url("/x"), headers=bearer(idp.idp.mint(sub="rs-user"))))
    assert (h["x-edgegate-subject"], h["x-edgegate-provider"]) == ("rs-user", remote["name"])
    hs = s.local_jwt(sub="hs-user", iss=remote["issuer"])
    h = upstream_saw(get(env.url("/x"), headers=bearer(hs)))
    assert (h["x-edgegate-subject"], h["x-edgegate-provider"]) == ("hs-user", "local")
    # an HS256 token naming the IdP's RSA kid never meets that key: the
    # HS provider has only its secret, and the RS provider does not allow HS256
    forged = creds.mint_hs256(creds.b64url(b"k" * 32), idp.idp.claims(sub="admin"), kid=idp.idp.current.kid)
    r = get(env.url("/x"), headers=bearer(forged))
    assert r.status_code == 401 and r.json()["reason"] == "unknown_kid", r.text


def test_a_small_order_ed25519_key_is_refused_at_load(start_envoy):
    identity = bytes([1]) + bytes(31)  # y = 1: the identity point, a "key" of small order
    cfg = {
        "jwt": {"providers": [{"name": "o", "issuer": "https://o.test", "algorithms": ["EdDSA"],
                               "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "o",
                                                  "x": base64.urlsafe_b64encode(identity).rstrip(b"=").decode()}]}}]},
    }
    with pytest.raises(RuntimeError) as e:
        start_envoy(cfg)
    log = str(e.value)
    assert "config refused" in log and "keys[0].x" in log and "small order" in log, log


def test_numeric_dates_beyond_2_pow_53_and_fractions(start_envoy, idp):
    env = start(start_envoy, idp, ["RS256"])
    r = get(env.url("/x"), headers=bearer(idp.idp.mint(exp=2**53 + 2)))
    assert r.status_code == 401 and r.json()["reason"] == "malformed_claims", r.text
    r = get(env.url("/x"), headers=bearer(idp.idp.mint(nbf=2**60)))
    assert r.status_code == 401 and r.json()["reason"] == "malformed_claims", r.text
    # nbf half a second past now plus the 60 s leeway: not valid yet (truncated to now + 60 it
    # would pass). Envoy's clock reaches the filter in whole seconds: start early in a second.
    while time.time() % 1 > 0.3:
        time.sleep(0.05)
    t = int(time.time())
    r = get(env.url("/x"), headers=bearer(idp.idp.mint(iat=t, nbf=t + 60.5)))
    assert r.status_code == 401 and r.json()["reason"] == "token_not_yet_valid", r.text
    h = upstream_saw(get(env.url("/x"), headers=bearer(idp.idp.mint(sub="frac", exp=t + 30.5))))
    assert h["x-edgegate-subject"] == "frac"
