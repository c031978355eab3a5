"""A test identity provider: OIDC discovery + JWKS, keys it can rotate, and failure modes.

Keys are generated with ``cryptography`` and published with ``jwcrypto``; tokens are minted
with PyJWT. Nothing here shares code with the Rust core, so the end-to-end tests check the
filter against independent implementations.

Python API (tests run the server in-process) and the same controls over HTTP, test-only:

    POST /_control/rotate?keep_old=1&alg=RS256   -> {"kid": new kid}   (new signing key)
    POST /_control/mode?m=ok|down|close|garbage|slow
    POST /_control/cache-control?v=max-age=60     (empty v removes the header)
    POST /_control/mint   body: JSON claims      -> a token signed with the current key
    GET  /_control/stats                          -> {"jwks": n, "discovery": n}

Run standalone (the demo): ``python -m support.idp --port 10002``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk

from support.server import LoopbackServer

MODES = ("ok", "down", "close", "garbage", "slow")


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: object  # a cryptography private key

    def public_jwk(self) -> dict:
        k = jwk.JWK.from_pyca(self.private.public_key())
        d = json.loads(k.export_public())
        d.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return d


def new_key(alg: str = "RS256", kid: str | None = None) -> SigningKey:
    kid = kid or f"k-{uuid.uuid4().hex[:12]}"
    if alg.startswith(("RS", "PS")):
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        priv = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        priv = ec.generate_private_key(ec.SECP384R1())
    else:
        raise ValueError(f"unsupported alg {alg}")
    return SigningKey(kid, alg, priv)


class IdP:
    """State of the test IdP. Thread-safe: the HTTP handler threads read it under a lock."""

    def __init__(self, audience: str = "edgegate-tests") -> None:
        self.lock = threading.Lock()
        self.keys: list[SigningKey] = [new_key("RS256")]  # published, newest last
        self.current: SigningKey = self.keys[-1]
        self.mode = "ok"
        self.cache_control: str | None = None
        self.slow_seconds = 10.0
        self.audience = audience
        self.hits = {"jwks": 0, "discovery": 0}
        # When each document was asked for (time.time()), in order: rotation timing tests.
        self.fetch_times: dict[str, list[float]] = {"jwks": [], "discovery": []}
        self.issuer = ""  # set once the server knows its port

    # --- keys ---
    def rotate(self, keep_old: bool = True, alg: str = "RS256") -> str:
        """A new current signing key; the old ones stay published only when keep_old."""
        k = new_key(alg)
        with self.lock:
            self.keys = [*self.keys, k] if keep_old else [k]
            self.current = k
        return k.kid

    def unpublished_key(self, alg: str = "RS256") -> SigningKey:
        """A key that is not (yet) in the JWKS; publish it later with publish()."""
        return new_key(alg)

    def publish(self, key: SigningKey, make_current: bool = True) -> None:
        with self.lock:
            self.keys = [*self.keys, key]
            if make_current:
                self.current = key

    def jwks(self) -> dict:
        with self.lock:
            return {"keys": [k.public_jwk() for k in self.keys]}

    # --- tokens ---
    def claims(self, lifetime: int = 300, **extra) -> dict:
        now = int(time.time())
        c = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "user-1",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
        }
        c.update(extra)
        return {k: v for k, v in c.items() if v is not None}

    def mint(self, claims: dict | None = None, key: SigningKey | None = None, headers: dict | None = None, **extra) -> str:
        key = key or self.current
        body = claims if claims is not None else self.claims(**extra)
        h = {"kid": key.kid}
        h.update(headers or {})
        return jwt.encode(body, key.private, algorithm=key.alg, headers=h)

    # --- failure modes ---
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        with self.lock:
            self.mode = mode

    def set_cache_control(self, value: str | None) -> None:
        with self.lock:
            self.cache_control = value or None


class IdPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgegate-test-idp"
    idp: IdP  # set on the subclass per server

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, extra: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), extra=extra)

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        idp = self.idp
        if url.path.startswith("/_control/"):
            return self._control(url)
        if url.path == "/.well-known/openid-configuration":
            kind = "discovery"
        elif url.path == "/jwks.json":
            kind = "jwks"
        else:
            return self._json(404, {"error": "not_found"})
        with idp.lock:
            idp.hits[kind] += 1
            idp.fetch_times[kind].append(time.time())
            mode, cc, slow = idp.mode, idp.cache_control, idp.slow_seconds
        if mode == "down":
            return self._json(503, {"error": "down for the test"})
        if mode == "close":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return None
        if mode == "garbage":
            return self._send(200, b"\x00<html>not json{{{", "application/json")
        if mode == "slow":
            time.sleep(slow)
        extra = {"cache-control": cc} if cc else {}
        if kind == "discovery":
            doc = {
                "issuer": idp.issuer,
                "jwks_uri": f"{idp.issuer}/jwks.json",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
            return self._json(200, doc, extra)
        return self._json(200, idp.jwks(), extra)

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path.startswith("/_control/"):
            return self._control(url)
        return self._json(405, {"error": "method_not_allowed"})

    def _control(self, url) -> None:
        idp = self.idp
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(min(length, 1 << 16)) if length > 0 else b""
        try:
            if url.path == "/_control/rotate":
                kid = idp.rotate(keep_old=q.get("keep_old", "1") == "1", alg=q.get("alg", "RS256"))
                return self._json(200, {"kid": kid})
            if url.path == "/_control/mode":
                idp.set_mode(q.get("m", "ok"))
                return self._json(200, {"mode": idp.mode})
            if url.path == "/_control/cache-control":
                idp.set_cache_control(q.get("v"))
                return self._json(200, {"cache-control": idp.cache_control})
            if url.path == "/_control/mint":
                extra = json.loads(body) if body else {}
                return self._json(200, {"token": idp.mint(**extra)})
            if url.path == "/_control/stats":
                with idp.lock:
                    return self._json(200, dict(idp.hits))
        except (ValueError, TypeError) as e:
            return self._json(400, {"error": str(e)})
        return self._json(404, {"error": "not_found"})


class IdPServer(LoopbackServer):
    """The IdP on 127.0.0.1 (port 0 = a free one) in a daemon thread."""

    def __init__(self, port: int = 0, idp: IdP | None = None) -> None:
        self.idp = idp or IdP()
        super().__init__(type("BoundIdPHandler", (IdPHandler,), {"idp": self.idp}), port, name="idp")
        self.url = f"http://127.0.0.1:{self.port}"
        self.idp.issuer = self.url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=10002)
    ap.add_argument("--audience", default="edgegate-demo")
    args = ap.parse_args()
    srv = IdPServer(args.port, IdP(audience=args.audience))
    print(f"test IdP on {srv.url} (issuer), JWKS at {srv.url}/jwks.json", flush=True)
    srv.serve_until_interrupted()


if __name__ == "__main__":
    main()
