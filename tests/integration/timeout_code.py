"""Code the timeout tests deploy (imported by workers, by path): calls that take long, quietly,
in small steps (a cancel reaches a sync call between two of them)."""

from __future__ import annotations

import os
import time


def spin(seconds: float, marker: str | None = None) -> str:
    """Run ``seconds`` in 20 ms steps; ``marker`` (a path) is written at the start, and renamed to
    ``marker + ".done"`` at a normal end."""
    if marker:
        open(marker, "w").close()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)
    if marker:
        os.replace(marker, marker + ".done")
    return "spun"


def fetch(url: str, timeout: float = 10.0) -> dict:
    """A function with its own ``timeout`` parameter (like ``requests.get``): it must reach it."""
    time.sleep(0.3)
    return {"url": url, "timeout": timeout}


def anything(**kwargs) -> dict:
    """``**kwargs`` takes ``timeout`` too."""
    time.sleep(0.3)
    return kwargs


def ticks(n: int, every: float, stall_at: int | None = None):
    """Yield ``n`` items ``every`` seconds apart; at item ``stall_at`` wait a minute instead."""
    for i in range(n):
        spin(60 if i == stall_at else every)
        yield i
    return "all"


async def asleep(seconds: float) -> str:
    import asyncio

    await asyncio.sleep(seconds)
    return "woke"


class Waiter:
    """A class whose methods take long; ``wait`` has its own ``timeout`` parameter."""

    def __init__(self) -> None:
        self.calls = 0

    def slow(self, seconds: float) -> str:
        self.calls += 1
        return spin(seconds)

    def wait(self, seconds: float, timeout: float | None = None) -> float | None:
        spin(seconds)
        return timeout

    @property
    def count(self) -> int:
        return self.calls
