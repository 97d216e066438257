"""The timing harness every peer is measured with: the same loops, bounded in count and seconds.

Peers hand in callables; nothing here knows which system is behind them.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

clock = time.perf_counter


def percentile(sorted_samples: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_samples:
        return math.nan
    return sorted_samples[max(0, math.ceil(p / 100 * len(sorted_samples)) - 1)]


def latency(call: Callable[[], object], warmup: int, calls: int, max_seconds: float) -> dict[str, Any]:
    """p50/p99/mean in milliseconds of sequential calls, after ``warmup`` calls."""
    end = clock() + max_seconds
    for _ in range(warmup):
        call()
        if clock() > end:
            break
    samples: list[int] = []
    ns = time.perf_counter_ns
    end = clock() + max_seconds
    for _ in range(calls):
        t0 = ns()
        call()
        samples.append(ns() - t0)
        if clock() > end:
            break
    samples.sort()
    ms = [s / 1e6 for s in samples]
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "mean_ms": statistics.fmean(ms),
            "min_ms": ms[0], "calls": len(ms), "cut_short": len(ms) < calls}


def threads(make_call: Callable[[], Callable[[], object]], n: int, seconds: float, warmup: int,
            max_calls: int) -> dict[str, Any]:
    """Calls/s from ``n`` threads calling in a loop for ``seconds`` (or ``max_calls`` in all).

    ``make_call`` runs once in each thread (so a thread can own its connection); each thread
    warms up, then all start together.
    """
    counts = [0] * n
    errors: list[BaseException] = []
    ready = threading.Barrier(n + 1)
    go = threading.Event()
    deadline = [0.0]
    per_thread = max(1, max_calls // n)

    def worker(i: int) -> None:
        try:
            call = make_call()
            for _ in range(max(1, warmup // n)):
                call()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            ready.wait()
            return
        ready.wait()
        go.wait()
        done, end = 0, deadline[0]
        try:
            while done < per_thread and clock() < end:
                call()
                done += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        counts[i] = done

    pool = [threading.Thread(target=worker, args=(i,), daemon=True, name=f"bench-{i}") for i in range(n)]
    for t in pool:
        t.start()
    try:
        ready.wait(timeout=seconds + 120)
    except threading.BrokenBarrierError:
        raise RuntimeError("the client threads did not get ready in time") from None
    start = clock()
    deadline[0] = start + seconds
    go.set()
    for t in pool:
        t.join(max(0.0, start + seconds + 60 - clock()))
    elapsed = clock() - start
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} threads failed; first: {errors[0]!r}") from errors[0]
    if any(t.is_alive() for t in pool):
        raise RuntimeError("a call did not return within 60 s after the end of the run")
    total = sum(counts)
    return {"calls_per_s": total / elapsed, "calls": total, "seconds": elapsed, "concurrency": n}


def in_flight(open_client: Callable[[], AbstractAsyncContextManager[Callable[[], Awaitable[object]]]],
              n: int, seconds: float, warmup: int, max_calls: int) -> dict[str, Any]:
    """Calls/s with ``n`` calls in flight from one asyncio event loop.

    ``open_client()`` is an async context manager giving an async no-op call; ``n`` tasks each
    await it in a loop until the time or the count runs out.
    """

    async def run() -> dict[str, Any]:
        async with open_client() as call:
            await asyncio.gather(*(call() for _ in range(min(n, max(1, warmup)))))
            for _ in range(max(1, warmup // n)):
                await asyncio.gather(*(call() for _ in range(n)))
            counts = [0] * n
            per_task = max(1, max_calls // n)
            start = clock()
            end = start + seconds

            async def loop(i: int) -> None:
                done = 0
                while done < per_task and clock() < end:
                    await call()
                    done += 1
                counts[i] = done

            await asyncio.wait_for(asyncio.gather(*(loop(i) for i in range(n))), seconds + 60)
            elapsed = clock() - start
            total = sum(counts)
            return {"calls_per_s": total / elapsed, "calls": total, "seconds": elapsed, "concurrency": n}

    return asyncio.run(run())


def repeat(action: Callable[[], object], reps: int, max_seconds: float, warmup: int = 0) -> dict[str, Any]:
    """Median/min/max seconds of ``reps`` runs of ``action`` (fewer if ``max_seconds`` run out)."""
    for _ in range(warmup):
        action()
    samples: list[float] = []
    end = clock() + max_seconds
    for _ in range(reps):
        t0 = clock()
        action()
        samples.append(clock() - t0)
        if clock() > end:
            break
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples),
            "reps": len(samples), "samples_s": samples}
