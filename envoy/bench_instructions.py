"""Instructions per request, counted by valgrind's callgrind: the same configurations as
envoy/bench.py (its `targets()`), each Envoy run under callgrind, and a count that does not move
with the machine's load.

Why: on this 2-core VM the CPU time per request (bench.py) moves by up to 8% from run to run,
the size of the differences issue 14's targets are about. Instructions retired are not time
(cache misses and branch mispredictions cost cycles that no count shows), but they are
deterministic: two runs of the same config agree to within 0.2%, so a change of 1% in what a filter
asks of Envoy shows. The count covers the whole Envoy process (every thread, user space), so it
includes what Envoy does on the filter's behalf: the header map calls, its allocator, the stats.

Method: every Envoy has one worker (`--concurrency 1`), starts with instrumentation off, gets a
warm-up of uninstrumented requests (caches filled, connection pools open; for fresh tokens more
than the caches hold), then callgrind counts exactly N requests sent one after another on one
keep-alive connection; the count is zeroed before and dumped after. The client sends `Host` and
`Authorization` and nothing else. The upstream Envoy (a `direct_response`) runs natively, outside
the count.

For the native module the dump also splits the count by object: the module's own instructions
(`libedgegate.so`) and those of the calls it makes into Envoy (callbacks, the allocator), so
"what the module costs, Envoy's side included" is a number, not an estimate.

  envoy/bench.sh --instructions [--requests 2000] [--workloads repeated,fresh] [--configs ...]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "tests"))

import bench  # noqa: E402
from support import envoyproc  # noqa: E402

DEFAULT_CONFIGS = "none,jwt_authn,jwt_authn+cache,native-floor1,native-subject,native-subject-nocache,edgegate-native"
# The object names the split reports (a path containing the key).
MODULES = ("libedgegate.so", "libedgegate_noop.so", "libedgegate_base.so")


def send(port: int, tokens: list[str], start: int, n: int, session: bool) -> int:
    """Sends n requests on one keep-alive connection, tokens[start], tokens[start+1], ... (wrapping);
    returns how many were not 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    bad = 0
    for i in range(n):
        token = tokens[(start + i) % len(tokens)] if tokens else None
        conn.putrequest("GET", "/bench", skip_accept_encoding=True)
        if token is not None:
            if session:
                conn.putheader("Cookie", f"edgegate_session={token}")
            else:
                conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            bad += 1
    conn.close()
    return bad


def callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.STDOUT)


