"""The RSS watchdog: a cluster's memory limit where cgroups cannot be had (not root, no memory
controller, ``TETHER_LIMITS=watchdog``).

A thread in the daemon reads the resident (plus swapped) memory of every worker process and its
children a few dozen times a second; when the cluster's workers together hold more than the limit,
the biggest one is killed with SIGKILL, and its death is reported as an OOM with the limit and the
peak it reached. It is coarser than a cgroup (an allocation faster than the poll overshoots for a
moment), but a step that needs more memory than the cluster has fails the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("tether.daemon")

POLL_SECONDS = 0.02


def _status_bytes(pid: int) -> int:
    """VmRSS + VmSwap of one process, in bytes (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmSwap:")):
            parts = line.split()
            with contextlib.suppress(IndexError, ValueError):
                total += int(parts[1]) * 1024
    return total


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            kids += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except (OSError, ValueError):
            continue
    return kids


def tree_bytes(pid: int) -> int:
    """Memory of a process and all its descendants (a worker's subprocesses count too)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _status_bytes(current)
        todo += _children(current)
    return total


@dataclass
class Watched:
    pid: int
    peak: int = 0
    killed_at: int | None = None  # bytes held when the watchdog killed it


@dataclass
class Watchdog:
    """Watches the workers of one cluster against ``limit`` bytes."""

    limit: int
    watched: dict[int, Watched] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def add(self, pid: int) -> Watched:
        entry = Watched(pid)
        with self._lock:
            self.watched[pid] = entry
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tether-rss-watchdog", daemon=True)
                self._thread.start()
        return entry

    def remove(self, pid: int) -> Watched | None:
        with self._lock:
            return self.watched.pop(pid, None)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            with self._lock:
                entries = [e for e in self.watched.values() if e.killed_at is None]
            if entries:
                self.check(entries)

    def check(self, entries: list[Watched]) -> None:
        sizes = {}
        for entry in entries:
            size = tree_bytes(entry.pid)
            entry.peak = max(entry.peak, size)
            sizes[entry.pid] = size
        if sum(sizes.values()) <= self.limit:
            return
        biggest = max(entries, key=lambda e: sizes[e.pid])
        biggest.killed_at = sizes[biggest.pid]
        log.warning("worker pid %s holds %s bytes; the cluster's %s-byte memory limit is exceeded: "
                    "killing it", biggest.pid, biggest.killed_at, self.limit)
        with contextlib.suppress(OSError):
            os.killpg(biggest.pid, signal.SIGKILL)  # its children too: the worker leads its session
        with contextlib.suppress(OSError):
            os.kill(biggest.pid, signal.SIGKILL)
