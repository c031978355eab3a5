"""The identity contract, tried as an attacker would, through a real Envoy (issue 11).

Apps behind edgegate trust `x-edgegate-*` because edgegate removes every client copy. Each class
below tries one way around that, and is judged by what the echo upstream actually received
(`support/upstream.py` reports raw header names, the CGI `environ` keys they become, and request
trailers), never by what the filter says it did.

Every class runs twice: with the connection-manager settings edgegate ships (read from
`envoy/envoy.yaml` by support/envoyproc.py: underscores in header names refused, paths
normalised) and with Envoy's defaults (an operator's own config). Where the shipped settings make
Envoy refuse a request itself (400 for `x_edgegate_roles`), that is fine as long as the upstream
never got the smuggled value.

Two settings differ from both profiles, in every Envoy here, because the tests need them:
- HTTP/1 trailers are enabled on both hops (Envoy's HTTP/1 codec drops them by default, and then
  there would be nothing to smuggle; HTTP/2 carries them either way);
- the header limits are raised (256 KiB, 400 headers), so that edgegate's own bound (96 KiB,
  200 headers -> 431 `headers_too_large`) is what answers, not Envoy's.

Tokens are minted by PyJWT, API keys by Python: independent of the Rust code.
"""

from __future__ import annotations

import re
import time
import uuid

import jwt as pyjwt
import pytest

from support import creds, envoyproc
from support.config import Secrets
from support.http import h2_request, http1_request

SETTINGS = ["shipped", "envoy-defaults"]
AUD = "contract"
LOCAL_ISSUER = "https://local.test"
FWD_ISSUER = "https://fwd.test"

# The default identity header names (config `identity_headers.*`).
IDENTITY = [
    "x-edgegate-subject", "x-edgegate-email", "x-edgegate-name", "x-edgegate-roles",
    "x-edgegate-permissions", "x-edgegate-credential", "x-edgegate-provider",
    "x-edgegate-key-name", "x-edgegate-expires", "x-edgegate-dev-mode",
]
SPOOF = "spoofed-admin"


def rejects_underscores(setting: str) -> bool:
    """Envoy itself refuses header names with `_` in this profile (400 / stream reset)."""
    common = envoyproc.HCM_SETTINGS[setting].get("common_http_protocol_options", {})
    return common.get("headers_with_underscores_action") == "REJECT_REQUEST"


def norm(name: str) -> str:
    return name.lower().replace("_", "-")


def is_identity(name: str) -> bool:
    return norm(name) in IDENTITY


# --- configs ------------------------------------------------------------------------------------


class Keys(Secrets):
    """Secrets plus the second provider's (the one with `forward: true`)."""

    def __init__(self) -> None:
        super().__init__()
        self.fwd_secret = creds.new_secret()

    def jwt(self, roles=("staff",), sub="staff-user", issuer=LOCAL_ISSUER, secret=None, kid=None) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": AUD, "sub": sub, "iat": now, "exp": now + 300, "roles": list(roles)}
        if issuer == FWD_ISSUER:
            return creds.mint_hs256(secret or self.fwd_secret, claims, kid=kid or "f1")
        return creds.mint_hs256(secret or self.hs_secret, claims, kid=kid or self.hs_kid)

    def session(self, sub="sess-user", roles=("staff",)) -> str:
        """A session cookie value in edgegate's documented format (HS256 JWS, aud edgegate-session)."""
        now = int(time.time())
        claims = {"aud": "edgegate-session", "sub": sub, "rl": list(roles), "pv": "magic_link",
                  "cr": "magic_link", "iat": now, "exp": now + 600}
        return pyjwt.encode(claims, creds.b64url_decode(self.session_secret), algorithm="HS256",
                            headers={"kid": "s1", "typ": "JWT"})


def provider(name: str, issuer: str, secret: str, kid: str, **extra) -> dict:
    return {
        "name": name,
        "issuer": issuer,
        "audiences": [AUD],
        "algorithms": ["HS256"],
        "shared_secrets": [{"kid": kid, "secret": secret}],
        "claims": {"roles": ["roles"]},
        **extra,
    }


