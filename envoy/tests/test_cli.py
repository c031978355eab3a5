"""What the operator CLI mints works in a real Envoy: an API key from `edgegate keys new` (its
printed config entry pasted into the config as is) and a link from `edgegate magic new` (read from
the very config file Envoy runs with). The binary is the real one, built with cargo."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from support import creds, envoyproc
from support.cli import build_edgegate, cli
from support.http import bearer, get, post

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def edgegate_bin() -> Path:
    return build_edgegate()


def keys_new(exe: Path, *args: str) -> tuple[str, dict]:
    """`edgegate keys new`: the key is stdout's first line, the config entry the rest."""
    out = cli(exe, "keys", "new", *args).stdout
    key, entry = out.split("\n", 1)
    return key, json.loads(entry)


@pytest.fixture(scope="module")
def minted(edgegate_bin):
    key, entry = keys_new(edgegate_bin, "--name", "ci-pipeline-prod", "--roles", "staff,deployer",
                          "--expires", "90d")
    scoped_key, scoped_entry = keys_new(edgegate_bin, "--name", "reporter", "--roles", "staff",
                                        "--scope", "/api/")
    unlisted_key, _ = keys_new(edgegate_bin, "--name", "never-configured")
    return {"key": key, "entry": entry, "scoped_key": scoped_key, "scoped_entry": scoped_entry,
            "unlisted_key": unlisted_key}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, minted) -> Path:
    cfg = {
        "realm": "cli-tests",
        "api_keys": {"keys": [minted["entry"], minted["scoped_entry"]]},
        "magic_links": {"keys": [{"kid": "m1", "secret": creds.new_secret()}]},
        "session": {"keys": [{"kid": "s1", "secret": creds.new_secret()}]},
        "redirects": {"allowed_hosts": ["desk.example.com"]},
        "rules": [
            {"name": "tickets", "match": {"path": {"glob": "/tickets/*/**"}},
             "credentials": ["magic_link", "session", "api_key"]},
            {"name": "api", "match": {"path": {"prefix": "/api"}}, "credentials": ["api_key"],
             "require": {"roles_any": ["staff"]}},
            {"name": "app", "match": {"path": {"prefix": "/"}}, "credentials": ["session", "api_key"]},
        ],
    }
    path = tmp_path_factory.mktemp("cli") / "edgegate.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


@pytest.fixture(scope="module")
def env(start_envoy_module, config_file, edgegate_bin):
    # The operator's own check first, as the docs tell them to.
    assert "ok" in cli(edgegate_bin, "config", "check", str(config_file)).stdout.lower()
    return start_envoy_module(json.loads(config_file.read_text()))


def reason(r) -> str:
    assert r.headers.get("content-type", "").startswith("application/json"), (r.status_code, r.text)
    return r.json()["reason"]


def test_cli_minted_key_is_accepted_with_identity_headers(env, minted):
    r = get(env.url("/api/tickets"), headers=bearer(minted["key"]))
    assert r.status_code == 200, r.text
    h = r.json()["headers"]
    assert h["x-edgegate-subject"] == "ci-pipeline-prod"
    assert h["x-edgegate-credential"] == "api_key"
    assert h["x-edgegate-roles"] == "staff,deployer"
    # --expires 90d became expires_at, and the gateway passes it on.
    assert int(h["x-edgegate-expires"]) == minted["entry"]["expires_at"]


def test_tampered_or_unlisted_cli_key_is_refused(env, minted):
    key = minted["key"]
    i = len("egk_") + 5
    tampered = key[:i] + ("A" if key[i] != "A" else "B") + key[i + 1:]
    r = get(env.url("/api/tickets"), headers=bearer(tampered))
    assert r.status_code == 401 and reason(r) == "api_key_checksum"
    # Well-formed (checksum right) but not in the config.
    r = get(env.url("/api/tickets"), headers=bearer(minted["unlisted_key"]))
    assert r.status_code == 401 and reason(r) == "api_key_unknown"


def test_cli_key_scope_is_enforced(env, minted):
    r = get(env.url("/api/reports"), headers=bearer(minted["scoped_key"]))
    assert r.status_code == 200, r.text
    assert r.json()["headers"]["x-edgegate-subject"] == "reporter"
    r = get(env.url("/inbox"), headers=bearer(minted["scoped_key"]))
    assert r.status_code == 403 and reason(r) == "out_of_scope"


def magic_link(exe: Path, config_file: Path, *args: str) -> str:
    out = cli(exe, "magic", "new", "-c", str(config_file), "--base-url", "https://desk.example.com",
              *args).stdout.strip()
    assert out.startswith("https://desk.example.com/auth/magic?token="), out
    return out


