"""Instant API-key revocation through a remote key list (`api_keys.remote`, issue 13), in a real
Envoy with each packaging: a local HTTP server serves the list the real CLI writes
(`edgegate keys new --list`); `edgegate keys revoke` rewrites it and the key is refused within
the refresh interval while the other key still works; with the server down the last list is
used until `max_stale_seconds`, then key requests get 503 `api_keys_unavailable`; the server
back, keys work again. Short intervals keep it to seconds; every wait polls with a deadline."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support.cli import build_edgegate, cli, eventually
from support.config import Secrets, full_config
from support.http import bearer, get

REMOTE = {
    "cluster": "keys_cluster",
    "refresh_interval_seconds": 1,
    "refresh_min_seconds": 1,
    "refresh_max_seconds": 1,
    "max_stale_seconds": 4,
    "retry_initial_seconds": 1,
    "retry_max_seconds": 1,
    "fetch_timeout_ms": 1000,
}


@pytest.fixture(scope="module")
def edgegate_bin() -> Path:
    return build_edgegate()


class ListServer:
    """Serves one file at /keys.json with a strong ETag; answers 304 to a matching
    If-None-Match. Stoppable and restartable on the same port."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = _free_port()
        self.hits = {"200": 0, "304": 0}
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "ListServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path != "/keys.json":
                    self.send_error(404)
                    return
                body = owner.path.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("if-none-match") == etag:
                    owner.hits["304"] += 1
                    self.send_response(304)
                    self.send_header("etag", etag)
                    self.end_headers()
                    return
                owner.hits["200"] += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("etag", etag)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/keys.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer(env, key: str, path: str = "/x") -> tuple[int, str]:
    """(status, reason or the subject the upstream received)."""
    r = get(env.url(path), headers=bearer(key))
    if r.status_code == 200:
        return 200, r.json()["headers"].get("x-edgegate-subject", "")
    return r.status_code, r.json().get("reason", "")


@pytest.fixture
def listed(tmp_path, edgegate_bin):
    """A key list written by the CLI with two keys, served over HTTP."""
    path = tmp_path / "keys.json"
    keys = {}
    for name in ("leaky", "steady"):
        out = cli(edgegate_bin, "keys", "new", "--name", name, "--roles", "staff", "--list", str(path))
        keys[name] = out.stdout.strip().splitlines()[0]
    assert [k["name"] for k in json.loads(path.read_text())["keys"]] == ["leaky", "steady"]
    server = ListServer(path).start()
    yield {"path": path, "keys": keys, "server": server}
    server.stop()


def start(start_envoy, listed, secrets, **remote):
    cfg = full_config(secrets)
    cfg["api_keys"]["remote"] = {"url": listed["server"].url, **REMOTE, **remote}
    return start_envoy(cfg, clusters={"keys_cluster": listed["server"].port})


def test_revoked_key_is_refused_within_the_interval_and_an_outage_fails_closed(
    start_envoy, listed, edgegate_bin
):
    s = Secrets()
    env = start(start_envoy, listed, s)
    leaky, steady = listed["keys"]["leaky"], listed["keys"]["steady"]
    server = listed["server"]
    # The first list arrives (fetched at start); both listed keys, and the inline one, work.
    assert eventually(lambda: answer(env, leaky) == (200, "leaky")), env.log_tail()
    assert answer(env, steady) == (200, "steady")
    assert answer(env, s.api_key) == (200, "ci")
    env.wait_log(r"api_keys.remote: fetched a list of 2 key")
    # Refreshes are conditional: the unchanged list comes back as 304.
    assert eventually(lambda: server.hits["304"] >= 1), (server.hits, env.log_tail())
    # A 304 renews the list's freshness (in every worker): past max_stale_seconds (4 s) of
    # unchanged 304s, keys still work.
    time.sleep(5)
    assert all(answer(env, steady) == (200, "steady") for _ in range(6)), (server.hits, env.log_tail())
    assert server.hits["200"] >= 1 and server.hits["304"] >= 3, server.hits

    # Revoke with the CLI: the list file changes, the server serves it, no config push.
    revoked_at = time.monotonic()
    cli(edgegate_bin, "keys", "revoke", "leaky", "--list", str(listed["path"]))
    assert eventually(lambda: all(answer(env, leaky) == (401, "api_key_unknown") for _ in range(4)),
                      timeout=10), env.log_tail()
    # Within the interval (1 s) plus the fetch and the VMs' look at shared data: well under 5 s.
    assert time.monotonic() - revoked_at < 5
    assert answer(env, steady) == (200, "steady")

    # Outage: the last list is used for max_stale_seconds (4 s), then keys not inline are 503.
    server.stop()
    down_at = time.monotonic()
    assert answer(env, steady) == (200, "steady")
    assert eventually(lambda: answer(env, steady) == (503, "api_keys_unavailable"), timeout=15), env.log_tail()
    assert time.monotonic() - down_at >= 2, "the last good list must outlive a short outage"
    env.wait_log(r"api_keys.remote: fetch failed")
    # Fail closed for key requests only: the inline key, JWTs and the revoked key's refusal
    # (a malformed key is still 401) are unaffected.
    assert answer(env, s.api_key) == (200, "ci")
    assert get(env.url("/x"), headers=bearer(s.local_jwt())).status_code == 200
    assert answer(env, "egk_short")[0] == 401

    # Back: the list is fetched again, keys work again, the revoked one stays refused. Each
    # worker's VM takes the list up on its own tick, so a request on the other worker may still
    # be 503 for a moment: never 200.
    server.start()
    assert eventually(lambda: answer(env, steady) == (200, "steady"), timeout=15), env.log_tail()
    seen = []

    def leaky_refused():
        seen.append(answer(env, leaky))
        return seen[-1] == (401, "api_key_unknown")

    assert eventually(lambda: all(leaky_refused() for _ in range(4)), timeout=10), (seen, env.log_tail())
    assert all(r in ((401, "api_key_unknown"), (503, "api_keys_unavailable")) for r in seen), seen


def test_no_list_yet_is_503_for_keys_and_a_bad_list_keeps_the_last_good_one(
    start_envoy, listed, edgegate_bin
):
    s = Secrets()
    path: Path = listed["path"]
    good = path.read_bytes()
    path.write_text("<html>not a list</html>")
    env = start(start_envoy, listed, s)
    steady = listed["keys"]["steady"]
    # No good list ever arrived: 503 for a listed key, never 401 (it may be listed) nor 200.
    env.wait_log(r"api_keys.remote: fetch failed: .*not \{\\?\"keys\\?\"")
    assert answer(env, steady) == (503, "api_keys_unavailable")
    assert answer(env, s.api_key) == (200, "ci")
    # A good list: keys work.
    path.write_bytes(good)
    assert eventually(lambda: answer(env, steady) == (200, "steady")), env.log_tail()
    # A list that repeats an inline key's name is refused whole; the last good one stays.
    bad = json.loads(good)
    bad["keys"].append({"name": "ci", "hash": "sha256:" + "ab" * 32})
    path.write_text(json.dumps(bad))
    env.wait_log(r"keys\[2\].name: the name \\?\"ci\\?\" appears twice")
    assert answer(env, steady) == (200, "steady")
