"""Credentials for the tests and the demo, made independently of the Rust code.

- API keys in edgegate's documented format: ``<prefix><43 base62 chars><6 base62 CRC-32>``
  (32 random bytes, big-endian; CRC-32 IEEE of ``prefix+body``), stored as ``sha256:<hex>``.
- HMAC secrets: unpadded base64url of 32 random bytes.
- Magic-link tokens: HS256 JWTs (PyJWT) with the documented claims (aud ``edgegate-magic``).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
import zlib

import jwt

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MAGIC_AUDIENCE = "edgegate-magic"


def base62(data: bytes, width: int) -> str:
    n = int.from_bytes(data, "big")
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    if n:
        raise ValueError("number does not fit the width")
    return "".join(reversed(out))


def mint_api_key(prefix: str = "egk_", random: bytes | None = None) -> str:
    random = random if random is not None else secrets.token_bytes(32)
    body = prefix + base62(random, 43)
    return body + base62(zlib.crc32(body.encode()).to_bytes(4, "big"), 6)


def api_key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def new_secret() -> str:
    """An HMAC secret as edgegate configs take it: unpadded base64url of 32 random bytes."""
    return b64url(secrets.token_bytes(32))


def mint_hs256(secret_b64: str, claims: dict, kid: str | None = None) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, b64url_decode(secret_b64), algorithm="HS256", headers=headers)


def mint_magic_link(
    secret_b64: str,
    kid: str,
    email: str = "ann@example.com",
    purpose: str = "login",
    issuer: str = "edgegate",
    lifetime: int = 600,
    jti: str | None = None,
    **extra,
) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": MAGIC_AUDIENCE,
        "email": email,
        "purpose": purpose,
        "iat": now,
        "exp": now + lifetime,
        "jti": jti or uuid.uuid4().hex,
    }
    claims.update(extra)
    return jwt.encode(claims, b64url_decode(secret_b64), algorithm="HS256", headers={"kid": kid, "typ": "JWT"})