def test_cli_magic_link_logs_a_guest_in_once(env, edgegate_bin, config_file, upstream):
    link = magic_link(edgegate_bin, config_file, "--email", "guest@example.com", "--purpose", "guest",
                      "--scope", "/tickets/TRK-2849", "--ttl", "1h")
    u = urlsplit(link)
    token = parse_qs(u.query)["token"][0]
    # GET: the confirm page, which consumes nothing.
    page = get(env.url(f"{u.path}?{u.query}"))
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert 'method="post"' in page.text and token in page.text
    # POST (the page's button): a session cookie and a redirect into the link's scope.
    r = post(env.url(u.path), data={"token": token})
    assert r.status_code == 302, r.text
    cookie = r.headers["set-cookie"].split(";", 1)[0]
    assert cookie.startswith("edgegate_session=")
    ok = get(env.url("/tickets/TRK-2849/thread"), headers={"cookie": cookie})
    assert ok.status_code == 200, ok.text
    h = ok.json()["headers"]
    assert h["x-edgegate-email"] == "guest@example.com"
    assert h["x-edgegate-credential"] == "magic_link"
    other = get(env.url("/tickets/TRK-1/thread"), headers={"cookie": cookie})
    assert other.status_code == 403 and reason(other) == "out_of_scope"
    # Single use.
    again = post(env.url(u.path), data={"token": token})
    assert again.status_code == 401 and reason(again) == "token_replayed"


def test_cli_magic_login_link_with_target(env, edgegate_bin, config_file):
    link = magic_link(edgegate_bin, config_file, "--email", "ann@example.com", "--purpose", "login",
                      "--target", "/inbox")
    token = parse_qs(urlsplit(link).query)["token"][0]
    r = post(env.url("/auth/magic"), data={"token": token})
    assert r.status_code == 302, r.text
    assert r.headers["location"] == "/inbox"
    cookie = r.headers["set-cookie"].split(";", 1)[0]
    h = get(env.url("/inbox"), headers={"cookie": cookie}).json()["headers"]
    assert h["x-edgegate-email"] == "ann@example.com"


def test_tampered_cli_magic_link_is_refused(env, edgegate_bin, config_file):
    link = magic_link(edgegate_bin, config_file, "--email", "eve@example.com", "--purpose", "login")
    token = parse_qs(urlsplit(link).query)["token"][0]
    h, p, s = token.split(".")
    forged_payload = creds.b64url(json.dumps(
        {**json.loads(creds.b64url_decode(p)), "email": "boss@example.com"}).encode())
    for bad in (f"{h}.{forged_payload}.{s}", f"{h}.{p}.{s[:-4]}{'AAAA' if s[-4:] != 'AAAA' else 'BBBB'}"):
        r = post(env.url("/auth/magic"), data={"token": bad})
        assert r.status_code == 401, r.text
        assert reason(r) == "bad_signature"
        assert "set-cookie" not in r.headers


