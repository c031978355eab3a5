"""Config handling in a real Envoy: a bad config is refused with every error logged (field path
and message); pushed over file-based LDS it is rejected and the previous config keeps serving."""

from __future__ import annotations

import json
import time

import pytest

from support import envoyproc
from support.config import Secrets, full_config, idp_cluster
from support.http import bearer, get
from support.idp import IdPServer

BAD = {
    "jwt": {"providers": [{"name": "x", "issuer": "https://x.test", "algorithms": ["HS256"],
                           "shared_secrets": [{"secret": "too-short"}]}]},
    "rules": [{"name": "r", "match": {"path": {"prefix": "/"}}, "surprise": 1}],
}


def test_bad_config_at_startup_refuses_to_start_and_logs_every_error(start_envoy):
    with pytest.raises(RuntimeError) as e:
        start_envoy(BAD)
    log = str(e.value)
    assert "config refused" in log
    # Each error names its field path.
    assert "rules[0]" in log or "shared_secrets[0]" in log, log


def test_not_json_is_refused(start_envoy):
    with pytest.raises(RuntimeError) as e:
        start_envoy("{this is not json")
    assert "config refused" in str(e.value)


def test_bad_config_over_lds_is_refused_and_the_old_one_keeps_serving(tmp_path, packaging, upstream):
    s = Secrets()
    lds = tmp_path / "lds" / "lds.json"
    lds.parent.mkdir()

    def push(plugin_config):
        doc = envoyproc.lds_document([envoyproc.listener(0, packaging, plugin_config)])
        envoyproc.write_atomically(lds, json.dumps(doc))

    def lds_stat(name):
        return env.stats("listener_manager.lds").get(f"listener_manager.lds.{name}", 0)

    push(full_config(s))
    env = envoyproc.Envoy(tmp_path / "envoy", envoyproc.bootstrap({"upstream": upstream.port}, lds_path=str(lds)))
    try:
        env.start()
        assert get(env.url("/x"), headers=bearer(s.api_key)).status_code == 200

        push(BAD)
        deadline = time.monotonic() + 10
        while lds_stat("update_rejected") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lds_stat("update_rejected") == 1, env.log_tail()
        env.wait_log(r"config refused: .*(rules\[0\]|shared_secrets\[0\])")
        # The old config still serves, on both workers.
        for _ in range(6):
            assert get(env.url("/x"), headers=bearer(s.api_key)).status_code == 200
            assert get(env.url("/x")).status_code == 401

        # A good new config takes over: a new API key works, the old one is gone.
        s2 = Secrets()
        push(full_config(s2))
        deadline = time.monotonic() + 10
        while lds_stat("update_success") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lds_stat("update_success") == 2, env.log_tail()
        env.port = env.listener_port("edgegate")
        ok = lambda: all(get(env.url("/x"), headers=bearer(s2.api_key)).status_code == 200 for _ in range(4))
        deadline = time.monotonic() + 10
        while not ok() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ok()
        assert get(env.url("/x"), headers=bearer(s.api_key)).status_code == 401
    finally:
        env.stop()


def test_lds_update_that_moves_a_provider_to_another_idp(tmp_path, packaging, upstream, idp):
    """Same provider name, new JWKS URL: the new config verifies with the new IdP's keys only
    (keys are shared between wasm VMs per source, never across sources; the native module keeps
    them per config)."""
    other = IdPServer().start()
    try:
        s = Secrets()
        lds = tmp_path / "lds" / "lds.json"
        lds.parent.mkdir()

        def push(idp_url):
            doc = envoyproc.lds_document([envoyproc.listener(0, packaging, full_config(s, idp_url))])
            envoyproc.write_atomically(lds, json.dumps(doc))

        clusters = {"upstream": upstream.port, idp_cluster(idp.url): idp.port, idp_cluster(other.url): other.port}
        push(idp.url)
        env = envoyproc.Envoy(tmp_path / "envoy", envoyproc.bootstrap(clusters, lds_path=str(lds)))
        env.start()
        try:
            a, b = idp.idp.mint(), other.idp.mint(iss=idp.url)  # b: right issuer, foreign key
            assert get(env.url("/x"), headers=bearer(a)).status_code == 200
            assert get(env.url("/x"), headers=bearer(b)).status_code == 401

            # The provider "idp" now points at the other IdP (issuer included).
            doc = full_config(s, other.url)
            envoyproc.write_atomically(
                lds, json.dumps(envoyproc.lds_document([envoyproc.listener(0, packaging, doc)]))
            )
            b2 = other.idp.mint()

            def switched():
                return all(get(env.url("/x"), headers=bearer(b2)).status_code == 200 for _ in range(4))

            deadline = time.monotonic() + 15
            while not switched() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert switched(), env.log_tail()
            a2 = idp.idp.mint(iss=other.url)  # the old IdP's key under the new issuer: refused
            assert get(env.url("/x"), headers=bearer(a2)).status_code == 401
        finally:
            env.stop()
    finally:
        other.stop()


def test_dev_mode_is_loud(start_envoy, packaging):
    env = start_envoy({"dev_mode": {"enabled": True, "identity": {"subject": "dev-alice", "roles": ["admin"]}}})
    env.wait_log(rf"\[warning\]\[{packaging.log_component}\].*DEV MODE IS ON")
    r = get(env.url("/anything"), headers={"x-edgegate-dev-mode": "false", "x-edgegate-subject": "mallory"})
    assert r.status_code == 200
    h = r.json()["headers"]
    assert h["x-edgegate-subject"] == "dev-alice"
    assert h["x-edgegate-dev-mode"] == "true"
    assert h["x-edgegate-credential"] == "dev"
    # Addressed to a real hostname, dev mode authenticates nobody.
    r = get(env.url("/anything"), headers={"host": "desk.example.com"})
    assert r.status_code == 403 and r.json()["reason"] == "dev_mode_not_local", r.text
