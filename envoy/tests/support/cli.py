"""The real `edgegate` CLI, built with cargo (CARGO_TARGET_DIR is honoured), and polling."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def build_edgegate() -> Path:
    """Builds the `edgegate` binary and returns its path (`EDGEGATE_CLI`: one already built, e.g.
    by a run that builds under a lock and tests outside it)."""
    if os.environ.get("EDGEGATE_CLI"):
        return Path(os.environ["EDGEGATE_CLI"])
    subprocess.run(["cargo", "build", "--quiet", "-p", "edgegate-cli"], cwd=REPO, check=True, timeout=1200)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    exe = target / "debug" / "edgegate"
    assert exe.is_file(), exe
    return exe


def cli(exe: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r


def eventually(fn, timeout=15.0, interval=0.2):
    """Calls fn until it returns a truthy value or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
