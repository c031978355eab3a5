"""The shipped demo config (envoy/envoy.yaml) runs as written (ports moved to free ones) and
accepts the credentials envoy/demo/mint.py makes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
import yaml

from support import envoyproc
from support.creds import api_key_hash
from support.http import bearer, get, post
from support.idp import IdP, IdPServer

ENVOY_DIR = Path(__file__).resolve().parents[1]
YAML = (ENVOY_DIR / "envoy.yaml").read_text()
# The same demo with the native dynamic module instead of the wasm filter.
NATIVE_YAML = (ENVOY_DIR / "native" / "envoy.yaml").read_text()
YAMLS = {"wasm": YAML, "native": NATIVE_YAML}


def load_mint():
    spec = importlib.util.spec_from_file_location("demo_mint", ENVOY_DIR / "demo" / "mint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mint = load_mint()


def inline_config(text: str = YAML) -> dict:
    """The JSON block scalar between the BEGIN/END markers of envoy.yaml (or `text`)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if "BEGIN edgegate config" in ln)
    end = next(i for i, ln in enumerate(lines) if "END edgegate config" in ln)
    block = lines[start + 1 : end]
    assert block[0].strip() == "value: |"
    return json.loads("\n".join(block[1:]))


def test_mint_py_matches_the_inline_config():
    cfg = inline_config()
    demo = next(p for p in cfg["jwt"]["providers"] if p["name"] == "demo")
    assert demo["issuer"] == mint.ISSUER
    assert mint.AUDIENCE in demo["audiences"]
    assert demo["shared_secrets"] == [{"kid": mint.HS256_KID, "secret": mint.HS256_SECRET}]
    assert cfg["api_keys"]["keys"][0]["hash"] == api_key_hash(mint.API_KEY)
    assert cfg["magic_links"]["keys"] == [{"kid": mint.MAGIC_KID, "secret": mint.MAGIC_SECRET}]


def test_the_demo_op_matches_the_login_section():
    """envoy/demo/op.mjs registers the client and redirect URI envoy.yaml's login section uses."""
    login = inline_config()["login"]
    op = (ENVOY_DIR / "demo" / "op.mjs").read_text()
    assert f'CLIENT_ID = "{login["client_id"]}"' in op
    assert f'CLIENT_SECRET = "{login["client_secret"]}"' in op
    assert login["redirect_uri"] == "http://127.0.0.1:10000/auth/callback"
    assert '`${APP}/auth/callback`' in op and '"http://127.0.0.1:10000"' in op
    provider = next(p for p in inline_config()["jwt"]["providers"] if p["name"] == login["provider"])
    assert provider["issuer"] == "http://127.0.0.1:10003" and login["client_id"] in provider["audiences"]


def test_the_native_example_is_the_demo_with_the_module():
    """envoy/native/envoy.yaml differs from envoy.yaml only in the filter (same edgegate JSON,
    now the dynamic module's filter_config) and in how metrics get their labels."""
    assert inline_config(NATIVE_YAML) == inline_config(YAML)
    wasm_doc, native_doc = yaml.safe_load(YAML), yaml.safe_load(NATIVE_YAML)

    def hcm(doc):
        return doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]

    nf = hcm(native_doc)["http_filters"][0]
    assert nf["name"] == "envoy.filters.http.dynamic_modules"
    assert nf["typed_config"]["dynamic_module_config"] == {"name": "edgegate"}
    assert nf["typed_config"]["filter_config"]["@type"].endswith("google.protobuf.StringValue")
    for doc in (wasm_doc, native_doc):
        hcm(doc)["http_filters"].pop(0)
        doc.pop("stats_config", None)
        doc.pop("layered_runtime", None)
    assert native_doc == wasm_doc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def demo_ports():
    """The demo's listener and OP ports (10000, 10003 in envoy.yaml), moved to free ones."""
    return free_port(), free_port()


