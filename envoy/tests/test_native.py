"""Envoy's native signature check: the filter hands RS256/RS384/RS512, ES256, ES384 and ES512 to Envoy's
`verify_signature` foreign function (BoringSSL) and keeps PS* and EdDSA in wasm. Tokens are
minted by PyJWT; `edgegate_signature_checks{backend="host"|"wasm"}` shows where each check ran."""

from __future__ import annotations

import base64

import pytest

from support.config import Secrets, full_config, idp_cluster
from support.http import bearer, get
from support.idp import new_key

pytestmark = pytest.mark.wasm_only(
    reason="the host signature backend is the proxy-wasm filter's: it hands RS*/ES* to Envoy's "
    "verify_signature foreign function; the native module verifies in-process (AWS-LC for RS*, the "
    "core's own backend for the rest) and has no edgegate_signature_checks counter")


def checks(env) -> dict[str, float]:
    out = {}
    for ln in env.prometheus().splitlines():
        if ln.startswith("edgegate_signature_checks{"):
            name, value = ln.rsplit(" ", 1)
            out[name.split('backend="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def tamper(token: str) -> str:
    """The token with one signature bit flipped (decoded, changed, re-encoded)."""
    head, sig = token.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 0x01
    return head + "." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def start(start_envoy, idp):
    cfg = full_config(Secrets(), idp.url)
    cfg["jwt"]["providers"][0]["algorithms"] = ["RS256", "RS384", "ES256", "ES384", "PS256"]
    return start_envoy(cfg, clusters={idp_cluster(idp.url): idp.port})


def test_rs256_is_verified_by_envoy_natively_and_tampering_is_refused(start_envoy, idp):
    env = start(start_envoy, idp)
    assert get(env.url("/x"), headers=bearer(idp.idp.mint(sub="alice"))).status_code == 200
    c = checks(env)
    assert c.get("host", 0) == 1, c
    assert c.get("wasm", 0) == 0, c
    r = get(env.url("/x"), headers=bearer(tamper(idp.idp.mint(sub="bob"))))
    assert r.status_code == 401 and r.json()["reason"] == "bad_signature"
    assert checks(env).get("host", 0) == 2
    # a valid signature for other claims (payload swapped) is refused too
    good = idp.idp.mint(sub="carol")
    other = idp.idp.mint(sub="mallory")
    swapped = ".".join(other.split(".")[:2] + [good.split(".")[2]])
    r = get(env.url("/x"), headers=bearer(swapped))
    assert r.status_code == 401 and r.json()["reason"] == "bad_signature"


def test_ecdsa_goes_to_envoy_and_pss_stays_in_wasm(start_envoy, idp):
    keys = {alg: new_key(alg) for alg in ["ES256", "ES384", "RS384", "PS256"]}
    for key in keys.values():
        idp.idp.publish(key, make_current=False)
    env = start(start_envoy, idp)
    assert get(env.url("/x"), headers=bearer(idp.idp.mint())).status_code == 200  # keys fetched
    base = checks(env)
    for alg in ["ES256", "ES384", "RS384"]:
        key = keys[alg]
        assert get(env.url("/x"), headers=bearer(idp.idp.mint(key=key, sub=alg))).status_code == 200, alg
        r = get(env.url("/x"), headers=bearer(tamper(idp.idp.mint(key=key, sub=alg + "-t"))))
        assert r.status_code == 401 and r.json()["reason"] == "bad_signature", alg
    c = checks(env)
    assert c.get("host", 0) - base.get("host", 0) == 6, (base, c)
    assert c.get("wasm", 0) == base.get("wasm", 0), (base, c)
    assert get(env.url("/x"), headers=bearer(idp.idp.mint(key=keys["PS256"]))).status_code == 200
    r = get(env.url("/x"), headers=bearer(tamper(idp.idp.mint(key=keys["PS256"], sub="ps-t"))))
    assert r.status_code == 401 and r.json()["reason"] == "bad_signature"
    assert checks(env).get("wasm", 0) == base.get("wasm", 0) + 2
    assert checks(env).get("host", 0) == c.get("host", 0)
