"""Every credential kind through a real Envoy: accepted ones reach the upstream with identity
headers, refused ones get the right status and reason, and client-sent identity headers never
reach the upstream. Tokens are minted by PyJWT, API keys by Python: independent of the Rust code."""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest

from support import creds
from support.config import AUDIENCE, Secrets, full_config, idp_cluster
from support.http import bearer, get, post, request

SPOOFED = {
    "x-edgegate-subject": "admin",
    "x-edgegate-roles": "admin",
    "x-edgegate-credential": "api_key",
    "x-edgegate-provider": "spoof",
    "x-edgegate-email": "boss@example.com",
    "x-edgegate-dev-mode": "true",
    "X-Edgegate-Key-Name": "mixed-case",
}


@pytest.fixture(scope="module")
def secrets_():
    return Secrets()


@pytest.fixture(scope="module")
def env(start_envoy_module, idp_module, secrets_):
    cfg = full_config(secrets_, idp_module.url)
    return start_envoy_module(cfg, clusters={idp_cluster(idp_module.url): idp_module.port})


def reason(r) -> str:
    assert r.headers.get("content-type", "").startswith("application/json"), (r.status_code, r.text)
    return r.json()["reason"]


def echo_headers(r) -> dict:
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["headers"]


# --- JWT from the remote IdP (RS256, keys fetched through an Envoy cluster) -------------------


def test_remote_jwt_is_accepted_and_identity_reaches_upstream(env, idp_module):
    token = idp_module.idp.mint(sub="alice", email="alice@example.com", roles=["editor"])
    h = echo_headers(get(env.url("/orders/1"), headers=bearer(token)))
    assert h["x-edgegate-subject"] == "alice"
    assert h["x-edgegate-credential"] == "jwt"
    assert h["x-edgegate-provider"] == "idp"
    assert h["x-edgegate-email"] == "alice@example.com"
    assert h["x-edgegate-roles"] == "editor"
    assert h["x-edgegate-key-name"] == idp_module.idp.current.kid
    # The token edgegate checked stays at the edge (forward: false, the default).
    assert "authorization" not in h


def test_remote_jwt_with_role_passes_admin_rule(env, idp_module):
    ok = idp_module.idp.mint(sub="root", roles=["admin"])
    assert get(env.url("/admin/x"), headers=bearer(ok)).status_code == 200
    no = idp_module.idp.mint(sub="pleb", roles=["editor"])
    r = get(env.url("/admin/x"), headers=bearer(no))
    assert r.status_code == 403
    assert reason(r) == "missing_role"
    assert "insufficient_scope" in r.headers["www-authenticate"]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("expired", "token_expired"),
        ("wrong_audience", "wrong_audience"),
        ("not_yet_valid", "token_not_yet_valid"),
        ("unknown_issuer", "unknown_issuer"),
        ("tampered", "bad_signature"),
        ("alg_none", "alg_none"),
        ("garbage", "malformed_token"),
        ("unknown_kid", "unknown_kid"),
    ],
)
def test_bad_jwts_are_refused_with_their_reason(env, idp_module, case, expected):
    idp = idp_module.idp
    now = int(time.time())
    if case == "expired":
        token = idp.mint(idp.claims(iat=now - 600, nbf=now - 600, exp=now - 300))
    elif case == "wrong_audience":
        token = idp.mint(aud="someone-else")
    elif case == "not_yet_valid":
        token = idp.mint(nbf=now + 3600, exp=now + 7200)
    elif case == "unknown_issuer":
        token = idp.mint(iss="https://evil.example")
    elif case == "tampered":
        h, p, s = idp.mint().split(".")
        token = f"{h}.{p}.{s[:-4]}{'AAAA' if s[-4:] != 'AAAA' else 'BBBB'}"
    elif case == "alg_none":
        token = pyjwt.encode(idp.claims(), None, algorithm="none", headers={"kid": idp.current.kid})
    elif case == "garbage":
        token = "not-a-jwt"
    elif case == "unknown_kid":
        token = idp.mint(key=idp.unpublished_key())
    r = get(env.url("/orders/1"), headers=bearer(token))
    assert r.status_code == 401, (case, r.status_code, r.text)
    assert reason(r) == expected
    assert r.headers["www-authenticate"].startswith('Bearer realm="edgegate-tests"')
    assert "cache-control" in r.headers