@pytest.fixture
def demo(tmp_path, packaging, upstream, demo_ports):
    """The shipped demo config of the packaging (envoy.yaml, envoy/native/envoy.yaml), run; its
    listener (and login section's redirect_uri) and the demo OP's cluster on `demo_ports`
    (nothing listens on the OP's unless a test asks for `demo_op`)."""
    idp = IdPServer(idp=IdP(audience="edgegate-demo")).start()
    port, op_port = demo_ports
    # Comment lines dropped (they mention the demo ports); everything else as shipped.
    text = "\n".join(ln for ln in YAMLS[packaging.kind].splitlines() if not ln.lstrip().startswith("#"))
    text = text.replace("port_value: 9901", "port_value: 0")
    text = text.replace("10000", str(port)).replace("10001", str(upstream.port)).replace("10002", str(idp.port))
    text = text.replace("10003", str(op_port))
    text = text.replace("filename: .tools/edgegate_proxy_wasm.wasm", f"filename: {packaging.path}")
    assert re.search(r"\b1000[0-3]\b|9901", text) is None
    env = envoyproc.Envoy(tmp_path / "envoy", text)
    env.op_port = op_port
    try:
        yield env.start(), idp
    finally:
        env.stop()
        idp.stop()


def test_demo_config_serves_the_demo_credentials(demo):
    env, idp = demo
    assert get(env.url("/public/hello")).status_code == 200
    assert get(env.url("/orders")).status_code == 401
    r = get(env.url("/orders"), headers=bearer(mint.demo_jwt("alice")))
    assert r.status_code == 200 and r.json()["headers"]["x-edgegate-subject"] == "alice"
    assert get(env.url("/admin"), headers=bearer(mint.demo_jwt("alice"))).status_code == 403
    assert get(env.url("/admin"), headers=bearer(mint.demo_jwt("root", ["admin"]))).status_code == 200
    r = get(env.url("/orders"), headers={"x-api-key": mint.API_KEY})
    assert r.status_code == 200 and r.json()["headers"]["x-edgegate-subject"] == "demo-ci"
    r = get(env.url("/orders"), headers=bearer(idp.idp.mint(sub="bob")))
    assert r.status_code == 200 and r.json()["headers"]["x-edgegate-provider"] == "idp"
    token = mint.demo_magic_link()
    assert get(env.url(f"/auth/magic?token={token}")).status_code == 200
    assert post(env.url("/auth/magic"), data={"token": token}).status_code == 302
    prom = env.prometheus()
    assert 'edgegate_allowed{credential="jwt"}' in prom


