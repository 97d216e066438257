"""CPU and memory of each worker over time, for the dashboard's charts (``GET /_tether/usage``).

A task on the daemon's loop reads each live worker's ``/proc/<pid>/stat`` (CPU time) and
``/proc/<pid>/statm`` (resident pages) every ``TETHER_USAGE_INTERVAL`` seconds (default 2; 0
turns sampling off) and keeps the last ``TETHER_USAGE_WINDOW`` seconds (default 600) per worker in
a ring. Two small reads per worker every two seconds cost the loop a few microseconds; nothing
runs on the call path. Without ``/proc`` (not Linux) there are no samples.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("tether.daemon")

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_proc(pid: int) -> tuple[float, int] | None:
    """(CPU seconds used, resident bytes) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) ": state is field 3
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)
    return cpu, int(statm.split()[1]) * _PAGE


class Usage:
    """The samples: per worker (env, pid), a ring of ``[t, cpu_percent, rss_bytes]``."""

    def __init__(self, workers: Callable[[], Iterable[tuple[str, int]]], interval: float = 2.0,
                 window: float = 600.0) -> None:
        self.workers, self.interval, self.window = workers, interval, window
        self.series: dict[tuple[str, int], deque[list[float]]] = {}
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (monotonic time, cpu seconds)
        self._task: asyncio.Task | None = None

    @classmethod
    def from_env(cls, workers: Callable[[], Iterable[tuple[str, int]]]) -> Usage:
        interval = float(os.environ.get("TETHER_USAGE_INTERVAL") or 2.0)
        window = float(os.environ.get("TETHER_USAGE_WINDOW") or 600.0)
        return cls(workers, interval, window)

    def sample(self) -> None:
        """One sample of every live worker; the series of workers gone for a window are dropped."""
        now, wall = time.monotonic(), time.time()
        seen = set()
        for env, pid in self.workers():
            got = read_proc(pid)
            if got is None:
                continue
            cpu_s, rss = got
            seen.add(pid)
            before = self._last.get(pid)
            self._last[pid] = (now, cpu_s)
            percent = 0.0
            if before is not None and now > before[0]:
                percent = max(0.0, 100.0 * (cpu_s - before[1]) / (now - before[0]))
            ring = self.series.get((env, pid))
            if ring is None:
                ring = self.series[(env, pid)] = deque(maxlen=max(1, int(self.window / self.interval)))
            ring.append([round(wall, 3), round(percent, 1), rss])
        for pid in [p for p in self._last if p not in seen]:
            del self._last[pid]
        for key in [k for k, ring in self.series.items() if not ring or ring[-1][0] < wall - self.window]:
            del self.series[key]

    def start(self) -> None:
        if self.interval > 0 and os.path.isdir("/proc/self") and self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a sample never stops the daemon
                log.warning("worker usage sample failed: %s", exc)
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def info(self, since: float | None = None) -> dict[str, Any]:
        """The answer of ``GET /_tether/usage``: every series, points after ``since`` only."""
        series = []
        for (env, pid), ring in self.series.items():
            points = [p for p in ring if since is None or p[0] > since]
            series.append({"env": env, "pid": pid, "points": points})
        return {"interval": self.interval, "window": self.window, "series": series}