RULES = [
    {"name": "public", "match": {"path": {"prefix": "/public"}}, "require": {"public": True}},
    {
        "name": "delete-needs-admin",
        "match": {"path": {"prefix": "/items"}, "methods": ["DELETE"]},
        "credentials": ["session", "jwt", "api_key"],
        "require": {"roles_any": ["admin"]},
    },
    {"name": "app", "match": {"path": {"prefix": "/"}}, "credentials": ["session", "jwt", "api_key"]},
]


def main_config(k: Keys, **top) -> dict:
    """Valid on today's code: a local HS256 provider (also read from a header and a cookie),
    API keys in their own header, sessions; DELETE under /items needs admin."""
    return {
        "realm": "contract",
        "jwt": {
            "providers": [provider("local", LOCAL_ISSUER, k.hs_secret, k.hs_kid)],
            "from": {"header": "x-jwt-assertion", "cookie": "access_token"},
        },
        "api_keys": {
            "header": "x-api-key",
            "keys": [
                {"name": "staff-key", "hash": creds.api_key_hash(k.api_key), "roles": ["staff"]},
                {"name": "admin-key", "hash": creds.api_key_hash(k.admin_api_key), "roles": ["admin"]},
            ],
        },
        "session": {"keys": [{"kid": "s1", "secret": k.session_secret}]},
        "rules": RULES,
        **top,
    }


def forward_config(k: Keys) -> dict:
    """Opt-in forwarding: provider `fwd` and API keys forward their credential (new settings)."""
    cfg = main_config(k)
    cfg["jwt"]["providers"].append(provider("fwd", FWD_ISSUER, k.fwd_secret, "f1", forward=True))
    cfg["api_keys"]["forward"] = True
    return cfg


def dev_config() -> dict:
    return {"dev_mode": {"enabled": True, "identity": {"subject": "dev-alice", "roles": ["admin"]}}}


def render(factory, setting: str, plugin_config) -> dict:
    hcm_extra = {
        "http_protocol_options": {"enable_trailers": True},
        "max_request_headers_kb": 256,
        "common_http_protocol_options": {
            **envoyproc.HCM_SETTINGS[setting].get("common_http_protocol_options", {}),
            "max_headers_count": 400,
        },
    }
    lst = envoyproc.listener(0, factory.filter, plugin_config, hcm_extra=hcm_extra, settings=setting)
    cfg = envoyproc.bootstrap({"upstream": factory.upstream.port}, listeners=[lst])
    for c in cfg["static_resources"]["clusters"]:
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {"enable_trailers": True}},
            }
        }
    return cfg


class Refused:
    """Stands for an Envoy that did not start (its config was refused): tests using it fail."""

    def __init__(self, why: str) -> None:
        self.why = why


def start(factory, setting: str, plugin_config):
    try:
        return factory(None, config=render(factory, setting, plugin_config))
    except RuntimeError as e:
        return Refused(str(e)[-3000:])


def need(env):
    if isinstance(env, Refused):
        pytest.fail(f"Envoy refused this config (expected on code without issue 11):\n{env.why}")
    return env


# --- fixtures: one Envoy per (setting, config), shared by the module ------------------------------


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture(scope="module", params=SETTINGS)
def setting(request):
    return request.param


def _envoy(factory, setting, cfg):
    env = start(factory, setting, cfg)
    yield env
    if not isinstance(env, Refused):
        env.stop()


@pytest.fixture(scope="module")
def main(start_envoy_module, setting, keys):
    yield from _envoy(start_envoy_module, setting, main_config(keys))


@pytest.fixture(scope="module")
def fwd(start_envoy_module, setting, keys):
    yield from _envoy(start_envoy_module, setting, forward_config(keys))


@pytest.fixture(scope="module")
def reject(start_envoy_module, setting, keys):
    yield from _envoy(start_envoy_module, setting, main_config(keys, method_override="reject"))


@pytest.fixture(scope="module")
def narrow(start_envoy_module, setting, keys):
    """Only the subject goes upstream (`identity_headers.send`), under a renamed email header."""
    cfg = main_config(keys, identity_headers={"send": ["subject"], "email": "x-user-mail"})
    yield from _envoy(start_envoy_module, setting, cfg)


