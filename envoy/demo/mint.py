"""Mints demo credentials for envoy/envoy.yaml (its DEMO secrets, published, useless elsewhere).

    python envoy/demo/mint.py jwt [--sub alice] [--roles admin,editor] [--ttl 3600]
    python envoy/demo/mint.py apikey
    python envoy/demo/mint.py magic [--email ann@example.com] [--ttl 600]

Run it with the venv's Python (.tools/venv/bin/python: PyJWT). Independent of the Rust code.
"""

from __future__ import annotations

import argparse
import base64
import time
import uuid

import jwt

# Must match the inline config in envoy/envoy.yaml (envoy/tests/test_demo.py checks it).
ISSUER = "https://demo.edgegate.invalid"
AUDIENCE = "edgegate-demo"
HS256_KID = "demo-hs1"
HS256_SECRET = "9fga2YYsNGFumMtVdSdwl0JC0GnwFh1ehk6mJFEc3Tc"
API_KEY = "egk_sNqYOjwNNf3zcaNSpxpeKDLEP7dypsU3in81g4SEMyZ08hJR7"
MAGIC_KID = "demo-m1"
MAGIC_SECRET = "E-vXlsO-39wjrEeaHNJIwh6pi1bnoxJPLrrbmgbL-k4"


def _key(b64: str) -> bytes:
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))


def demo_jwt(sub: str = "alice", roles: list[str] | None = None, ttl: int = 3600) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + ttl}
    if roles:
        claims["roles"] = roles
    return jwt.encode(claims, _key(HS256_SECRET), algorithm="HS256", headers={"kid": HS256_KID})


def demo_magic_link(email: str = "ann@example.com", ttl: int = 600) -> str:
    now = int(time.time())
    claims = {
        "iss": "edgegate",
        "aud": "edgegate-magic",
        "email": email,
        "purpose": "login",
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, _key(MAGIC_SECRET), algorithm="HS256", headers={"kid": MAGIC_KID, "typ": "JWT"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    j = sub.add_parser("jwt")
    j.add_argument("--sub", default="alice")
    j.add_argument("--roles", default="")
    j.add_argument("--ttl", type=int, default=3600)
    sub.add_parser("apikey")
    m = sub.add_parser("magic")
    m.add_argument("--email", default="ann@example.com")
    m.add_argument("--ttl", type=int, default=600)
    a = ap.parse_args()
    if a.what == "jwt":
        print(demo_jwt(a.sub, [r for r in a.roles.split(",") if r], a.ttl))
    elif a.what == "apikey":
        print(API_KEY)
    else:
        print(demo_magic_link(a.email, a.ttl))


if __name__ == "__main__":
    main()
