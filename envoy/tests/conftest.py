"""Fixtures of the Envoy end-to-end suite.

- ``packaging``: the filter the suite runs against, ``wasm`` (the proxy-wasm filter) or
  ``native`` (the dynamic module): every test that starts an Envoy through ``start_envoy`` runs
  once per packaging (test ids end in ``[wasm]`` / ``[native]``). ``EDGEGATE_PACKAGINGS=wasm``
  (or ``native``) runs one. A test that needs a wasm-only feature says so with
  ``@pytest.mark.wasm_only(reason=...)``: its native run is skipped with that reason.
- ``upstream``: an echo server (method, path, headers as JSON) — Envoy's `upstream` cluster.
- ``idp``: a test identity provider (discovery + JWKS, rotation, outages) — the `idp` cluster.
- ``start_envoy(plugin_config, ...)``: a real Envoy with the edgegate filter of ``packaging``,
  stopped by PID at teardown. Module-scoped variant: ``start_envoy_module``.

All servers bind 127.0.0.1 on free ports. The wasm file comes from ``EDGEGATE_WASM``, the native
module from ``EDGEGATE_NATIVE_SO`` (both set by envoy/test.sh), or the default build paths.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import envoyproc
from support.idp import IdPServer
from support.upstream import EchoServer

REPO = Path(__file__).resolve().parents[2]


PACKAGINGS = [p for p in os.environ.get("EDGEGATE_PACKAGINGS", "wasm,native").split(",") if p]


def _target() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


def _default_wasm() -> Path:
    return _target() / "wasm32-unknown-unknown" / "release" / "edgegate_proxy_wasm.opt.wasm"


def _default_native() -> Path:
    return _target() / "envoy-native" / "libedgegate.so"


@pytest.fixture(scope="session")
def wasm_path() -> Path:
    p = Path(os.environ.get("EDGEGATE_WASM") or _default_wasm())
    if not p.is_file():
        pytest.fail(f"wasm filter not built at {p}: run envoy/test.sh (or set EDGEGATE_WASM)")
    return p


@pytest.fixture(scope="session")
def native_path() -> Path:
    p = Path(os.environ.get("EDGEGATE_NATIVE_SO") or _default_native())
    if not p.is_file():
        pytest.fail(f"native module not built at {p}: run envoy/test.sh (or set EDGEGATE_NATIVE_SO)")
    # Envoy loads lib<name>.so from this directory (envoyproc passes it to every Envoy).
    os.environ.setdefault("EDGEGATE_NATIVE_SO", str(p))
    return p


@pytest.fixture(scope="session", params=PACKAGINGS)
def packaging(request) -> envoyproc.Packaging:
    """The filter under test: one parametrization for the whole suite."""
    if request.param == "native":
        return envoyproc.Packaging("native", request.getfixturevalue("native_path"))
    return envoyproc.Packaging("wasm", request.getfixturevalue("wasm_path"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "wasm_only(reason): the test needs a feature of the proxy-wasm packaging; skipped natively")


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("wasm_only")
        params = getattr(item, "callspec", None)
        if marker and params and params.params.get("packaging") == "native":
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "wasm only")
            item.add_marker(pytest.mark.skip(reason=f"wasm only: {reason}"))


@pytest.fixture(scope="session")
def upstream():
    srv = EchoServer().start()
    yield srv
    srv.stop()


def _idp():
    srv = IdPServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def idp_module():
    """An IdP shared by a module's tests (don't change its keys or mode in them)."""
    yield from _idp()


@pytest.fixture
def idp():
    """A fresh IdP for one test: rotate keys and break it freely."""
    yield from _idp()


class EnvoyFactory:
    def __init__(self, tmp_dir: Path, packaging: envoyproc.Packaging, upstream: EchoServer) -> None:
        self.tmp_dir = tmp_dir
        self.filter = packaging
        self.upstream = upstream
        self.started: list[envoyproc.Envoy] = []

    def config(self, plugin_config, clusters: dict[str, int] | None = None, port: int = 0) -> dict:
        all_clusters = {"upstream": self.upstream.port, **(clusters or {})}
        return envoyproc.bootstrap(
            all_clusters, listeners=[envoyproc.listener(port, self.filter, plugin_config)]
        )

    def __call__(self, plugin_config, clusters: dict[str, int] | None = None, config: dict | None = None,
                 listener_name: str | None = "edgegate") -> envoyproc.Envoy:
        cfg = config if config is not None else self.config(plugin_config, clusters)
        env = envoyproc.Envoy(self.tmp_dir / f"envoy{len(self.started)}", cfg)
        env.packaging = self.filter
        self.started.append(env)
        return env.start(listener_name=listener_name)

    def stop_all(self, show_logs: bool) -> None:
        for env in self.started:
            if show_logs:
                print(f"---- Envoy log ({env.workdir}) ----\n{env.log_tail(80)}")
            env.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.failed:
        item.stash.setdefault(_FAILED, True)
    return rep


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def start_envoy(request, tmp_path, packaging, upstream):
    """start_envoy(plugin_config, clusters={name: port}) -> a running Envoy with the filter of
    `packaging` (stopped after the test)."""
    f = EnvoyFactory(tmp_path, packaging, upstream)
    yield f
    f.stop_all(show_logs=request.node.stash.get(_FAILED, False))


@pytest.fixture(scope="module")
def start_envoy_module(request, tmp_path_factory, packaging, upstream):
    """Like start_envoy, for a module's shared Envoy (stopped after the module)."""
    f = EnvoyFactory(tmp_path_factory.mktemp("envoy"), packaging, upstream)
    yield f
    failed = any(item.stash.get(_FAILED, False) for item in request.session.items if item.module is request.module)
    f.stop_all(show_logs=failed)