@pytest.fixture(scope="module")
def dev(start_envoy_module, setting):
    yield from _envoy(start_envoy_module, setting, dev_config())


# --- helpers -----------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def reached(upstream, path: str) -> bool:
    return any(p == path for _, p in upstream.httpd.seen)


def reason(r) -> str:
    assert r.headers.get("content-type", "").startswith("application/json"), (r.status_code, r.text)
    return r.json()["reason"]


def smuggled(echo: dict) -> list:
    """Every client-made identity value the upstream saw: in header names in any spelling, in the
    CGI environ (where `x_a` and `x-a` merge), and in trailers."""
    out = [(n, v) for n, v in echo["raw_headers"] if is_identity(n) and SPOOF in v]
    out += [(k, v) for k, v in echo["environ"].items() if k.startswith("HTTP_X_EDGEGATE_") and SPOOF in v]
    out += [("trailer " + n, v) for n, v in echo["trailers"] if is_identity(n)]
    return out


def h1(env, method, path, headers=(), **kw):
    return http1_request(env.port, method, path, list(headers), **kw)


# === 1. identity headers in every spelling ======================================================


def test_the_shipped_settings_refuse_underscores_and_normalise_paths():
    """envoy/envoy.yaml sets the four connection-manager settings issue 11 asks for."""
    s = envoyproc.HCM_SETTINGS["shipped"]
    assert s.get("normalize_path") is True and s.get("merge_slashes") is True, s
    assert s.get("path_with_escaped_slashes_action") == "REJECT_REQUEST", s
    assert rejects_underscores("shipped"), s


SPELLINGS = [
    "x-edgegate-roles",  # the exact name: removed today
    "X-EDGEGATE-ROLES",  # upper case, same name: removed today (HTTP/1 names are case-insensitive)
    "x_edgegate_roles",
    "X_EDGEGATE_ROLES",
    "x-edgegate_credential",
    "X_Edgegate-Subject",
    "x_edgegate_dev_mode",
]


def check_spelling_result(r, upstream, path, setting, name, expect_roles=None):
    if r.status_code == 400 and rejects_underscores(setting) and "_" in name:
        # Envoy's headers_with_underscores_action: REJECT_REQUEST answered; nothing went upstream.
        assert not reached(upstream, path), path
        return
    assert r.status_code == 200, (name, r.status_code, r.text)
    echo = r.json()
    assert smuggled(echo) == [], (name, smuggled(echo))
    if expect_roles is not None:
        # The app reads exactly edgegate's value, under every key a CGI app may look at.
        assert echo["environ"].get("HTTP_X_EDGEGATE_ROLES") == expect_roles, echo["environ"]
        assert [n for n, _ in echo["raw_headers"] if norm(n) == "x-edgegate-roles"] == ["x-edgegate-roles"]


@pytest.mark.parametrize("name", SPELLINGS)
def test_spelling_on_a_public_route(main, upstream, setting, name):
    env = need(main)
    path = unique("/public/spell")
    r = h1(env, "GET", path, [(name, SPOOF)])
    check_spelling_result(r, upstream, path, setting, name)


@pytest.mark.parametrize("name", SPELLINGS)
def test_spelling_next_to_a_real_identity(main, upstream, keys, setting, name):
    env = need(main)
    path = unique("/app/spell")
    r = h1(env, "GET", path, [("authorization", f"Bearer {keys.jwt(roles=['staff'])}"), (name, SPOOF)])
    check_spelling_result(r, upstream, path, setting, name, expect_roles="staff" if "roles" in norm(name) else None)


def test_every_spelling_at_once_with_repeats(main, upstream, keys, setting):
    env = need(main)
    path = unique("/app/mixed")
    headers = [(n, SPOOF) for n in SPELLINGS] + [("X_EDGEGATE_ROLES", SPOOF + "2"), ("x-edgegate_email", SPOOF)]
    r = h1(env, "GET", path, [("authorization", f"Bearer {keys.jwt()}"), *headers])
    check_spelling_result(r, upstream, path, setting, "x_mixed", expect_roles="staff")