# --- the README's "Protect your first route in five minutes", step by step ----------------------


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_first_route_in_five_minutes(edgegate_bin, tmp_path):
    import signal
    import time

    section = _readme_section("Protect your first route in five minutes")
    assert "edgegate keys new --name first-key --roles admin" in section
    assert "docs/first-route/run.sh edgegate.json" in section
    # 1. mint a key; 2. the README's config with the printed entry in api_keys.keys.
    key, entry = keys_new(edgegate_bin, "--name", "first-key", "--roles", "admin")
    block = section.split("```json\n", 1)[1].split("```", 1)[0]
    cfg = json.loads(block)
    cfg["api_keys"]["keys"] = [entry]
    config = tmp_path / "edgegate.json"
    config.write_text(json.dumps(cfg, indent=2))
    # 3. run it (the script checks the config, builds the filter, starts Envoy and an echo app).
    port = _free_port()
    proc = subprocess.Popen([str(REPO / "docs/first-route/run.sh"), str(config), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out = []
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if line.startswith("edgegate is up"):
                break
        assert out and out[-1].startswith("edgegate is up"), "".join(out[-40:])
        base = f"http://127.0.0.1:{port}"
        # 4. the curl lines.
        assert get(f"{base}/healthz").status_code == 200
        r = get(f"{base}/admin/users")
        assert r.status_code == 401 and reason(r) == "credential_missing"
        r = get(f"{base}/admin/users", headers=bearer(key))
        assert r.status_code == 200, r.text
        h = r.json()["headers"]
        assert h["x-edgegate-subject"] == "first-key" and h["x-edgegate-roles"] == "admin"
        r = get(f"{base}/healthz", headers={"x-edgegate-subject": "root"})
        assert r.status_code == 200 and "x-edgegate-subject" not in r.json()["headers"]
        # the listener run.sh renders carries the hardening: `_` in a header name is refused
        assert get(f"{base}/healthz", headers={"x_edgegate_subject": "root"}).status_code == 400
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def raw_status(env, path: str, extra: str = "") -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data.split(b"\r\n", 1)[0]


def test_config_envoy_renders_a_hardened_connection_manager_that_envoy_runs(
        edgegate_bin, config_file, minted, start_envoy, packaging, upstream, tmp_path):
    """`edgegate config envoy` (`--native` for the dynamic module) renders a connection manager
    that Envoy loads and that authenticates with the filter it names."""
    which = ["--native"] if packaging.kind == "native" else ["--wasm", str(packaging.path)]
    out = cli(edgegate_bin, "config", "envoy", "-c", str(config_file), *which).stdout
    hcm = yaml.safe_load(out)[0]
    assert hcm["name"] == "envoy.filters.network.http_connection_manager"
    (edgegate, router) = hcm["typed_config"]["http_filters"]
    assert router["name"] == "envoy.filters.http.router"
    if packaging.kind == "native":
        assert edgegate["name"] == "envoy.filters.http.dynamic_modules"
        assert edgegate["typed_config"]["dynamic_module_config"] == {"name": "edgegate"}
        embedded = edgegate["typed_config"]["filter_config"]["value"]
        assert "ENVOY_DYNAMIC_MODULES_SEARCH_PATH" in out
    else:
        assert edgegate["name"] == "envoy.filters.http.wasm"
        embedded = edgegate["typed_config"]["config"]["configuration"]["value"]
    assert json.loads(embedded) == json.loads(config_file.read_text())
    for k, v in envoyproc.HARDENING.items():
        assert hcm["typed_config"][k] == v, k
    for why in ("HTTP_X_EDGEGATE_ROLES", "%2F", "`..`", "`//`"):
        assert why in out, why
    listener = {
        "name": "edgegate",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [hcm]}],
    }
    cfg = envoyproc.bootstrap({"upstream": upstream.port}, listeners=[listener])
    v = envoyproc.validate(cfg, tmp_path / "validate")
    assert v.returncode == 0, v.stdout + v.stderr
    env = start_envoy(None, config=cfg)
    seen = len(upstream.httpd.seen)
    assert raw_status(env, "/api/x", "x_edgegate_roles: admin\r\n").startswith(b"HTTP/1.1 400")
    assert raw_status(env, "/api%2Fx").startswith(b"HTTP/1.1 400")
    assert len(upstream.httpd.seen) == seen
    r = get(env.url("//api//x"), headers=bearer(minted["key"]))
    assert r.status_code == 200 and r.json()["path"] == "/api/x", r.text
    # the rendered filter is the one deciding: no credential, refused before the upstream
    assert get(env.url("/api/x")).status_code == 401
    assert len(upstream.httpd.seen) == seen + 1


def test_config_istio_renders_the_hardening_envoyfilter(edgegate_bin, config_file, wasm_path):
    out = cli(edgegate_bin, "config", "istio", "-c", str(config_file), "--wasm", str(wasm_path)).stdout
    docs = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert {"EnvoyFilter", "WasmPlugin"} <= docs.keys()
    ef = docs["EnvoyFilter"]["spec"]
    assert ef["workloadSelector"]["labels"] == docs["WasmPlugin"]["spec"]["selector"]["matchLabels"]
    patch = ef["configPatches"][0]
    assert patch["applyTo"] == "NETWORK_FILTER" and patch["patch"]["operation"] == "MERGE"
    tc = dict(patch["patch"]["value"]["typed_config"])
    assert tc.pop("@type").endswith("HttpConnectionManager")
    assert tc == envoyproc.HARDENING


def test_config_istio_renders_the_login_pieces_of_the_manifest(edgegate_bin, wasm_path, tmp_path):
    """`edgegate config istio` on the manifest's own config with its clusters left out renders
    what envoy/istio/wasmplugin.yaml has by hand: both clusters set to the ServiceEntry's, the
    ServiceEntry and DestinationRule (same specs), the secret from the proxy's environment."""
    manifest = Path(__file__).resolve().parents[1] / "istio" / "wasmplugin.yaml"
    shipped = {d["kind"]: d for d in yaml.safe_load_all(manifest.read_text()) if d}
    conf = json.loads(json.dumps(shipped["WasmPlugin"]["spec"]["pluginConfig"]))
    del conf["login"]["cluster"]
    del conf["jwt"]["providers"][0]["remote_jwks"]["cluster"]
    f = tmp_path / "edgegate.json"
    f.write_text(json.dumps(conf))
    out = cli(edgegate_bin, "config", "istio", "-c", str(f), "--wasm", str(wasm_path), "--namespace", "desk").stdout
    docs = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert {"WasmPlugin", "EnvoyFilter", "ServiceEntry", "DestinationRule"} <= docs.keys()
    spec = docs["WasmPlugin"]["spec"]
    assert spec["pluginConfig"] == shipped["WasmPlugin"]["spec"]["pluginConfig"]
    assert spec["vmConfig"] == shipped["WasmPlugin"]["spec"]["vmConfig"]
    for kind in ("ServiceEntry", "DestinationRule"):
        assert docs[kind]["spec"] == shipped[kind]["spec"], kind
        assert docs[kind]["metadata"]["namespace"] == "desk"