@pytest.fixture
def demo_op(demo_ports):
    """envoy/demo/op.mjs (npm oidc-provider, edge-worker/node_modules) on the demo's OP port,
    started before Envoy (as envoy/run.sh does: Envoy fetches the OP's keys at start); stopped
    by PID."""
    port, op_port = demo_ports
    op = subprocess.Popen(
        ["node", str(ENVOY_DIR / "demo" / "op.mjs"), "--port", str(op_port)],
        env={**os.environ, "EDGEGATE_DEMO_APP": f"http://127.0.0.1:{port}"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert op.poll() is None, op.stdout.read().decode()
            try:
                if get(f"http://127.0.0.1:{op_port}/.well-known/openid-configuration").status_code == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the demo OP did not start"
            time.sleep(0.2)
        yield op
    finally:
        op.terminate()
        try:
            op.wait(5)
        except subprocess.TimeoutExpired:
            op.kill()
            op.wait()


class Browser:
    """Follows redirects by hand with one cookie store for 127.0.0.1 (like a browser's, keyed by
    host, not port: Secure cookies count on http://127.0.0.1, a secure context for browsers)."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def go(self, url: str, data: dict | None = None, stop_at: str | None = None):
        for _ in range(15):
            headers = {"accept": "text/html"}
            if self.cookies:
                headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            r = requests.request("POST" if data else "GET", url, data=data, headers=headers,
                                 allow_redirects=False, timeout=10)
            for line in r.raw.headers.getlist("set-cookie"):
                name, _, rest = line.partition("=")
                value = rest.split(";", 1)[0]
                if "max-age=0" in line.lower().replace(" ", ""):
                    self.cookies.pop(name.strip(), None)
                else:
                    self.cookies[name.strip()] = value
            if r.status_code not in (302, 303) or (stop_at and r.headers["location"].startswith(stop_at)):
                return r
            url, data = urljoin(url, r.headers["location"]), None
        raise AssertionError("too many redirects")


def test_the_demo_logs_a_browser_in(demo_op, demo, packaging):
    """What envoy/run.sh's banner and the README promise: /app sends a browser to the demo OP,
    one click as alice logs in, and /auth/me answers her identity."""
    env, _ = demo
    b = Browser()
    page = b.go(env.url("/app"))
    assert page.status_code == 200 and "Log in as alice" in page.text, page.text
    action = re.search(r'action="([^"]+)"', page.text).group(1)
    app = b.go(f"http://127.0.0.1:{env.op_port}{action}", data={"user": "alice"})
    assert app.status_code == 200, (app.status_code, app.text, env.log_tail())
    seen = app.json()["headers"]
    assert seen["x-edgegate-subject"] == "alice" and seen["x-edgegate-credential"] == "session"
    assert seen["x-edgegate-roles"] == "admin,staff" and seen["x-edgegate-provider"] == "op"
    assert {"edgegate_session", "edgegate_session_refresh"} <= b.cookies.keys()
    me = b.go(env.url("/auth/me")).json()
    assert me["subject"] == "alice" and me["email"] == "alice@example.com", me
    assert b.go(env.url("/admin")).status_code == 200
    out = b.go(env.url("/auth/logout"), stop_at=f"http://127.0.0.1:{env.op_port}/session/end")
    assert out.status_code == 302 and "edgegate_session" not in b.cookies
    assert b.go(env.url("/auth/me")).status_code == 401
    # The login routes' answers are counted by outcome (in both packagings): the redirects of
    # /auth/login, the callback and logout, /auth/me's identity and its 401.
    prom = env.prometheus()
    def login_count(outcome):
        m = re.search(r'edgegate_login\{outcome="%s"\} (\d+)' % outcome, prom)
        return int(m.group(1)) if m else 0
    assert login_count("redirect") >= 3, prom
    assert login_count("ok") >= 1 and login_count("refused") >= 1, prom


def test_demo_config_hardening_settings_hold(demo, upstream):
    """The shipped envoy.yaml's connection-manager hardening, judged by what the upstream got."""
    env, _ = demo
    seen = len(upstream.httpd.seen)
    # A header name with `_` (read as HTTP_X_EDGEGATE_ROLES by CGI-style apps): 400 from Envoy.
    for name in ("x_edgegate_roles", "X_EDGEGATE_ROLES", "x-edgegate_credential"):
        r = get(env.url("/public/hello"), headers={name: "admin"})
        assert r.status_code == 400, (name, r.status_code, r.text)
    # An encoded slash (or backslash) in the path: 400.
    for path in ("/public%2F..%2Fadmin", "/public/x%2fy", "/public%5Cx"):
        r = raw_get(env, path)
        assert r.startswith(b"HTTP/1.1 400"), (path, r[:100])
    assert len(upstream.httpd.seen) == seen, "nothing refused reached the upstream"
    # `//` merged and `..` resolved before the rules match and before the upstream sees the path.
    r = get(env.url("//public//hello"))
    assert r.status_code == 200 and r.json()["path"] == "/public/hello", r.text
    assert raw_get(env, "/public/../orders").startswith(b"HTTP/1.1 401")


def raw_get(env, path: str) -> bytes:
    """A GET with the path exactly as given (HTTP libraries normalise paths)."""
    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data


@pytest.mark.parametrize("kind", sorted(YAMLS))
def test_demo_config_sets_the_four_hardening_settings_with_a_reason(kind):
    YAML = YAMLS[kind]
    doc = yaml.safe_load(YAML)
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["normalize_path"] is True
    assert hcm["merge_slashes"] is True
    assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"
    # the same settings as every listener the tests (and docs/first-route/run.sh) render
    for k, v in envoyproc.HARDENING.items():
        assert hcm[k] == v, k
    # each with a comment saying why, right above it
    lines = YAML.splitlines()
    for setting in ("normalize_path:", "path_with_escaped_slashes_action:"):
        i = next(i for i, ln in enumerate(lines) if ln.strip().startswith(setting))
        assert lines[i - 1].strip().startswith("#"), setting
    i = next(i for i, ln in enumerate(lines) if "headers_with_underscores_action:" in ln)
    assert "HTTP_X_EDGEGATE_ROLES" in "\n".join(lines[i - 4 : i])