def test_headers_left_out_of_send_are_not_sent_and_client_copies_are_still_removed(narrow, upstream, keys,
                                                                                  setting):
    """With `send: ["subject"]` the upstream gets the subject and no other identity header:
    neither edgegate's (roles, credential, provider, expiry stay at the edge) nor a client's copy
    of one edgegate no longer sends, in any spelling, the renamed email header included."""
    env = need(narrow)
    names = [n for n in IDENTITY + ["x-user-mail"] if n != "x-edgegate-email"]
    if not rejects_underscores(setting):
        names += ["x_edgegate_roles", "X_Edgegate_Credential", "x_user_mail"]
    for credential in (f"Bearer {keys.jwt(roles=['staff'])}", None):
        path = unique("/app/narrow")
        headers = [(n, SPOOF) for n in names]
        if credential:
            headers.append(("authorization", credential))
        else:
            headers.append(("cookie", f"edgegate_session={keys.session()}"))
        r = h1(env, "GET", path, headers)
        assert r.status_code == 200, (r.status_code, r.text)
        echo = r.json()
        assert smuggled(echo) == [], smuggled(echo)
        sent = [(n, v) for n, v in echo["raw_headers"] if is_identity(n) or norm(n) == "x-user-mail"]
        expected = "staff-user" if credential else "sess-user"
        assert sent == [("x-edgegate-subject", expected)], sent
        environ = [k for k in echo["environ"] if k.startswith(("HTTP_X_EDGEGATE_", "HTTP_X_USER_MAIL"))]
        assert environ == ["HTTP_X_EDGEGATE_SUBJECT"], environ


def test_spelling_over_http2(main, upstream, setting):
    env = need(main)
    path = unique("/public/h2spell")
    r = h2_request(env.port, "GET", path, [("x_edgegate_roles", SPOOF), ("x-edgegate_subject", SPOOF)])
    if rejects_underscores(setting) and r.status_code in (0, 400):
        assert not reached(upstream, path)  # refused (400 or stream reset) by Envoy itself
        return
    assert r.status_code == 200, (r.status_code, r.text)
    assert smuggled(r.json()) == [], smuggled(r.json())


# === 2. request trailers ========================================================================

HYPHEN_TRAILERS = [("x-edgegate-roles", SPOOF), ("X-Edgegate-Subject", SPOOF), ("x-checksum", "abc123")]
UNDERSCORE_TRAILERS = [("x_edgegate_roles", SPOOF), ("x-checksum", "abc123")]


def check_trailers(r, upstream, path, setting, sent):
    if r.status_code in (0, 400) and rejects_underscores(setting) and any("_" in n for n, _ in sent):
        # Envoy refused the underscore trailer itself (after the headers went upstream, so the
        # upstream saw a request cut short): no identity trailer reached it.
        got = [e["trailers"] for e in upstream.httpd.received if e["path"] == path]
        assert all(not any(is_identity(n) for n, _ in t) for t in got), got
        return
    assert r.status_code == 200, (r.status_code, r.text)
    echo = r.json()
    assert [n for n, _ in echo["trailers"] if is_identity(n)] == [], echo["trailers"]
    # The path carries trailers at all: the harmless one arrived (else this test proves nothing).
    assert ["x-checksum", "abc123"] in [[n.lower(), v] for n, v in echo["trailers"]], echo["trailers"]
    assert echo["body"] == "hello"


def post_with_trailers(main, upstream, keys, setting, trailers, route, prefix, send):
    """POSTs `hello` and `trailers` to a fresh path of `route` (`public`, or `protected` with a
    valid JWT) with `send(env, path, headers)`, then checks what the upstream got."""
    env = need(main)
    path = unique(f"/public/{prefix}" if route == "public" else f"/items/{prefix}")
    auth = [] if route == "public" else [("authorization", f"Bearer {keys.jwt()}")]
    check_trailers(send(env, path, auth), upstream, path, setting, trailers)