def test_no_credential_is_401_and_never_reaches_upstream(env, upstream):
    r = post(env.url("/orders/never"), data=b"z" * 20_000)
    assert r.status_code == 401
    r = post(env.url("/orders/never"), data=b"z" * 20_000, headers=bearer("bad.token.x"))
    assert r.status_code == 401
    assert not [s for s in upstream.httpd.seen if s[1] == "/orders/never"]
    r = get(env.url("/orders/1"))
    assert r.status_code == 401
    assert reason(r) == "credential_missing"
    assert r.headers["www-authenticate"] == 'Bearer realm="edgegate-tests"'


# --- JWT from a local HS256 provider ---------------------------------------------------------


def test_local_hs256_jwt(env, secrets_):
    h = echo_headers(get(env.url("/x"), headers=bearer(secrets_.local_jwt(sub="svc"))))
    assert h["x-edgegate-subject"] == "svc"
    assert h["x-edgegate-provider"] == "local"
    wrong = creds.mint_hs256(creds.new_secret(), {"iss": "https://local.test", "aud": AUDIENCE, "sub": "x",
                                                  "exp": int(time.time()) + 60}, kid=secrets_.hs_kid)
    r = get(env.url("/x"), headers=bearer(wrong))
    assert r.status_code == 401 and reason(r) == "bad_signature"


# --- API keys ------------------------------------------------------------------------------------


def test_api_key_in_bearer_and_in_its_header(env, secrets_):
    for headers in (bearer(secrets_.api_key), {"x-api-key": secrets_.api_key}):
        h = echo_headers(get(env.url("/deploy"), headers=headers))
        assert h["x-edgegate-subject"] == "ci"
        assert h["x-edgegate-credential"] == "api_key"
        assert h["x-edgegate-roles"] == "deployer"


def test_api_key_rejections(env, secrets_):
    r = get(env.url("/deploy"), headers=bearer(creds.mint_api_key()))
    assert r.status_code == 401 and reason(r) == "api_key_unknown"
    key = secrets_.api_key
    typo = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    r = get(env.url("/deploy"), headers=bearer(typo))
    assert r.status_code == 401 and reason(r) == "api_key_checksum"
    r = get(env.url("/admin/x"), headers=bearer(secrets_.api_key))
    assert r.status_code == 403 and reason(r) == "missing_role"
    assert get(env.url("/admin/x"), headers=bearer(secrets_.admin_api_key)).status_code == 200


# --- consumed credentials and edgegate's cookies stay at the edge ------------------------------


def test_consumed_credentials_and_edgegate_cookies_do_not_reach_upstream(env, secrets_, upstream):
    cookies = "theme=dark; edgegate_session_refresh=r; edgegate_login_abc=l; lang=en"
    h = echo_headers(get(env.url("/x"), headers={"x-api-key": secrets_.api_key, "cookie": cookies}))
    assert h["x-edgegate-subject"] == "ci"
    assert "x-api-key" not in h
    # The app's cookies arrive in one header, in their order; edgegate's are gone.
    assert h["cookie"] == "theme=dark; lang=en"
    # A bearer credential is removed, another scheme's header is the app's own business.
    h = echo_headers(get(env.url("/x"), headers={**bearer(secrets_.api_key), "x-other": "1"}))
    assert "authorization" not in h and h["x-other"] == "1"
    # Public routes: nothing was consumed, edgegate's cookies still go.
    h = echo_headers(get(env.url("/public/p"), headers={"cookie": "edgegate_session=s; a=1"}))
    assert h["cookie"] == "a=1"
    h = echo_headers(get(env.url("/public/p"), headers={"cookie": "edgegate_session=s"}))
    assert "cookie" not in h


