"""N concurrent client connections, each calling a no-op in a loop (N = 1, 10, 100, 1,000).

N tasks on one event loop, each awaiting ``fn.aio()`` (tether's async client: a keep-alive
connection per call in flight, so N tasks hold N connections to the daemon). All N connect and
warm up first, then all call; the figures come from a steady-state window (``_window``). Per
N: p50/p99 of the calls that ended in the window, calls/s, the daemon's memory and open
descriptors sampled in the middle of the window (its connections are open then), and the CPU
time per call of the daemon, the worker and this client (what a call costs each, whatever else
loads the machine). The series runs three times (forward, backward, forward) and each figure is
the median of its N's three windows. With N callers and a fixed throughput, a call waits behind
the N - 1 others, so p50 grows with N by itself (Little's law): linear is the floor; worse than
linear would be a per-connection cost that grows with the connections.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench import measure
from bench.scale import procs

#: the series forward, backward, forward: each N's figures are the medians of its three windows.
#: One 3 s window per N moved the daemon's CPU per call at 1,000 clients by a third on this VM
#: (355 us in a full run, 296 alone minutes later), and the growth exponent with it (1.27 vs 1.07).
ROUNDS = 3


def _window(fn: Any, n: int, seconds: float, daemon_pid: int) -> dict[str, Any]:
    """N clients calling; the figures of the calls that *ended* inside a steady-state window.

    The window opens once the clients have been calling for as long as their warm-up took (one
    call each, all at once: about one latency at N), and lasts ``seconds``, or 3x that warm-up
    if longer, so that every client makes several calls in it. The start-up burst and the drain
    after it (every client finishing its last call) stay out of every figure, the CPU times too.
    """
    workers = procs.descendants(daemon_pid)
    ended: list[tuple[int, int]] = []  # (end, duration) of every call, ns
    errors: list[str] = []
    sampled: dict[str, Any] = {}

    def cpu() -> dict[str, float]:
        return {"daemon": procs.cpu_s(daemon_pid) or 0.0, "workers": sum(procs.cpu_s(p) or 0.0 for p in workers),
                "client": time.process_time()}

    def sample_daemon() -> None:
        sampled.update(rss_mib=procs.rss_mib(daemon_pid), pss_mib=procs.pss_mib(daemon_pid),
                       fds=procs.open_fds(daemon_pid))

    marks: dict[str, Any] = {}

    async def main() -> None:
        go, all_ready, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
        ready = [0]
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
            while not stop.is_set():
                t0 = ns()
                try:
                    await fn.aio()
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                t1 = ns()
                ended.append((t1, t1 - t0))

        t0 = time.perf_counter()
        tasks = [asyncio.ensure_future(client()) for _ in range(n)]
        await asyncio.wait_for(all_ready.wait(), 120)
        warmup = time.perf_counter() - t0
        window = max(seconds, 3 * warmup)
        go.set()
        await asyncio.sleep(warmup)
        marks.update(t0=time.perf_counter_ns(), cpu0=cpu(), window=window, warmup=warmup)
        await asyncio.sleep(window / 2)
        await asyncio.to_thread(sample_daemon)  # its connections are all open now
        await asyncio.sleep(max(0.0, window - (time.perf_counter_ns() - marks["t0"]) / 1e9))
        marks.update(t1=time.perf_counter_ns(), cpu1=cpu())
        stop.set()
        await asyncio.gather(*tasks)
        from tether.client import aio  # close this loop's idle connections: the next N starts clean

        for pool in aio._pools.get(asyncio.get_running_loop(), {}).values():  # noqa: SLF001
            pool.close()

    asyncio.run(main())
    inside = sorted(d / 1e6 for end, d in ended if marks["t0"] <= end <= marks["t1"])
    span = (marks["t1"] - marks["t0"]) / 1e9
    cpu0, cpu1 = marks["cpu0"], marks["cpu1"]
    return {"n": n, "calls": len(inside), "calls_per_s": len(inside) / span, "window_s": span,
            "warmup_s": marks["warmup"], "p50_ms": measure.percentile(inside, 50),
            "p99_ms": measure.percentile(inside, 99), "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "daemon_rss_mib": sampled.get("rss_mib"), "daemon_pss_mib": sampled.get("pss_mib"),
            "daemon_fds": sampled.get("fds"),
            **{f"{k}_cpu_us_per_call": (cpu1[k] - cpu0[k]) / len(inside) * 1e6 if inside else None for k in cpu0}}


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
    windows: dict[int, list[dict[str, Any]]] = {n: [] for n in ns}
    for r in range(ROUNDS):
        for n in ns if r % 2 == 0 else ns[::-1]:
            log(f"scale: {n} concurrent client connection(s) for {seconds:g} s (round {r + 1} of {ROUNDS})")
            got = _window(fn, n, seconds, pid)
            if got["errors"]:
                raise RuntimeError(f"{got['errors']} of the calls from {n} clients failed: {got['first_error']}")
            windows[n].append(got)
    return {"points": [_median_point(windows[n]) for n in ns], "daemon_idle": idle, "open_files_limit": limit,
            "rounds": ROUNDS}


def _median_point(got: list[dict[str, Any]]) -> dict[str, Any]:
    """One N's windows as one point: each figure the median of its windows (the rest: the first's)."""
    point = dict(got[0])
    for key, value in got[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "n":
            point[key] = statistics.median(w[key] for w in got)
    point["windows"] = len(got)
    return point