@pytest.mark.parametrize("trailers", [HYPHEN_TRAILERS, UNDERSCORE_TRAILERS], ids=["hyphen", "underscore"])
@pytest.mark.parametrize("route", ["public", "protected"])
def test_http1_chunked_trailers(main, upstream, keys, setting, trailers, route):
    post_with_trailers(main, upstream, keys, setting, trailers, route, "tr1", lambda env, path, auth: h1(
        env, "POST", path, auth, body=b"hello", trailers=trailers))


@pytest.mark.parametrize("trailers", [HYPHEN_TRAILERS, UNDERSCORE_TRAILERS], ids=["hyphen", "underscore"])
@pytest.mark.parametrize("route", ["public", "protected"])
def test_http2_trailers(main, upstream, keys, setting, trailers, route):
    post_with_trailers(main, upstream, keys, setting, trailers, route, "tr2", lambda env, path, auth: h2_request(
        env.port, "POST", path, auth, body=b"hello", trailers=trailers))


# === 3. method override =========================================================================

OVERRIDE_HEADERS = ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "x-http-method-override"]


def staff(keys):
    return ("authorization", f"Bearer {keys.jwt(roles=['staff'])}")


def admin(keys):
    return ("authorization", f"Bearer {keys.jwt(roles=['admin'], sub='root')}")


def assert_denied(r, upstream, path, status=403, why="missing_role"):
    assert r.status_code == status, (r.status_code, r.text)
    assert reason(r) == why
    assert not reached(upstream, path), f"{path} reached the upstream"


def post_item(env, who, prefix: str, overrides=(), query: str = ""):
    """`who` POSTs `{}` to a fresh `/items/<prefix>/…` path (then `?query`) with the `overrides`
    headers: (the response, the path and query it went to)."""
    path = unique(f"/items/{prefix}")
    target = f"{path}?{query}" if query else path
    return h1(env, "POST", target, [who, *overrides], body=b"{}"), target


@pytest.mark.parametrize("header", OVERRIDE_HEADERS)
def test_override_header_cannot_pass_a_delete_rule(main, upstream, keys, header):
    r, path = post_item(need(main), staff(keys), "ov", [(header, "DELETE")])
    assert_denied(r, upstream, path)


@pytest.mark.parametrize("value", ["delete", "GET, DELETE", "GET,DELETE", " DELETE "])
def test_override_values_case_and_lists(main, upstream, keys, value):
    r, path = post_item(need(main), staff(keys), "ovl", [("X-HTTP-Method-Override", value)])
    assert_denied(r, upstream, path)


def test_override_repeated_headers_count_as_a_list(main, upstream, keys):
    overrides = [("x-http-method-override", "GET"), ("x-http-method-override", "DELETE")]
    r, path = post_item(need(main), staff(keys), "ovr", overrides)
    assert_denied(r, upstream, path)


def test_override_in_another_carrier_than_the_first(main, upstream, keys):
    overrides = [("x-http-method-override", "GET"), ("x-method-override", "DELETE")]
    r, path = post_item(need(main), staff(keys), "ovc", overrides)
    assert_denied(r, upstream, path)


def test_override_with_underscore_name(main, upstream, keys, setting):
    r, path = post_item(need(main), staff(keys), "ovu", [("X_HTTP_METHOD_OVERRIDE", "DELETE")])
    if rejects_underscores(setting) and r.status_code == 400:
        assert not reached(upstream, path)
        return
    assert_denied(r, upstream, path)


@pytest.mark.parametrize("query", ["_method=DELETE", "a=1&_method=delete", "_method=GET,DELETE"])
def test_override_in_the_method_query_parameter(main, upstream, keys, query):
    r, target = post_item(need(main), staff(keys), "ovq", query=query)
    assert_denied(r, upstream, target)


def test_override_over_http2(main, upstream, keys):
    env = need(main)
    path = unique("/items/ovh2")
    r = h2_request(env.port, "POST", path, [staff(keys), ("x-http-method-override", "DELETE")], body=b"{}")
    assert r.status_code == 403, (r.status_code, r.text)
    assert not reached(upstream, path)


