"""N named objects deployed on one local cluster (N = 1, 10, 100, 1,000, 10,000), one by one.

The objects are functions (``bench_code.noop`` under N names) in the default env: one daemon
record, one manifest entry and one worker entry each. Deploys go one after another, as a script
would; at each checkpoint N: the median deploy time of the deploys since the last checkpoint,
the CPU time per deploy of the daemon, the worker and this client (robust to a busy machine),
the daemon's and the worker's memory, the p50 of calls to the first object (and the daemon's +
worker's CPU per call) and to the newest, and the time of ``keys()`` (a listing of all N: linear
by nature; median of 3). One object deployed and called before, not counted, starts the worker.

The p50s are taken in ``ROUNDS`` alternating rounds (first, newest, reference, first, ...) and
the median round is kept: a single run of 500 calls is ~0.2 s, and a burst of other work on a
shared machine in that window moved one checkpoint by 40% in one run while the next checkpoint was
back at the N = 1 figure (measured alone, 1 vs 10,000 objects: 0.344 vs 0.342 ms). The reference is
a cluster of its own with one object (``reference.py``), called in the same rounds: the first
object's p50 and CPU per call are also given against it (``*_vs_ref``), and those are judged, as
the machine drifts between N = 1 and N = 10,000 by more than the bound.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import measure
from bench.scale import procs
from bench.scale.reference import Reference

ROUNDS = 3


def _memory(daemon_pid: int) -> dict[str, Any]:
    workers = procs.descendants(daemon_pid)
    return {"daemon_rss_mib": procs.rss_mib(daemon_pid), "daemon_pss_mib": procs.pss_mib(daemon_pid),
            **{f"workers_{k}": v for k, v in procs.tree(workers).items()}}


def _cpu(daemon_pid: int, workers: list[int]) -> dict[str, float]:
    return {"daemon": procs.cpu_s(daemon_pid) or 0.0, "workers": sum(procs.cpu_s(p) or 0.0 for p in workers),
            "client": time.process_time()}


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose p50 is the median of the rounds' (its p99 with it)."""
    return sorted(rounds, key=lambda r: r["p50_ms"])[len(rounds) // 2]


def run(cluster: Any, ns: list[int], latency_calls: int, max_seconds: float, log, ref: Reference) -> dict[str, Any]:
    import tether as rh
    from bench.bench_code import noop

    definition = rh.function(noop)
    definition.to(cluster, name="obj-warm")()  # the worker is up and the code imported: not counted
    pid = cluster.status()["pid"]
    base = _memory(pid)
    points, made, first = [], 0, None
    deadline = time.monotonic() + max_seconds
    ns_ns = time.perf_counter_ns
    for n in sorted(ns):
        times: list[int] = []
        workers = procs.descendants(pid)
        cpu0 = _cpu(pid, workers)
        while made < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{made} objects deployed in {max_seconds:g} s, {max(ns)} asked for")
            t0 = ns_ns()
            newest = definition.to(cluster, name=f"obj-{made}")
            times.append(ns_ns() - t0)
            first = first or newest
            made += 1
        cpu1 = _cpu(pid, workers)
        log(f"scale: {n} object(s) deployed; calls and memory")
        firsts, newests, cpu_us, refs = [], [], [], []
        for _ in range(ROUNDS):
            before = _cpu(pid, workers)
            got = measure.latency(first, 50, latency_calls, 20)
            after = _cpu(pid, workers)
            cpu_us.append(sum(after[k] - before[k] for k in ("daemon", "workers")) / (got["calls"] + 50) * 1e6)
            firsts.append(got)
            newests.append(measure.latency(newest, 50, latency_calls, 20))
            refs.append(ref.latency(latency_calls))
        lat_first = _median_round(firsts)
        lat_new = _median_round(newests)
        lat_ref = _median_round(refs)
        call_cpu_us = statistics.median(cpu_us)
        ref_cpu_us = statistics.median(r["cpu_us"] for r in refs)
        keys_runs = []
        for _ in range(3):  # one listing is one sample: the median of three
            t0 = ns_ns()
            keys = cluster.keys()
            keys_runs.append((ns_ns() - t0) / 1e6)
        keys_ms = statistics.median(keys_runs)
        if len(keys) < n:
            raise RuntimeError(f"keys() lists {len(keys)} objects, {n} were deployed")
        point = {"n": n, "deploys": len(times),
                 "deploy_ms_median": statistics.median(times) / 1e6 if times else None,
                 "deploy_ms_mean": statistics.fmean(times) / 1e6 if times else None,
                 "call_p50_ms_first": lat_first["p50_ms"], "call_p50_ms_newest": lat_new["p50_ms"],
                 "call_p99_ms_first": lat_first["p99_ms"], "call_cpu_us_first": call_cpu_us,
                 "ref_call_p50_ms": lat_ref["p50_ms"], "ref_call_cpu_us": ref_cpu_us,
                 "call_p50_vs_ref": lat_first["p50_ms"] / lat_ref["p50_ms"],
                 "call_cpu_vs_ref": call_cpu_us / ref_cpu_us if ref_cpu_us > 0 else None,
                 "keys_ms": keys_ms, **_memory(pid),
                 **{f"{k}_cpu_ms_per_deploy": (cpu1[k] - cpu0[k]) / len(times) * 1e3 if times else None
                    for k in cpu0}}
        points.append(point)
    return {"points": points, "base": base}
