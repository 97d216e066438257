"""A cluster's machine size, enforced on its workers; and why a worker that was killed died.

The local launcher records ``memory=``/``cpus=`` in the state dir (``tether.state.write_limits``). The daemon
enforces them the strongest way this machine allows, and says which in ``/_tether/status``:

1. cgroups (v2 or v1: ``tether.daemon.cgroups``): the kernel kills a worker over the limit;
2. else the RSS watchdog (``tether.daemon.watchdog``), plus CPU affinity for ``cpus``.

``TETHER_LIMITS`` (read by the daemon) forces one: ``cgroup`` (a daemon that cannot have them does
not start), ``watchdog``, or ``auto`` (the default).

An env can have limits of its own (``Limits.set_env``, the route ``POST
/_tether/envs/{env}/limits``): its workers then run in a group of their own with that size, apart
from the cluster's, and its death reports say "env 'x''s memory limit". A ladder climbs that way
on a local cluster: only the env of the service that ran out of memory grows.

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

from tether.compute import format_bytes, parse_cpus, parse_memory
from tether.daemon import cgroups, children
from tether.daemon.watchdog import Watchdog
from tether.errors import ConfigError
from tether.state import read_env_limits, read_limits, remove_env_limits, write_env_limits

log = logging.getLogger("tether.daemon")

MODE_ENV = "TETHER_LIMITS"
MODES = ("auto", "cgroup", "watchdog")


class LimitsError(RuntimeError):
    """The limits asked for cannot be enforced the way ``TETHER_LIMITS`` demands."""


class Scope:
    """One machine size and how it is enforced: the cluster's (every env's worker by default) or
    one env's own (``Limits.set_env``). Each has its own cgroup (or watchdog), so that an env that
    was given more memory does not share the cluster's."""

    def __init__(self, slug: str, memory: int | None, cpus: float | None, mode: str, what: str) -> None:
        self.memory, self.cpus, self.what = memory, cpus, what
        self.group: cgroups.ClusterGroup | None = None
        self.watchdog: Watchdog | None = None
        self.fallback_reason: str | None = None
        self.affinity: set[int] | None = None
        if memory is None and cpus is None:
            return
        if mode in ("auto", "cgroup"):
            try:
                self.group = cgroups.ClusterGroup(slug, memory, cpus)
            except cgroups.CgroupUnavailable as exc:
                if mode == "cgroup":
                    raise LimitsError(f"{MODE_ENV}=cgroup, and no cgroup can be had: {exc}") from exc
                self.fallback_reason = str(exc)
                log.warning("limits of %s by the RSS watchdog: %s", what, exc)
        if self.group is None and memory is not None:
            self.watchdog = Watchdog(memory)
        if cpus is not None and (self.group is None or not self.group.supports_cpu):
            allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            if allowed:
                self.affinity = set(allowed[:max(1, math.ceil(cpus))])

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

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.group is not None:
            self.group.remove()