def test_override_that_the_caller_may_do_passes_and_is_forwarded(main, upstream, keys):
    """Control (passes today): admin may DELETE, staff may GET; the header reaches the app."""
    env = need(main)
    for who, value in ((admin(keys), "DELETE"), (staff(keys), "GET")):
        r = h1(env, "POST", unique("/items/ok"), [who, ("X-HTTP-Method-Override", value)], body=b"{}")
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.json()["headers"]["x-http-method-override"] == value
    # A plain DELETE by staff is refused (the rule itself works).
    path = unique("/items/plain")
    assert_denied(h1(env, "DELETE", path, [staff(keys)]), upstream, path)


@pytest.mark.parametrize("value", ["DE LETE", "DELETE;x", "DELETE/x", "A,B,C,D,E,F,G,H,I"])
def test_override_values_that_are_not_methods_are_refused(main, upstream, keys, value):
    r, path = post_item(need(main), admin(keys), "bad", [("X-HTTP-Method-Override", value)])
    assert r.status_code == 400, (value, r.status_code, r.text)
    assert not reached(upstream, path)


@pytest.mark.parametrize(
    "carrier",
    [("X-HTTP-Method-Override", "GET"), ("X-HTTP-Method", "POST"), ("x-method-override", "PUT"), ("query", "GET")],
)
def test_reject_mode_refuses_every_override(reject, upstream, keys, carrier):
    name, value = carrier
    if name == "query":
        r, target = post_item(need(reject), admin(keys), "rej", query=f"_method={value}")
    else:
        r, target = post_item(need(reject), admin(keys), "rej", [carrier])
    assert_denied(r, upstream, target, status=400, why="method_override_refused")


def test_reject_mode_without_override_serves(reject, keys):
    env = need(reject)
    r = h1(env, "POST", unique("/items/norej"), [staff(keys)], body=b"{}")
    assert r.status_code == 200, r.text


# === 4. consumed credentials stay at the edge ==================================================


def echo_of(r) -> dict:
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def cookies_of(echo) -> list[str]:
    return [v for n, v in echo["raw_headers"] if n.lower() == "cookie"]


# Each credential edgegate checks, where it is sent: (path, the header carrying it, its value for
# `keys`), an identity header the allowed request gets, and the header that must not go upstream.
CONSUMED = {
    "bearer_jwt": ("/app/c1", "Authorization", lambda k: f"Bearer {k.jwt()}", ("x-edgegate-credential", "jwt"),
                   "authorization"),
    "bearer_api_key": ("/app/c2", "authorization", lambda k: f"Bearer {k.api_key}",
                       ("x-edgegate-credential", "api_key"), "authorization"),
    "api_key_header": ("/app/c3", "X-Api-Key", lambda k: k.api_key, ("x-edgegate-key-name", "staff-key"),
                       "x-api-key"),
    "jwt_header_source": ("/app/c4", "x-jwt-assertion", lambda k: k.jwt(), ("x-edgegate-credential", "jwt"),
                          "x-jwt-assertion"),
}


@pytest.mark.parametrize("credential", CONSUMED)
def test_the_checked_credential_is_not_forwarded(main, keys, credential):
    path, header, value, (identity, expected), consumed = CONSUMED[credential]
    echo = echo_of(h1(need(main), "GET", path, [(header, value(keys))]))
    assert echo["headers"][identity] == expected
    assert consumed not in echo["headers"], echo["headers"]


def test_jwt_cookie_is_not_forwarded_other_cookies_are_in_order(main, keys):
    echo = echo_of(h1(need(main), "GET", "/app/c5", [("cookie", f"z=1; access_token={keys.jwt()}; a=2; m=3")]))
    assert echo["headers"]["x-edgegate-credential"] == "jwt"
    assert cookies_of(echo) == ["z=1; a=2; m=3"]


def test_session_and_edgegate_cookies_are_removed(main, keys):
    cookie = (f"theme=dark; edgegate_session={keys.session()}; lang=en; edgegate_session_refresh=r3fr3sh; "
              "edgegate_login_abc=state1; edgegate_login_x-y=state2; tail=1")
    echo = echo_of(h1(need(main), "GET", "/app/c6", [("cookie", cookie)]))
    assert echo["headers"]["x-edgegate-subject"] == "sess-user"
    assert cookies_of(echo) == ["theme=dark; lang=en; tail=1"]


