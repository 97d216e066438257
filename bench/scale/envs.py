"""N envs on one local cluster, each with its own worker process (N = 1, 4, 16, 64).

Each env (``rh.env(name=...)``, no requirements: the daemon's interpreter) gets one function, and
its first call starts the env's worker: that deploy + first call is the worker's start time. At
each checkpoint N: the median start time of the workers started since the last one, the sum of
the env workers' memory (RSS, and PSS: shared pages split among the processes mapping them) and
the daemon's. Starts go one after another: per-worker start time must not grow with N.

Each start is followed by one on a reference cluster that stays at one env (``reference.py``:
the env is deleted after its start). On this VM a worker's start drifts by 30% within the
series (the 11:29 run in bench/README "Latest results": 0.111 s at N = 1, 0.085 at 16, 0.110 at 64), so the growth
judged is that of ``start_vs_ref``, the ratio of the two medians at each checkpoint.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.scale import procs
from bench.scale.reference import Reference


def run(cluster: Any, ns: list[int], max_seconds: float, log, ref: Reference) -> dict[str, Any]:
    import tether as rh
    from bench.bench_code import noop

    definition = rh.function(noop)
    definition.to(cluster, name="env-warm")()  # the default env's worker and the code: not counted
    pid = cluster.status()["pid"]
    points, made = [], 0
    deadline = time.monotonic() + max_seconds
    for n in sorted(ns):
        starts: list[float] = []
        ref_starts: list[float] = []
        while made < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{made} envs started in {max_seconds:g} s, {max(ns)} asked for")
            t0 = time.perf_counter()
            definition.to(cluster, env=rh.env(name=f"env-{made}"), name=f"noop-env-{made}")()
            starts.append(time.perf_counter() - t0)
            ref_starts.append(ref.start_worker())
            made += 1
        time.sleep(0.5)  # the newest worker's imports settle before its memory is read
        envs = cluster.status()["envs"]
        pids = [e["worker"]["pid"] for name, e in envs.items()
                if name.startswith("env-") and e.get("worker") and e["worker"].get("alive")]
        if len(pids) < n:
            raise RuntimeError(f"{len(pids)} env workers alive, {n} started")
        workers = procs.tree(pids)
        log(f"scale: {n} env(s), {workers['pss_mib']:.0f} MiB PSS in their workers")
        start, ref_start = statistics.median(starts), statistics.median(ref_starts)
        points.append({"n": n, "start_s_median": start, "start_s_max": max(starts),
                       "ref_start_s_median": ref_start, "start_vs_ref": start / ref_start,
                       "workers_rss_mib": workers["rss_mib"], "workers_pss_mib": workers["pss_mib"],
                       "daemon_rss_mib": procs.rss_mib(pid), "daemon_pss_mib": procs.pss_mib(pid)})
    return {"points": points}
