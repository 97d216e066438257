"""A cluster's machine size, enforced on its workers; and why a worker that was killed died.

The local launcher records ``memory=``/``cpus=`` in the state dir (``tether.state.write_limits``). The daemon
enforces them the strongest way this machine allows, and says which in ``/_tether/status``:

1. cgroups (v2 or v1: ``tether.daemon.cgroups``): the kernel kills a worker over the limit;
2. else the RSS watchdog (``tether.daemon.watchdog``), plus CPU affinity for ``cpus``.

``TETHER_LIMITS`` (read by the daemon) forces one: ``cgroup`` (a daemon that cannot have them does
not start), ``watchdog``, or ``auto`` (the default).

Every worker gets a ``Slot`` before it starts: a command prefix (joining its cgroup) and, once it
died, a ``report``: whether it was killed for lack of memory (its cgroup's ``oom_kill`` counter rose,
the watchdog killed it, or, on a cluster without limits, the OOM killer struck in the daemon's own
memory cgroup), with the limit and the peak. The daemon puts that into the ``worker_died`` error,
which the caller raises as ``tether.OutOfMemoryError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import signal
from pathlib import Path
from typing import Any

from tether.compute import format_bytes
from tether.daemon import cgroups
from tether.daemon.watchdog import Watchdog
from tether.state import read_limits

log = logging.getLogger("tether.daemon")

MODE_ENV = "TETHER_LIMITS"
MODES = ("auto", "cgroup", "watchdog")


class LimitsError(RuntimeError):
    """The limits asked for cannot be enforced the way ``TETHER_LIMITS`` demands."""


class Limits:
    """How one daemon enforces its cluster's limits on the workers it starts."""

    def __init__(self, cluster: str, state_dir: Path, memory: int | None, cpus: float | None,
                 mode: str = "auto") -> None:
        if mode not in MODES:
            raise LimitsError(f"{MODE_ENV}={mode!r}: use one of {', '.join(MODES)}")
        self.memory, self.cpus, self.mode = memory, cpus, mode
        self.group: cgroups.ClusterGroup | None = None
        self.watchdog: Watchdog | None = None
        self.fallback_reason: str | None = None
        self.affinity: set[int] | None = None
        digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:8]
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in cluster)[:60] + "-" + digest
        if memory is None and cpus is None:
            return
        if mode in ("auto", "cgroup"):
            try:
                self.group = cgroups.ClusterGroup(slug, memory, cpus)
            except cgroups.CgroupUnavailable as exc:
                if mode == "cgroup":
                    raise LimitsError(f"{MODE_ENV}=cgroup, and no cgroup can be had: {exc}") from exc
                self.fallback_reason = str(exc)
                log.warning("limits of cluster %r by the RSS watchdog: %s", cluster, exc)
        if self.group is None and memory is not None:
            self.watchdog = Watchdog(memory)
        if cpus is not None and (self.group is None or not self.group.supports_cpu):
            allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            if allowed:
                self.affinity = set(allowed[:max(1, math.ceil(cpus))])

    @classmethod
    def for_daemon(cls, cluster: str, state_dir: Path) -> Limits:
        recorded = read_limits(state_dir)
        return cls(cluster, state_dir, recorded["memory"], recorded["cpus"],
                   os.environ.get(MODE_ENV, "auto") or "auto")

    @property
    def enforced_by(self) -> str | None:
        if self.group is not None:
            return f"cgroup {self.group.version}"
        if self.watchdog is not None:
            return "rss watchdog"
        return "cpu affinity" if self.affinity else None

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"memory": self.memory, "cpus": self.cpus, "enforced_by": self.enforced_by}
        if self.group is not None:
            info.update(self.group.info())
        if self.fallback_reason:
            info["why_not_cgroup"] = self.fallback_reason
        if self.affinity:
            info["cpu_affinity"] = sorted(self.affinity)
        return info

    def slot(self, label: str) -> Slot:
        """What a new worker of env ``label`` runs in (call before starting it)."""
        return Slot(self, self.group.child(label) if self.group is not None else None)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.group is not None:
            self.group.remove()


class Slot:
    """One worker's place: the prefix of its command, and the report of its death."""

    def __init__(self, limits: Limits, group: cgroups.WorkerGroup | None) -> None:
        self.limits, self.group = limits, group
        self.pid: int | None = None
        self._own: tuple[Path, str] | None = None
        self._own_before = 0
        self._watched = None

    @property
    def prefix(self) -> list[str]:
        return self.group.prefix() if self.group is not None else []

    def started(self, pid: int) -> None:
        self.pid = pid
        if self.limits.affinity:
            with contextlib.suppress(OSError):  # before the worker made threads: they inherit it
                os.sched_setaffinity(pid, self.limits.affinity)
        if self.limits.watchdog is not None:
            self._watched = self.limits.watchdog.add(pid)
        if self.group is None:
            self._own = cgroups.own_oom_kills()
            if self._own is not None:
                self._own_before = cgroups.counter(cgroups._read(self._own[0]), self._own[1])

    def report(self, returncode: int | None) -> dict[str, Any] | None:
        """For a worker that died: ``{"oom": True, "limit", "peak", "oom_reason"}`` if it was
        killed for lack of memory, else None."""
        killed = returncode == -signal.SIGKILL
        limit = self.limits.memory
        if self._watched is not None and self._watched.killed_at is not None:
            peak = max(self._watched.peak, self._watched.killed_at)
            return _oom(limit, peak, f"the RSS watchdog killed it over the cluster's memory limit "
                                     f"of {format_bytes(limit)}")
        if self.group is not None:
            if killed and self.group.oom_kills() > 0:
                return _oom(limit, self.group.peak(),
                            "the kernel OOM killer killed it at the cluster's memory limit of "
                            f"{format_bytes(limit)}" if limit else "the kernel OOM killer killed it")
            return None
        if killed and self._own is not None:
            after = cgroups.counter(cgroups._read(self._own[0]), self._own[1])
            if after > self._own_before:
                return _oom(limit, None, "the kernel OOM killer killed it (this machine, or the "
                                         "memory cgroup the daemon runs in, ran out of memory)")
        return None

    def release(self) -> None:
        if self.limits.watchdog is not None and self.pid is not None:
            self.limits.watchdog.remove(self.pid)
        if self.group is not None:
            self.group.remove()


def _oom(limit: int | None, peak: int | None, reason: str) -> dict[str, Any]:
    return {"oom": True, "limit": limit, "peak": peak, "oom_reason": reason}


def oom_message(env: str, pid: int | None, report: dict[str, Any], log_path: Path) -> str:
    """The ``worker_died`` message of a worker that ran out of memory."""
    sizes = []
    if report.get("limit"):
        sizes.append(f"memory limit {format_bytes(report['limit'])}")
    if report.get("peak"):
        sizes.append(f"peak {format_bytes(report['peak'])}")
    detail = f" ({', '.join(sizes)})" if sizes else ""
    return (f"the worker process of env {env!r} (pid {pid}) ran out of memory during the call{detail}: "
            f"{report['oom_reason']}. The daemon keeps serving; the next call starts a fresh worker "
            f"(on a bigger cluster if this one is too small). Worker log: {log_path}")