def test_several_cookie_headers_become_one_in_order(main, keys):
    echo = echo_of(h1(need(main), "GET", "/app/c7", [
        ("cookie", f"a=1; edgegate_session={keys.session()}"),
        ("Cookie", "b=2; edgegate_login_q=s"),
        ("cookie", "c=3"),
    ]))
    assert echo["headers"]["x-edgegate-subject"] == "sess-user"
    assert cookies_of(echo) == ["a=1; b=2; c=3"]


def test_only_edgegate_cookies_means_no_cookie_header(main, keys):
    echo = echo_of(h1(need(main), "GET", "/app/c8", [("cookie", f"edgegate_session={keys.session()}; edgegate_login_z=1")]))
    assert cookies_of(echo) == []


def test_edgegate_cookies_are_removed_on_public_routes_too(main, keys):
    echo = echo_of(h1(need(main), "GET", "/public/c9", [("cookie", f"keep=1; edgegate_session={keys.session()}; edgegate_login_a=1")]))
    assert cookies_of(echo) == ["keep=1"]


def test_cookie_crumbs_over_http2(main, keys):
    r = h2_request(need(main).port, "GET", "/app/c10", [
        ("cookie", "a=1"), ("cookie", f"edgegate_session={keys.session()}"), ("cookie", "b=2"),
        ("cookie", "edgegate_session_refresh=x"),
    ])
    echo = echo_of(r)
    assert echo["headers"]["x-edgegate-subject"] == "sess-user"
    assert cookies_of(echo) == ["a=1; b=2"]


def test_unrelated_headers_are_forwarded_untouched(main, keys):
    """Control (passes today): what edgegate did not consume reaches the app."""
    echo = echo_of(h1(need(main), "GET", "/app/c11", [("x-api-key", keys.api_key), ("x-request-id", "r1"),
                                                        ("x-custom", "v")]))
    assert echo["headers"]["x-request-id"] == "r1" and echo["headers"]["x-custom"] == "v"


def test_forward_true_provider_forwards_its_token(fwd, keys):
    token = keys.jwt(issuer=FWD_ISSUER, sub="fwd-user")
    echo = echo_of(h1(need(fwd), "GET", "/app/f1", [("authorization", f"Bearer {token}"),
                                                     ("cookie", "a=1; edgegate_session_refresh=r; edgegate_login_s=1")]))
    assert echo["headers"]["x-edgegate-provider"] == "fwd"
    assert echo["headers"]["authorization"] == f"Bearer {token}"
    # edgegate's own cookies are still removed: they are never the app's.
    assert cookies_of(echo) == ["a=1"]


def test_forward_is_per_provider(fwd, keys):
    echo = echo_of(h1(need(fwd), "GET", "/app/f2", [("authorization", f"Bearer {keys.jwt()}")]))
    assert echo["headers"]["x-edgegate-provider"] == "local"
    assert "authorization" not in echo["headers"]


def test_api_keys_forward_true_forwards_the_key(fwd, keys):
    echo = echo_of(h1(need(fwd), "GET", "/app/f3", [("x-api-key", keys.api_key)]))
    assert echo["headers"]["x-api-key"] == keys.api_key


FORGED = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiIsInJvbGVzIjpbImFkbWluIl19."


@pytest.mark.parametrize("order", ["valid-first", "forged-first"])
def test_a_second_authorization_header_never_rides_along_a_forwarded_token(fwd, keys, upstream, order):
    """With `forward: true` the token goes upstream as sent: a second Authorization header (an
    unsigned admin token here) must not go with it for the app to read. 400, nothing upstream."""
    valid = f"Bearer {keys.jwt(issuer=FWD_ISSUER, sub='fwd-user')}"
    pair = [valid, FORGED] if order == "valid-first" else [FORGED, valid]
    path = unique("/app/twice")
    r = h1(need(fwd), "GET", path, [("authorization", v) for v in pair])
    assert_denied(r, upstream, path, status=400, why="repeated_credential")


