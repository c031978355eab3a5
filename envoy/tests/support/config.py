"""edgegate plugin configurations for the end-to-end tests (the JSON the filter receives)."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import creds

AUDIENCE = "edgegate-tests"
LOCAL_ISSUER = "https://local.test"


@dataclass
class Secrets:
    """Everything a test needs to mint credentials the config accepts."""

    hs_secret: str = field(default_factory=creds.new_secret)
    hs_kid: str = "hs1"
    magic_secret: str = field(default_factory=creds.new_secret)
    magic_kid: str = "m1"
    session_secret: str = field(default_factory=creds.new_secret)
    api_key: str = field(default_factory=creds.mint_api_key)
    admin_api_key: str = field(default_factory=creds.mint_api_key)

    def local_jwt(self, sub: str = "local-user", lifetime: int = 300, **claims) -> str:
        import time

        now = int(time.time())
        body = {"iss": LOCAL_ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + lifetime}
        body.update(claims)
        return creds.mint_hs256(self.hs_secret, body, kid=self.hs_kid)

    def magic_link(self, **kw) -> str:
        return creds.mint_magic_link(self.magic_secret, self.magic_kid, **kw)


def idp_cluster(idp_url: str) -> str:
    """The Envoy cluster name the filter uses for a URL: its authority (host:port)."""
    return idp_url.split("://", 1)[1].split("/", 1)[0]


def remote_provider(idp_url: str, name: str = "idp", discovery: bool = False, **refresh) -> dict:
    source = {"oidc_issuer": idp_url} if discovery else {"jwks_uri": f"{idp_url}/jwks.json"}
    source.update(refresh)
    return {
        "name": name,
        "issuer": idp_url,
        "audiences": [AUDIENCE],
        "algorithms": ["RS256", "ES256"],
        "remote_jwks": source,
        "claims": {"roles": ["roles"]},
    }


def local_provider(s: Secrets) -> dict:
    return {
        "name": "local",
        "issuer": LOCAL_ISSUER,
        "audiences": [AUDIENCE],
        "algorithms": ["HS256"],
        "shared_secrets": [{"kid": s.hs_kid, "secret": s.hs_secret}],
    }


def full_config(s: Secrets, idp_url: str | None = None, **remote_kw) -> dict:
    """Every credential kind: a remote RS256 provider (if idp_url), a local HS256 provider, API
    keys, magic links and sessions; /public is public, /admin needs the admin role."""
    providers = [local_provider(s)]
    if idp_url:
        providers.insert(0, remote_provider(idp_url, **remote_kw))
    return {
        "realm": "edgegate-tests",
        "jwt": {"providers": providers},
        "api_keys": {
            "header": "x-api-key",
            "keys": [
                {"name": "ci", "hash": creds.api_key_hash(s.api_key), "roles": ["deployer"]},
                {"name": "ops", "hash": creds.api_key_hash(s.admin_api_key), "roles": ["admin"]},
            ],
        },
        "magic_links": {"keys": [{"kid": s.magic_kid, "secret": s.magic_secret}]},
        "session": {"keys": [{"kid": "s1", "secret": s.session_secret}]},
        "rules": [
            {"name": "public", "match": {"path": {"prefix": "/public"}}, "require": {"public": True}},
            {
                "name": "admin",
                "match": {"path": {"prefix": "/admin"}},
                "credentials": ["session", "jwt", "api_key", "magic_link"],
                "require": {"roles_any": ["admin"]},
            },
            {
                "name": "app",
                "match": {"path": {"prefix": "/"}},
                "credentials": ["session", "jwt", "api_key", "magic_link"],
            },
        ],
    }
