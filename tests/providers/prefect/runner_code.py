"""Tasks that ``TetherTaskRunner`` tests submit by import path: a worker imports this module (so
it imports Prefect too) and runs the function under each ``@task``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from prefect import task


@task
def span(label: str, meet: str | None = None, expected: int = 1) -> dict:
    """Record when it ran (the worker's own clock) and where (process, modules). With ``meet`` (a
    folder), wait there until ``expected`` spans have started: they all run at once, or it gives
    up after a minute and says so."""
    start = time.time()
    print(f"span {label} starts in pid {os.getpid()}", flush=True)
    met = True
    if meet is not None:
        Path(meet, label).touch()
        deadline = time.monotonic() + 60
        while len(os.listdir(meet)) < expected:
            if time.monotonic() > deadline:
                met = False
                break
            time.sleep(0.02)
    return {"label": label, "start": start, "end": time.time(), "pid": os.getpid(), "met": met,
            "imported_by_path": "runner_code" in sys.modules}


@task
def total(parts: list[dict], offset: int = 0) -> int:
    print(f"adding up {len(parts)} parts", flush=True)
    return offset + sum(len(p["label"]) for p in parts)


@task
async def double(x: int) -> int:
    return 2 * x


@task(retries=1)
def fail(message: str) -> None:
    raise ValueError(message)


def scale(x: int, by: int = 3) -> int:
    """A plain function, deployed as a service by ``deploy_service``."""
    return by * x