def test_a_forwarded_api_key_header_sent_twice_is_refused(fwd, keys, upstream):
    path = unique("/app/twice-key")
    r = h1(need(fwd), "GET", path, [("x-api-key", keys.api_key), ("X-Api-Key", keys.admin_api_key)])
    assert_denied(r, upstream, path, status=400, why="repeated_credential")


# === 5. dev mode ================================================================================

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "LOCALHOST:8080", "127.9.8.7:1", "[::1]", "[::1]:4443", "localhost:80"]
FOREIGN_HOSTS = ["example.com", "app.localhost", "localhost.evil.com", "127.0.0.1.nip.io", "[::2]", "10.0.0.1",
                 "evil.com:80"]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_dev_mode_serves_loopback_hosts(dev, host):
    """Control (passes today): dev mode still works where it is meant to."""
    r = http1_request(need(dev).port, "GET", unique("/dev/ok"), [], host=host)
    h = echo_of(r)["headers"]
    assert h["x-edgegate-subject"] == "dev-alice" and h["x-edgegate-dev-mode"] == "true"


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_dev_mode_refuses_other_hosts(dev, upstream, host):
    path = unique("/dev/no")
    r = http1_request(need(dev).port, "GET", path, [], host=host)
    assert_denied(r, upstream, path, status=403, why="dev_mode_not_local")


def test_dev_mode_absolute_form_target_names_the_authority(dev, upstream):
    # `GET http://example.com/x` with `Host: localhost`: Envoy takes the authority from the URL
    # (the upstream gets `host: example.com`); edgegate must decide on that same authority.
    path = unique("/dev/abs")
    r = http1_request(need(dev).port, "GET", f"http://example.com{path}", [], host="localhost")
    if r.status_code == 200:
        assert re.fullmatch(r"(localhost|127\.[0-9.]+|\[::1\])(:\d+)?", r.json()["headers"]["host"], re.I), r.text
        return
    assert r.status_code in (400, 403), (r.status_code, r.text)
    assert not reached(upstream, path)


def test_dev_mode_http2_authority(dev, upstream):
    path = unique("/dev/h2")
    r = h2_request(need(dev).port, "GET", path, [], authority="example.com")
    assert r.status_code == 403, (r.status_code, r.text)
    assert not reached(upstream, path)
    r = h2_request(need(dev).port, "GET", unique("/dev/h2ok"), [], authority="localhost:1")
    assert r.status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"api_keys": {"keys": [{"name": "k", "hash": creds.api_key_hash(creds.mint_api_key())}]}},
        {"magic_links": {"keys": [{"kid": "m", "secret": creds.new_secret()}]}},
        {"jwt": {"providers": [provider("p", "https://idp.example.com", creds.new_secret(), "k")]}},
    ],
    ids=["api_keys", "magic_links", "public_issuer"],
)
def test_dev_mode_with_production_credentials_is_refused_at_load(start_envoy, extra):
    with pytest.raises(RuntimeError) as e:
        start_envoy({**dev_config(), **extra})
    assert "config refused" in str(e.value) and "dev_mode" in str(e.value), str(e.value)[-2000:]


# === 6. header bounds ===========================================================================


def test_too_many_header_bytes_is_431(main, upstream):
    path = unique("/public/big")
    junk = [(f"x-junk-{i}", "j" * 4000) for i in range(26)]  # ~104 KB > 96 KiB
    r = h1(need(main), "GET", path, junk + [("x-edgegate-roles", SPOOF)])
    assert_denied(r, upstream, path, status=431, why="headers_too_large")


def test_too_many_headers_is_431(main, upstream):
    path = unique("/public/many")
    r = h1(need(main), "GET", path, [(f"x-h{i}", "v") for i in range(250)])
    assert_denied(r, upstream, path, status=431, why="headers_too_large")


def test_headers_within_bounds_pass(main):
    """Control (passes today)."""
    r = h1(need(main), "GET", unique("/public/fits"), [(f"x-junk-{i}", "j" * 3000) for i in range(20)]
           + [(f"x-h{i}", "v") for i in range(100)])
    assert r.status_code == 200, (r.status_code, r.text[:300])