@pytest.fixture(scope="module")
def forwarding_env(start_envoy_module, idp_module, secrets_):
    cfg = full_config(secrets_, idp_module.url)
    cfg["jwt"]["providers"][0]["forward"] = True  # the remote IdP's tokens go upstream
    cfg["api_keys"]["forward"] = True
    return start_envoy_module(cfg, clusters={idp_cluster(idp_module.url): idp_module.port})


def test_forward_true_sends_the_checked_credential_upstream(forwarding_env, idp_module, secrets_):
    token = idp_module.idp.mint(sub="alice")
    h = echo_headers(get(forwarding_env.url("/o"), headers={**bearer(token), "cookie": "edgegate_session_refresh=r; a=1"}))
    assert h["x-edgegate-subject"] == "alice"
    assert h["authorization"] == f"Bearer {token}"
    assert h["cookie"] == "a=1", "edgegate's cookies are removed even with forward: true"
    h = echo_headers(get(forwarding_env.url("/o"), headers={"x-api-key": secrets_.api_key}))
    assert h["x-edgegate-subject"] == "ci" and h["x-api-key"] == secrets_.api_key
    # forward is per provider: the local provider's tokens still stay at the edge
    h = echo_headers(get(forwarding_env.url("/o"), headers=bearer(secrets_.local_jwt(sub="svc"))))
    assert h["x-edgegate-subject"] == "svc" and "authorization" not in h


# --- spoofed identity headers ------------------------------------------------------------------


def test_spoofed_identity_headers_are_stripped_on_public_routes(env):
    h = echo_headers(get(env.url("/public/page"), headers=SPOOFED))
    leaked = {k: v for k, v in h.items() if k.startswith("x-edgegate-")}
    assert leaked == {}, leaked


def test_spoofed_identity_headers_are_replaced_on_protected_routes(env, secrets_):
    r = get(env.url("/x"), headers={**SPOOFED, **bearer(secrets_.api_key)})
    h = echo_headers(r)
    assert h["x-edgegate-subject"] == "ci"  # exactly one value: the client's copy is gone
    assert h["x-edgegate-credential"] == "api_key"
    assert h["x-edgegate-roles"] == "deployer"
    assert "x-edgegate-email" not in h
    assert "x-edgegate-dev-mode" not in h


def test_spoofed_headers_alone_do_not_authenticate(env):
    r = get(env.url("/admin/x"), headers=SPOOFED)
    assert r.status_code == 401 and reason(r) == "credential_missing"


def test_public_route_ignores_a_bad_credential_and_sends_no_identity(env):
    h = echo_headers(get(env.url("/public/x"), headers=bearer("garbage.token.here")))
    assert not any(k.startswith("x-edgegate-") for k in h)


# --- magic links ----------------------------------------------------------------------------------


def test_magic_link_get_shows_a_confirm_page_and_consumes_nothing(env, secrets_):
    token = secrets_.magic_link(email="ann@example.com")
    for method in ("GET", "HEAD"):
        r = request(method, env.url(f"/auth/magic?token={token}"))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-store"
    page = get(env.url(f"/auth/magic?token={token}")).text
    assert 'method="post"' in page and token in page
    # Still usable: GETs (mail scanners) never consume the link.
    r = post(env.url("/auth/magic"), data={"token": token})
    assert r.status_code == 302, r.text


def test_magic_link_post_logs_in_once(env, secrets_, upstream):
    token = secrets_.magic_link(email="bob@example.com")
    r = post(env.url("/auth/magic"), data={"token": token})
    assert r.status_code == 302, r.text
    assert r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    name, value = cookie.split(";", 1)[0].split("=", 1)
    assert name == "edgegate_session" and value
    assert "HttpOnly" in cookie
    # The session works...
    h = echo_headers(get(env.url("/inbox"), headers={"cookie": f"{name}={value}"}))
    assert h["x-edgegate-subject"] == "bob@example.com"
    assert h["x-edgegate-credential"] in ("magic_link", "session")
    # ...and the link does not work twice (any worker: single use is in shared data).
    for _ in range(3):
        again = post(env.url("/auth/magic"), data={"token": token})
        assert again.status_code == 401, again.text
        assert reason(again) == "token_replayed"
    # The magic-link endpoint is answered by the filter: nothing of it reached the upstream.
    assert not [s for s in upstream.httpd.seen if s[1].startswith("/auth/magic")]


