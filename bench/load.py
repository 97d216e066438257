"""The load figure: the reliability campaign's run as a benchmark row (tether only).

``load_calls`` calls (100,000 in a full run) to one live instance at once: half from 32 client
threads, half from 64 async calls in flight on one event loop. Every call sends a token and must
get its own token back (no mixed-up results); the instance counts calls under a lock, and its
count must be exact; the daemon's memory (VmRSS) is read before and after. The figures: calls/s
under that load, errors + mixed-up results + counter drift (must be 0), and the daemon's memory
after the run.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

THREADS = 32
IN_FLIGHT = 64


def daemon_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run(cluster: Any, total: int, max_seconds: float) -> dict[str, Any]:
    """Drive the load; returns every number the three rows and the JSON need."""
    import tether as rh
    from bench.bench_code import LoadCounter

    counter = rh.module(LoadCounter).to(cluster)(name="load-counter")
    pid = cluster.status()["pid"]
    rss_before = daemon_rss_mib(pid)
    tokens = itertools.count()
    lock = threading.Lock()
    stats = {"calls": 0, "errors": 0, "mixed": 0, "first_error": None}
    deadline = time.monotonic() + max_seconds

    def note(ok: bool, mixed: bool = False, error: BaseException | None = None) -> None:
        with lock:
            stats["calls"] += 1
            stats["errors"] += 0 if ok or mixed else 1
            stats["mixed"] += 1 if mixed else 0
            if error is not None and stats["first_error"] is None:
                stats["first_error"] = f"{type(error).__name__}: {error}"

    def one_thread(n: int) -> None:
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            token = next(tokens)
            try:
                got = counter.bump(token)
            except Exception as exc:  # noqa: BLE001 - counted, the load goes on
                note(False, error=exc)
                continue
            note(got == token, mixed=got != token)

    async def async_calls(n: int) -> None:
        async def one(k: int) -> None:
            for _ in range(k):
                if time.monotonic() > deadline:
                    return
                token = next(tokens)
                try:
                    got = await counter.bump.aio(token)
                except Exception as exc:  # noqa: BLE001
                    note(False, error=exc)
                    continue
                note(got == token, mixed=got != token)

        await asyncio.gather(*[one(n // IN_FLIGHT) for _ in range(IN_FLIGHT)])

    per_thread = total // 2 // THREADS
    start = time.monotonic()
    threads = [threading.Thread(target=one_thread, args=(per_thread,)) for _ in range(THREADS)]
    for t in threads:
        t.start()
    asyncio.run(async_calls(total // 2))
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    count = counter.total()
    drift = abs(count - stats["calls"])
    rss_after = daemon_rss_mib(pid)
    cluster.delete("load-counter")
    return {"calls": stats["calls"], "seconds": elapsed, "calls_per_s": stats["calls"] / elapsed,
            "errors": stats["errors"], "mixed_up": stats["mixed"], "counter": count,
            "counter_drift": drift, "bad": stats["errors"] + stats["mixed"] + drift,
            "first_error": stats["first_error"], "daemon_rss_before_mib": rss_before,
            "daemon_rss_after_mib": rss_after,
            "complete": stats["calls"] == per_thread * THREADS + (total // 2 // IN_FLIGHT) * IN_FLIGHT}