def parse_dump(path: Path) -> tuple[int, dict[str, int], dict[str, int]]:
    """Total Ir, self Ir per object, and Ir of calls from each object into other objects."""
    names: dict[str, str] = {}

    def name(kind: str, value: str) -> str:
        # Compressed names: "(id) name" defines, "(id)" refers.
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        key = f"{kind}{m.group(1)}"
        if m.group(2) is not None:
            names[key] = m.group(2)
        return names.get(key, value)

    total = 0
    self_cost: dict[str, int] = defaultdict(int)
    out_calls: dict[str, int] = defaultdict(int)
    ob = cob = ""
    after_calls = False
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            total = int(line.split()[1])
        elif line.startswith("ob="):
            ob = name("ob", line[3:])
            cob = ob
        elif line.startswith("cob="):
            cob = name("ob", line[4:])
        elif line.startswith("calls="):
            after_calls = True
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            parts = line.split()
            cost = int(parts[1]) if len(parts) > 1 else 0
            if after_calls:
                if cob != ob:
                    out_calls[ob] += cost
                after_calls = False
                cob = ob
            else:
                self_cost[ob] += cost
        elif line.startswith("fn="):
            cob = ob
    return total, self_cost, out_calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_module_args(ap)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated bench.py config names")
    ap.add_argument("--workloads", default="repeated,fresh")
    ap.add_argument("--requests", type=int, default=2000, help="requests counted per config and workload")
    ap.add_argument("--warmup", type=int, default=200, help="uncounted requests first (fresh: + the cache size)")
    ap.add_argument("--workdir", default="")
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("bench_instructions: needs valgrind (apt-get install valgrind)")

    started = datetime.now(timezone.utc)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="edgegate-instr-"))
    work.mkdir(parents=True, exist_ok=True)
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
    workloads = [w for w in ("repeated", "fresh") if w in args.workloads.split(",")]

    key, jwks = bench.make_key()
    fresh_n = args.warmup + bench.CACHE_SIZE + args.requests + 1
    fresh = bench.mint(key, fresh_n, 3600)
    repeated = fresh[:1]
    sessions = bench.mint_sessions(fresh_n, 3600)

    tlist = bench.check_and_stage(args, wanted, jwks, work)

    real_envoy = envoyproc.envoy_binary()
    wrapper = work / "envoy-under-callgrind"
    dumps = work / "callgrind"
    dumps.mkdir(exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec valgrind --tool=callgrind --instr-atstart=no --dump-line=no --compress-pos=no "
        f"--callgrind-out-file={dumps}/%p.out {real_envoy} \"$@\"\n")
    wrapper.chmod(0o755)

    results: dict[tuple[str, str], tuple[int, dict[str, int], dict[str, int]]] = {}
    upstream = None
    try:
        os.environ["EDGEGATE_ENVOY"] = real_envoy
        upstream_cfg = envoyproc.bootstrap(
            {}, listeners=[envoyproc.hcm_listener("upstream", 0, [], {"direct_response": {"status": 200, "body": {"inline_string": "ok"}}})])
        upstream = envoyproc.Envoy(work / "upstream", upstream_cfg, concurrency=1).start(listener_name="upstream")
        for t in tlist:
            cfg = envoyproc.bootstrap(
                {"upstream": upstream.port},
                listeners=[envoyproc.hcm_listener("bench", 0, t.filters, {"route": {"cluster": "upstream", "timeout": "600s"}})])
            os.environ["EDGEGATE_ENVOY"] = str(wrapper)
            t.envoy = envoyproc.Envoy(work / t.key, cfg, concurrency=1).start(timeout=180, listener_name="bench")
            os.environ["EDGEGATE_ENVOY"] = real_envoy
            pid = t.envoy.proc.pid
            try:
                tokens = {"repeated": sessions[:1] if t.session else repeated, "fresh": sessions if t.session else fresh}
                if t.auth and send(t.envoy.port, [], 0, 1, False) != 1:
                    raise RuntimeError(f"{t.key}: a request without a credential was let through")
                for w in workloads:
                    toks = tokens[w]
                    warm = args.warmup + (bench.CACHE_SIZE if w == "fresh" else 0)
                    if send(t.envoy.port, toks, 0, warm, t.session):
                        raise RuntimeError(f"{t.key}/{w}: warm-up requests refused")
                    before = set(dumps.iterdir())
                    callgrind_control(pid, "-z")
                    callgrind_control(pid, "-i", "on")
                    bad = send(t.envoy.port, toks, warm, args.requests, t.session)
                    callgrind_control(pid, "-i", "off")
                    callgrind_control(pid, "-d")
                    if bad:
                        raise RuntimeError(f"{t.key}/{w}: {bad} of {args.requests} requests refused")
                    deadline = time.monotonic() + 60
                    new: list[Path] = []
                    while time.monotonic() < deadline:
                        new = [p for p in set(dumps.iterdir()) - before if p.name.startswith(f"{pid}.out")]
                        if new and all(p.stat().st_size > 0 for p in new):
                            break
                        time.sleep(0.5)
                    if not new:
                        raise RuntimeError(f"{t.key}/{w}: no callgrind dump")
                    time.sleep(1.0)
                    total = 0
                    selfc: dict[str, int] = defaultdict(int)
                    outc: dict[str, int] = defaultdict(int)
                    for p in new:
                        tt, s, o = parse_dump(p)
                        total += tt
                        for k, v in s.items():
                            selfc[k] += v
                        for k, v in o.items():
                            outc[k] += v
                    results[(t.key, w)] = (total, selfc, outc)
                    print(f"instr: {t.key}/{w}: {total / args.requests:,.0f} instructions per request", flush=True)
            finally:
                t.envoy.stop()
    finally:
        if upstream is not None:
            upstream.stop()

    report(args, tlist, workloads, results, started)
    return 0


def report(args, tlist, workloads, results, started) -> None:
    n = args.requests
    baseline = {"repeated": "jwt_authn+cache", "fresh": "jwt_authn"}
    print()
    print(f"date {started:%Y-%m-%d %H:%M} UTC; valgrind callgrind, Envoy --concurrency 1, {n} requests counted per "
          f"cell after a warm-up, one keep-alive connection")
    print()
    print("| config | workload | instructions per request | vs baseline (fewer: > 1x) | module's own | "
          "module's calls into Envoy |")
    print("|---|---|---:|---:|---:|---:|")
    for w in workloads:
        base = results.get((baseline[w], w))
        for t in tlist:
            r = results.get((t.key, w))
            if r is None:
                continue
            total, selfc, outc = r
            ratio = f"{base[0] / total:.3f}x" if base and total else ""
            own = calls = ""
            for obj, v in selfc.items():
                if obj.endswith(MODULES):
                    own = f"{v / n:,.0f}"
                    calls = f"{outc.get(obj, 0) / n:,.0f}"
            wl = "repeated token" if w == "repeated" else "fresh tokens"
            print(f"| {t.label} | {wl} | {total / n:,.0f} | {ratio} | {own} | {calls} |")
    print()
    print(f"vs baseline: {baseline['repeated']} on the repeated token, {baseline['fresh']} on fresh tokens; its "
          "instructions per request over this config's.")


if __name__ == "__main__":
    sys.exit(main())
