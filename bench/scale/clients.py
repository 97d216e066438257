"""N concurrent client connections, each calling a no-op in a loop (N = 1, 10, 100, 1,000).

N tasks on one event loop, each awaiting ``fn.aio()`` (tether's async client: a keep-alive
connection per call in flight, so N tasks hold N connections to the daemon). All N connect and
warm up first, then all call for the window's seconds. Per N: p50/p99 of every call in the
window, calls/s, and the daemon's memory and open descriptors sampled in the middle of the
window (its connections are open then), and the CPU time per call of the daemon, the worker and
this client (what a call costs each, whatever else loads the machine). With N callers and a fixed throughput, a call waits
behind the N - 1 others, so p50 grows with N by itself (Little's law): linear is the floor;
worse than linear would be a per-connection cost that grows with the connections.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from bench import measure
from bench.scale import procs


def _window(fn: Any, n: int, seconds: float, daemon_pid: int) -> dict[str, Any]:
    workers = procs.descendants(daemon_pid)
    samples: list[int] = []
    errors: list[str] = []
    sampled: dict[str, Any] = {}

    def sample_daemon() -> None:
        sampled.update(rss_mib=procs.rss_mib(daemon_pid), pss_mib=procs.pss_mib(daemon_pid),
                       fds=procs.open_fds(daemon_pid))

    def cpu() -> dict[str, float]:
        return {"daemon": procs.cpu_s(daemon_pid) or 0.0, "workers": sum(procs.cpu_s(p) or 0.0 for p in workers),
                "client": time.process_time()}

    cpu0: dict[str, float] = {}
    cpu1: dict[str, float] = {}

    async def main() -> float:
        go = asyncio.Event()
        ready = [0]
        all_ready = asyncio.Event()
        deadline = [0.0]
        ns = time.perf_counter_ns

        async def client() -> None:
            try:
                await fn.aio()  # its connection opens now
            except Exception as exc:  # noqa: BLE001 - counted, the others go on
                errors.append(f"{type(exc).__name__}: {exc}")
            ready[0] += 1
            if ready[0] == n:
                all_ready.set()
            await go.wait()
            while time.monotonic() < deadline[0]:
                t0 = ns()
                try:
                    await fn.aio()
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                samples.append(ns() - t0)

        tasks = [asyncio.ensure_future(client()) for _ in range(n)]
        await asyncio.wait_for(all_ready.wait(), 60)
        cpu0.update(cpu())
        start = time.monotonic()
        deadline[0] = start + seconds
        loop = asyncio.get_running_loop()
        loop.call_later(seconds / 2, lambda: threading.Thread(target=sample_daemon).start())
        go.set()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
        cpu1.update(cpu())
        from tether.client import aio  # close this loop's idle connections: the next N starts clean

        for pool in aio._pools.get(loop, {}).values():  # noqa: SLF001
            pool.close()
        return elapsed

    elapsed = asyncio.run(main())
    samples.sort()
    ms = [s / 1e6 for s in samples]
    return {"n": n, "calls": len(ms), "calls_per_s": len(ms) / elapsed, "p50_ms": measure.percentile(ms, 50),
            "p99_ms": measure.percentile(ms, 99), "errors": len(errors), "first_error": errors[0] if errors else None,
            "daemon_rss_mib": sampled.get("rss_mib"), "daemon_pss_mib": sampled.get("pss_mib"),
            "daemon_fds": sampled.get("fds"),
            **{f"{k}_cpu_us_per_call": (cpu1[k] - cpu0[k]) / len(ms) * 1e6 if ms else None for k in cpu0}}


def run(cluster: Any, ns: list[int], seconds: float, log) -> dict[str, Any]:
    """Each N in turn on one cluster; returns the points and the daemon's idle memory."""
    import tether as rh
    from bench.bench_code import noop

    limit = procs.raise_open_files(max(ns) * 2 + 256)
    if limit < max(ns) + 64:
        raise RuntimeError(f"the open-files limit is {limit}: too low for {max(ns)} connections")
    fn = rh.function(noop).to(cluster, name="scale-noop")
    fn()
    pid = cluster.status()["pid"]
    idle = {"rss_mib": procs.rss_mib(pid), "fds": procs.open_fds(pid)}
    points = []
    for n in ns:
        log(f"scale: {n} concurrent client connection(s) for {seconds:g} s")
        got = _window(fn, n, seconds, pid)
        if got["errors"]:
            raise RuntimeError(f"{got['errors']} of the calls from {n} clients failed: {got['first_error']}")
        points.append(got)
    return {"points": points, "daemon_idle": idle, "open_files_limit": limit}