class Limits:
    """How one daemon enforces its cluster's limits on the workers it starts: the cluster's
    size for every env, unless an env has limits of its own (``set_env``: a ladder that climbs
    for one env's service grows that env's worker only, not the whole cluster). Those are kept
    in the state dir (``tether.state.write_env_limits``) so that the next daemon of the same
    cluster applies them too; ``forget_envs`` (a teardown) drops them."""

    def __init__(self, cluster: str, state_dir: Path, memory: int | None, cpus: float | None,
                 mode: str = "auto", envs: dict[str, dict[str, Any]] | None = None) -> None:
        if mode not in MODES:
            raise LimitsError(f"{MODE_ENV}={mode!r}: use one of {', '.join(MODES)}")
        self.mode, self.state_dir = mode, state_dir
        digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:8]
        self._slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in cluster)[:60] + "-" + digest
        self.cluster = Scope(self._slug, memory, cpus, mode, "the cluster's")
        self.overrides: dict[str, dict[str, Any]] = {}  # env -> {"memory", "cpus"} as asked
        self.envs: dict[str, Scope] = {}
        for env, asked in (envs or {}).items():
            try:
                self._apply(env, asked.get("memory"), asked.get("cpus"))
            except (LimitsError, TypeError, ValueError, AttributeError) as exc:
                log.warning("the limits kept for env %r cannot be applied (%s): it runs with the cluster's", env, exc)

    @classmethod
    def for_daemon(cls, cluster: str, state_dir: Path) -> Limits:
        recorded = read_limits(state_dir)
        return cls(cluster, state_dir, recorded["memory"], recorded["cpus"],
                   os.environ.get(MODE_ENV, "auto") or "auto", read_env_limits(state_dir))

    # -- the cluster's scope, as before (status, the slot of a worker without limits of its own)

    memory = property(lambda self: self.cluster.memory)
    cpus = property(lambda self: self.cluster.cpus)
    group = property(lambda self: self.cluster.group)
    watchdog = property(lambda self: self.cluster.watchdog)
    affinity = property(lambda self: self.cluster.affinity)
    fallback_reason = property(lambda self: self.cluster.fallback_reason)
    enforced_by = property(lambda self: self.cluster.enforced_by)

    # -- envs ------------------------------------------------------------------------------------

    def scope(self, env: str) -> Scope:
        return self.envs.get(env, self.cluster)

    def env_limits(self, env: str) -> dict[str, Any]:
        """What the workers of ``env`` get: ``{"memory": bytes or None, "cpus": float or None,
        "own": whether the env has limits of its own}``."""
        scope = self.scope(env)
        return {"memory": scope.memory, "cpus": scope.cpus, "own": env in self.envs}

    def set_env(self, env: str, memory: int | None, cpus: float | None) -> bool:
        """Give ``env`` its own limits (None: the cluster's for that one), kept for the next
        daemon; False if it had those already. Call with the env's workers stopped: its old
        cgroup goes, with whatever still runs in it."""
        if self.overrides.get(env) == {"memory": memory, "cpus": cpus}:
            return False
        self._apply(env, memory, cpus)
        write_env_limits(self.state_dir, self.overrides)
        return True

    def _apply(self, env: str, memory: int | None, cpus: float | None) -> None:
        old = self.envs.pop(env, None)
        if old is not None:
            old.close()
        self.overrides.pop(env, None)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in env)[:40]
        digest = hashlib.sha1(env.encode()).hexdigest()[:6]
        scope = Scope(f"{self._slug}.env-{safe}-{digest}", self.memory if memory is None else memory,
                      self.cpus if cpus is None else cpus, self.mode, f"env {env!r}'s")
        self.envs[env] = scope
        self.overrides[env] = {"memory": memory, "cpus": cpus}

    def forget_envs(self) -> None:
        """A teardown: the next daemon of this cluster gives every env the cluster's limits."""
        remove_env_limits(self.state_dir)

    def info(self) -> dict[str, Any]:
        info = self.cluster.info()
        if self.envs:
            info["envs"] = {env: {**scope.info(), "asked": self.overrides.get(env)}
                            for env, scope in self.envs.items()}
        return info

    def slot(self, label: str) -> Slot:
        """What a new worker of env ``label`` runs in (call before starting it)."""
        scope = self.scope(label)
        return Slot(scope, scope.group.child(label) if scope.group is not None else None)

    def close(self) -> None:
        for scope in [self.cluster, *self.envs.values()]:
            scope.close()


#: the kernel's OOM killer takes a worker before the daemon (``children.OOM_SCORE_ADJ``); set
#: again after the start, for a worker started where ``children.preexec()`` is not available
WORKER_OOM_SCORE_ADJ = children.OOM_SCORE_ADJ


class Slot:
    """One worker's place: the prefix of its command, and the report of its death."""

    def __init__(self, limits: Scope, group: cgroups.WorkerGroup | None) -> None:
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
        with contextlib.suppress(OSError):  # not Linux, or the worker is gone already
            Path(f"/proc/{pid}/oom_score_adj").write_text(str(WORKER_OOM_SCORE_ADJ))
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
        limit, what = self.limits.memory, self.limits.what
        if self._watched is not None and self._watched.killed_at is not None:
            peak = max(self._watched.peak, self._watched.killed_at)
            return _oom(limit, peak, f"the RSS watchdog killed it over {what} memory limit "
                                     f"of {format_bytes(limit)}")
        if self.group is not None:
            if killed and self.group.oom_kills() > 0:
                return _oom(limit, self.group.peak(),
                            f"the kernel OOM killer killed it at {what} memory limit of "
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


def env_limits_request(body: Any) -> tuple[int | None, float | None, str]:
    """``POST /_tether/envs/{env}/limits``: ``{"memory": size or null, "cpus": number or null,
    "why": text}`` as (bytes, CPUs, why); a ValueError says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object such as {\"memory\": \"1Gi\", \"cpus\": 1}")
    unknown = sorted(set(body) - {"memory", "cpus", "why"})
    if unknown:
        raise ValueError(f"unknown keys {unknown}: an env's limits are 'memory' and 'cpus' (and 'why')")
    try:
        memory = parse_memory(body["memory"]) if body.get("memory") is not None else None
        cpus = parse_cpus(body["cpus"]) if body.get("cpus") is not None else None
    except ConfigError as exc:
        raise ValueError(exc.message) from None
    why = body.get("why") or ""
    if not isinstance(why, str):
        raise ValueError("'why' is a text")
    return memory, cpus, why[:500]


def describe_limits(memory: int | None, cpus: float | None) -> str:
    """``"memory 1 GiB, 1 CPU"`` (for messages)."""
    parts = [f"memory {format_bytes(memory)}"] if memory is not None else []
    if cpus is not None:
        parts.append(f"{cpus:g} CPU{'' if cpus == 1 else 's'}")
    return ", ".join(parts) or "the cluster's limits"


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
