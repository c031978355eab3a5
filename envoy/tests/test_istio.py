"""The Istio manifest (envoy/istio/wasmplugin.yaml) is deployable as written: its WasmPlugin has
the fields Istio needs (sha256, phase AUTHN, failStrategy FAIL_CLOSE, a selector), and its
`pluginConfig`, handed to a real Envoy the way Istio hands it (JSON in `configuration`), is
accepted and enforces what the manifest says — with the IdP reached through the cluster the
manifest names (`outbound|80||sso.example.com`, here a local Keycloak look-alike serving
discovery and the JWKS on Keycloak's paths)."""

from __future__ import annotations

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import jwt
import pytest
import yaml

from support import envoyproc
from support.http import bearer, get
from support.idp import new_key
from support.server import LoopbackServer

MANIFEST = Path(__file__).resolve().parents[1] / "istio" / "wasmplugin.yaml"
REQUEST_AUTHN = Path(__file__).resolve().parents[1] / "istio" / "requestauthentication.yaml"


def manifest_docs(path: Path) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text()) if d}


def plugin() -> dict:
    return manifest_docs(MANIFEST)["WasmPlugin"]


class FakeKeycloak(LoopbackServer):
    """Serves `<realm>/.well-known/openid-configuration` and the realm's certs, as Keycloak does,
    for the issuer the manifest names; mints RS256 tokens with one key."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.realm_path = "/" + issuer.split("://", 1)[1].split("/", 1)[1]
        self.key = new_key("RS256")
        self.hits: list[str] = []
        kc = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                kc.hits.append(self.path)
                if self.path == f"{kc.realm_path}/.well-known/openid-configuration":
                    body = {"issuer": kc.issuer, "jwks_uri": f"{kc.issuer}/protocol/openid-connect/certs"}
                elif self.path == f"{kc.realm_path}/protocol/openid-connect/certs":
                    body = {"keys": [kc.key.public_jwk()]}
                else:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass

        super().__init__(Handler, name="keycloak")
        self.start()

    def mint(self, **claims) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": ["desk-api", "account"], "sub": "ann", "iat": now, "exp": now + 300}
        body.update(claims)
        return jwt.encode(body, self.key.private, algorithm="RS256", headers={"kid": self.key.kid})


def test_the_wasmplugin_has_what_istio_needs():
    p = plugin()
    assert p["apiVersion"] == "extensions.istio.io/v1alpha1"
    spec = p["spec"]
    assert spec["phase"] == "AUTHN"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert re.fullmatch(r"[0-9a-f]{64}", spec["sha256"]), "sha256: 64 lower-case hex digits (envoy/istio/sha256.sh)"
    assert spec["url"].startswith(("oci://", "https://"))
    assert spec["selector"]["matchLabels"]
    assert isinstance(spec["pluginConfig"], dict)


def test_the_requestauthentication_pair_parses():
    docs = manifest_docs(REQUEST_AUTHN)
    assert {"RequestAuthentication", "AuthorizationPolicy"} <= docs.keys()
    ours = plugin()["spec"]["pluginConfig"]["jwt"]["providers"][0]
    rule = docs["RequestAuthentication"]["spec"]["jwtRules"][0]
    # The two describe the same provider.
    assert rule["issuer"] == ours["issuer"]
    assert rule["audiences"] == ours["audiences"]


@pytest.fixture
def keycloak():
    issuer = plugin()["spec"]["pluginConfig"]["jwt"]["providers"][0]["issuer"]
    kc = FakeKeycloak(issuer)
    yield kc
    kc.stop()


def test_envoy_runs_the_plugin_config_and_enforces_it(start_envoy, keycloak, upstream):
    conf = plugin()["spec"]["pluginConfig"]
    cluster = conf["jwt"]["providers"][0]["remote_jwks"]["cluster"]
    # Istio passes pluginConfig to the filter as JSON, like this.
    env = start_envoy(json.dumps(conf), clusters={cluster: keycloak.port})

    r = get(env.url("/healthz"))
    assert r.status_code == 200, r.text
    r = get(env.url("/api/tickets"))
    assert r.status_code == 401 and r.json()["reason"] == "credential_missing", r.text

    agent = keycloak.mint(realm_access={"roles": ["agent"]})
    r = get(env.url("/api/tickets"), headers=bearer(agent))
    assert r.status_code == 200, (r.status_code, r.text, env.log_tail())
    assert r.json()["headers"]["x-edgegate-subject"] == "ann"
    assert any(h.endswith("/.well-known/openid-configuration") for h in keycloak.hits), keycloak.hits

    r = get(env.url("/admin"), headers=bearer(agent))
    assert r.status_code == 403 and r.json()["reason"] == "missing_role", r.text

    # The desk-api client role desk-admin is renamed to admin by the manifest's role_map.
    admin = keycloak.mint(resource_access={"desk-api": {"roles": ["desk-admin"]}})
    r = get(env.url("/admin/users"), headers=bearer(admin))
    assert r.status_code == 200, r.text
    assert "admin" in r.json()["headers"]["x-edgegate-roles"].split(",")

    # A client role of another client counts for nothing.
    other = keycloak.mint(resource_access={"account": {"roles": ["desk-admin"]}})
    assert get(env.url("/admin"), headers=bearer(other)).status_code == 403


def test_the_envoyfilter_sets_the_hardening_and_envoy_accepts_and_applies_it(start_envoy, packaging, upstream, tmp_path):
    """A WasmPlugin cannot set HCM options; the manifest's EnvoyFilter does. Its patch, merged
    into a connection manager that has Envoy's defaults (as Istio's MERGE does), is accepted by
    Envoy and refuses `_` in header names and `%2F` in paths."""
    docs = manifest_docs(MANIFEST)
    ef = docs["EnvoyFilter"]["spec"]
    assert ef["workloadSelector"]["labels"] == plugin()["spec"]["selector"]["matchLabels"]
    patch = ef["configPatches"][0]
    assert patch["applyTo"] == "NETWORK_FILTER" and patch["patch"]["operation"] == "MERGE"
    assert patch["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.http_connection_manager"
    settings = dict(patch["patch"]["value"]["typed_config"])
    assert settings.pop("@type").endswith("HttpConnectionManager")
    assert settings == envoyproc.HARDENING
    text = MANIFEST.read_text()
    assert "HTTP_X_EDGEGATE_ROLES" in text and "%2F" in text  # the comments say why

    conf = {"realm": "desk", "rules": [{"name": "all", "match": {"path": {"prefix": "/"}}, "require": {"public": True}}]}
    listener = envoyproc.without_hardening(envoyproc.listener(0, packaging, conf))
    listener["filter_chains"][0]["filters"][0]["typed_config"].update(settings)
    cfg = envoyproc.bootstrap({"upstream": upstream.port}, listeners=[listener])
    v = envoyproc.validate(cfg, tmp_path / "validate")
    assert v.returncode == 0, v.stdout + v.stderr
    env = start_envoy(None, config=cfg)
    assert get(env.url("/api/x")).status_code == 200
    assert get(env.url("/api/x"), headers={"x_edgegate_roles": "admin"}).status_code == 400
    r = get(env.url("/api%2Fx"))
    assert r.status_code == 400, r.text


def test_the_plugin_config_logs_in_through_the_serviceentry_cluster():
    """The manifest's login section reaches the IdP through the ServiceEntry's cluster (the only
    kind of cluster Istio makes), and takes the client secret from the proxy's environment."""
    docs = manifest_docs(MANIFEST)
    spec = plugin()["spec"]
    conf = spec["pluginConfig"]
    host = docs["ServiceEntry"]["spec"]["hosts"][0]
    port = docs["ServiceEntry"]["spec"]["ports"][0]["number"]
    outbound = f"outbound|{port}||{host}"
    assert conf["login"]["cluster"] == outbound
    assert conf["jwt"]["providers"][0]["remote_jwks"]["cluster"] == outbound
    assert "client_secret" not in conf["login"]
    assert spec["vmConfig"]["env"] == [{"name": "OIDC_CLIENT_SECRET", "valueFrom": "HOST"}]
    tls = docs["DestinationRule"]["spec"]["trafficPolicy"]["portLevelSettings"][0]
    assert tls["port"]["number"] == port and tls["tls"] == {"mode": "SIMPLE", "sni": host}