def test_magic_link_parallel_replays_have_exactly_one_winner(env, secrets_):
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(3):
        token = secrets_.magic_link(email="race@example.com")
        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(lambda _: post(env.url("/auth/magic"), data={"token": token}).status_code, range(16)))
        assert sorted(codes).count(302) == 1, codes
        assert all(c in (302, 401) for c in codes), codes


def test_magic_link_rejections(env, secrets_):
    forged = creds.mint_magic_link(creds.new_secret(), secrets_.magic_kid)
    r = post(env.url("/auth/magic"), data={"token": forged})
    assert r.status_code == 401 and reason(r) == "bad_signature"
    expired = secrets_.magic_link(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    r = post(env.url("/auth/magic"), data={"token": expired})
    assert r.status_code == 401 and reason(r) == "token_expired"
    r = post(env.url("/auth/magic"), data={"nothing": "here"})
    assert r.status_code == 401 and reason(r) == "credential_missing"
    r = request("PUT", env.url("/auth/magic"))
    assert r.status_code == 405


def test_bad_session_cookie_is_refused(env):
    r = get(env.url("/inbox"), headers={"cookie": "edgegate_session=forged.value.here"})
    assert r.status_code == 401
    assert reason(r) == "session_invalid"


def test_a_session_cookie_is_opened_once_then_cached_only_as_a_session(env, secrets_, upstream, packaging):
    """A logged-in browser's cookie is opened in full on its first request (once per process
    natively, once per worker VM in wasm) and answered from the verified-token cache after that.
    Its value sent as a bearer token on the same route (which takes sessions and JWTs) is checked
    as a JWT and refused: the cache never answers it with the session's identity."""
    token = secrets_.magic_link(email="carol@example.com")
    r = post(env.url("/auth/magic"), data={"token": token})
    assert r.status_code == 302, r.text
    value = r.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    hits, misses = env.counter("edgegate_cache_hit"), env.counter("edgegate_cache_miss")
    for _ in range(8):
        h = echo_headers(get(env.url("/inbox"), headers={"cookie": f"edgegate_session={value}"}))
        assert h["x-edgegate-subject"] == "carol@example.com"
    new_hits = env.counter("edgegate_cache_hit") - hits
    new_misses = env.counter("edgegate_cache_miss") - misses
    workers = 2  # envoyproc runs --concurrency 2
    most = 1 if packaging.kind == "native" else workers
    assert 1 <= new_misses <= most and new_hits == 8 - new_misses, (new_hits, new_misses)
    seen = len(upstream.httpd.seen)
    r = get(env.url("/inbox"), headers=bearer(value))
    assert r.status_code == 401 and reason(r) == "missing_claim", (r.status_code, r.text)
    assert len(upstream.httpd.seen) == seen, "the refused request reached the upstream"


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_appear_in_prometheus(env, idp_module, secrets_, packaging):
    token = idp_module.idp.mint(sub="metrics")
    for _ in range(3):
        assert get(env.url("/m"), headers=bearer(token)).status_code == 200
    get(env.url("/m"))
    prom = env.prometheus()
    prefix = packaging.prometheus_prefix
    lines = {ln.rsplit(" ", 1)[0].removeprefix(prefix): ln.rsplit(" ", 1)[1]
             for ln in prom.splitlines() if ln.startswith(prefix + "edgegate_")}
    assert float(lines['edgegate_allowed{credential="jwt"}']) >= 3
    assert float(lines['edgegate_allowed{credential="api_key"}']) >= 1
    assert float(lines['edgegate_denied{reason="credential_missing"}']) >= 1
    assert float(lines["edgegate_jwks_fetch_ok{}"]) >= 1
    # Two workers: the same token can miss once per worker VM (wasm) or once (native), then it hits.
    assert float(lines["edgegate_cache_hit{}"]) >= 1
    assert float(lines["edgegate_cache_miss{}"]) >= 1
    # Logs name the reason and never a token.
    log = env.log_text()
    assert "credential_missing" in log
    assert token not in log and secrets_.api_key not in log
