"""What the numbers were measured on: the machine, its load, the versions of everything involved."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

DISTRIBUTIONS = ("tether", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "cloudpickle", "httpx",
                 "numpy", "ray", "aiohttp", "matplotlib", "apache-airflow", "prefect", "dagster")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_ticks() -> list[int]:
    """The machine's CPU time so far (``/proc/stat``): user nice system idle iowait irq softirq steal."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return []


def steal_percent(before: list[int], after: list[int]) -> float | None:
    """Share of CPU time the hypervisor gave to other machines between two ``cpu_ticks()``: on a
    virtual machine, the part of the noise no process on this machine shows."""
    if len(before) < 8 or len(after) < 8:
        return None
    total = sum(after) - sum(before)
    return round(100 * (after[7] - before[7]) / total, 1) if total > 0 else None


def info() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError):
        pass
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "cpu_model": model, "memory_gb": mem_gb, "python": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "env": {k: os.environ[k] for k in ("PYTHONDONTWRITEBYTECODE", "OPENBLAS_CORETYPE") if k in os.environ}}


def versions() -> dict[str, str]:
    found = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def source(root: Path) -> dict[str, Any]:
    """The checkout measured: its commit, and whether tether's sources had uncommitted edits."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    changed = [line for line in git("status", "--porcelain", "--", "src").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD") or "?", "src_files_changed": len(changed)}


def settle(log=None, max_s: float = 15.0, below_cores: float = 0.1, step_s: float = 0.5) -> float:
    """Wait, between two steps of the benchmark, until the machine is idle: dirty pages written
    (a pip install leaves hundreds of MB for the kernel's writeback threads), and the CPU used by
    every process below ``below_cores`` for one ``step_s`` (the benchmark itself is idle here:
    what runs is a previous step's leftovers). Returns the seconds waited; at most ``max_s``."""
    t0 = time.monotonic()
    os.sync()
    before = cpu_ticks()
    if not before:
        return 0.0
    while time.monotonic() - t0 < max_s:
        time.sleep(step_s)
        after = cpu_ticks()
        total = sum(after) - sum(before)
        busy = total - (after[3] - before[3]) - (after[4] - before[4]) if total > 0 else 0
        if total > 0 and busy / total * (os.cpu_count() or 1) < below_cores:
            break
        before = after
    else:
        if log is not None:
            log(f"the machine did not settle in {max_s:g} s: other work is running (numbers are noisy)")
    return time.monotonic() - t0
