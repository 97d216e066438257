"""Cgroups for a cluster's workers: one group per cluster with the memory limit and CPU quota, one
child per worker process (so that its own OOM kills and its own peak can be read after it died).

Both kernel interfaces are handled, whichever the machine has for the memory controller:

- v2 (``cgroup.controllers`` lists ``memory``): ``<mount>/tether/<cluster>/`` gets ``memory.max``,
  ``memory.swap.max = 0`` and ``cpu.max``; a worker's child reports ``memory.events`` (``oom_kill``)
  and ``memory.peak``. The groups hang off the hierarchy's root: v2 forbids enabling controllers
  below a group that holds processes, as the daemon's own group does.
- v1 (a ``memory`` hierarchy): ``<mount>/<daemon's group>/tether-<cluster>/`` gets
  ``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes`` (when the kernel accounts swap) and
  ``memory.swappiness = 0``; CPU goes to the ``cpu`` hierarchy's ``cpu.cfs_quota_us``. A worker's
  child reports ``memory.oom_control`` (``oom_kill``) and ``memory.max_usage_in_bytes``.

Swap is off for the group, so that a worker over the limit is killed instead of slowly swapping.
Workers join their child group before they exec (``prefix``): the daemon never joins, so it
outlives every OOM kill. Anything here raises ``CgroupUnavailable`` when the machine does not let
us (no controller, not root, a read-only mount); the caller falls back to the RSS watchdog.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

SH = "/bin/sh"
# Joins every cgroup named before "--" (writes its own pid to each cgroup.procs), then execs the
# rest. The pid stays the worker's: the daemon sees one process.
_JOIN = ('while [ "$1" != -- ]; do echo $$ > "$1" || { echo "tether: cannot join cgroup $1" >&2; '
         'exit 97; }; shift; done; shift; exec "$@"')


class CgroupUnavailable(OSError):
    """This machine (or this user) cannot give a cluster its own cgroup; the reason is the message."""


@dataclass(frozen=True)
class Mounts:
    """Where the hierarchies are and where this process sits in them."""

    v2: Path | None  # the cgroup2 mount that has the memory controller
    v2_own: str
    v1_memory: Path | None
    v1_memory_own: str
    v1_cpu: Path | None
    v1_cpu_own: str


def find_mounts(mountinfo: str = "/proc/self/mountinfo", own: str = "/proc/self/cgroup") -> Mounts:
    """The hierarchies of this machine, from ``mountinfo``, and this process's groups in them."""
    found: dict[str, tuple[Path, str]] = {}  # "v2" / "memory" / "cpu" -> (mount point, mount root)
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        mount_root, point, fstype, options = fields[3], Path(fields[4]), rest[0], rest[2].split(",")
        if fstype == "cgroup2" and "memory" in _read(point / "cgroup.controllers").split():
            found.setdefault("v2", (point, mount_root))
        elif fstype == "cgroup":
            for name in ("memory", "cpu"):
                if name in options:
                    found.setdefault(name, (point, mount_root))
    paths: dict[str, str] = {}
    for line in _read(Path(own)).splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path

    def where(key: str, controller: str) -> tuple[Path | None, str]:
        if key not in found:
            return None, "/"
        point, mount_root = found[key]
        path = paths.get(controller, "/")
        if mount_root != "/" and (path + "/").startswith(mount_root.rstrip("/") + "/"):
            path = path[len(mount_root.rstrip("/")):] or "/"  # a mount of a sub-hierarchy
        return point, path

    v2, v2_own = where("v2", "")
    mem, mem_own = where("memory", "memory")
    cpu, cpu_own = where("cpu", "cpu")
    return Mounts(v2, v2_own, mem, mem_own, cpu, cpu_own)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupUnavailable(f"cannot write {value.strip()!r} to {path}: {exc.strerror or exc}") from exc


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise CgroupUnavailable(f"cannot create cgroup {path}: {exc.strerror or exc}") from exc


def counter(text: str, key: str) -> int:
    """``key``'s value in a flat-keyed cgroup file (``memory.events``, ``memory.oom_control``)."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


def _int(path: Path) -> int | None:
    text = _read(path).strip()
    return int(text) if text.isdigit() else None


def _kill_members(group: Path) -> None:
    """SIGKILL what is left in a group (workers of a daemon that was killed)."""
    for pid in _read(group / "cgroup.procs").split():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _rmdir(path: Path, attempts: int = 50) -> bool:
    for _ in range(attempts):  # an exited task leaves its group a moment later
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return False
            time.sleep(0.01)
    return False


class ClusterGroup:
    """The cgroup(s) of one cluster's workers. ``version`` is "v2" or "v1"."""

    def __init__(self, slug: str, memory: int | None, cpus: float | None, mounts: Mounts | None = None) -> None:
        self.mounts = mounts or find_mounts()
        self.memory, self.cpus = memory, cpus
        self.cpu_group: Path | None = None
        self._children = 0
        if self.mounts.v2 is not None:
            self.version = "v2"
            self.group = self._make_v2(slug)
        elif self.mounts.v1_memory is not None:
            self.version = "v1"
            self.group = self._make_v1(slug)
        else:
            raise CgroupUnavailable("this machine has no memory cgroup controller (neither cgroup v2 "
                                    "with 'memory' nor a v1 memory hierarchy)")

    # -- setup -----------------------------------------------------------------------------------

    def _make_v2(self, slug: str) -> Path:
        root = self.mounts.v2
        wanted = "+memory" + (" +cpu" if self.cpus else "")
        for parent in (root, root / "tether"):
            if parent != root:
                _mkdir(parent)
            have = _read(parent / "cgroup.subtree_control").split()
            if "memory" not in have or (self.cpus and "cpu" not in have):
                _write(parent / "cgroup.subtree_control", wanted)
        group = root / "tether" / slug
        self._reuse(group)
        _write(group / "memory.max", str(self.memory) if self.memory else "max")
        if (group / "memory.swap.max").exists():
            _write(group / "memory.swap.max", "0")
        if self.cpus:
            period = 100_000
            _write(group / "cpu.max", f"{max(1000, int(self.cpus * period))} {period}")
        _write(group / "cgroup.subtree_control", "+memory")
        return group

    def _make_v1(self, slug: str) -> Path:
        base = self.mounts.v1_memory / self.mounts.v1_memory_own.lstrip("/")
        group = base / f"tether-{slug}"
        self._reuse(group)
        limit = str(self.memory) if self.memory else "-1"
        memsw = group / "memory.memsw.limit_in_bytes"
        try:  # memsw must stay >= the limit: raising the limit goes memsw first
            _write(group / "memory.limit_in_bytes", limit)
            if memsw.exists():
                _write(memsw, limit)
        except CgroupUnavailable:
            if not memsw.exists():
                raise
            _write(memsw, limit)
            _write(group / "memory.limit_in_bytes", limit)
        with contextlib.suppress(CgroupUnavailable):  # refused in some containers; memsw covers it
            _write(group / "memory.swappiness", "0")
        if self.cpus and self.mounts.v1_cpu is not None:
            cpu = self.mounts.v1_cpu / self.mounts.v1_cpu_own.lstrip("/") / f"tether-{slug}"
            self._reuse(cpu)
            period = _int(cpu / "cpu.cfs_period_us") or 100_000
            _write(cpu / "cpu.cfs_quota_us", str(max(1000, int(self.cpus * period))))
            self.cpu_group = cpu
        return group

    def _reuse(self, group: Path) -> None:
        """Create the group, or empty the one a killed daemon left (its workers are orphans)."""
        _mkdir(group)
        for child in [p for p in group.iterdir() if p.is_dir()]:
            _kill_members(child)
            _rmdir(child)
        _kill_members(group)

    # -- workers ---------------------------------------------------------------------------------

    def child(self, label: str) -> WorkerGroup:
        """A fresh child group for one worker process."""
        self._children += 1
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40]
        path = self.group / f"w{self._children}-{safe}"
        if path.exists():
            _kill_members(path)
            _rmdir(path)
        _mkdir(path)
        return WorkerGroup(self, path)

    @property
    def supports_cpu(self) -> bool:
        return self.version == "v2" or self.cpu_group is not None

    def info(self) -> dict[str, object]:
        return {"cgroup": str(self.group), "cpu_cgroup": str(self.cpu_group) if self.cpu_group else None}

    def remove(self) -> None:
        for group in (self.group, self.cpu_group):
            if group is None or not group.exists():
                continue
            for child in [p for p in group.iterdir() if p.is_dir()]:
                _kill_members(child)
                _rmdir(child)
            _rmdir(group)


class WorkerGroup:
    """One worker's child group: the command prefix that joins it, and what it recorded."""

    def __init__(self, cluster: ClusterGroup, path: Path) -> None:
        self.cluster, self.path = cluster, path

    def prefix(self) -> list[str]:
        procs = [str(self.path / "cgroup.procs")]
        if self.cluster.cpu_group is not None:
            procs.append(str(self.cluster.cpu_group / "cgroup.procs"))
        return [SH, "-c", _JOIN, "tether-worker", *procs, "--"]

    def oom_kills(self) -> int:
        if self.cluster.version == "v2":
            return counter(_read(self.path / "memory.events"), "oom_kill")
        return counter(_read(self.path / "memory.oom_control"), "oom_kill")

    def peak(self) -> int | None:
        name = "memory.peak" if self.cluster.version == "v2" else "memory.max_usage_in_bytes"
        return _int(self.path / name)

    def remove(self) -> None:
        """Once the worker is gone: its leftover children go too; a group still busy is left for
        the cluster's ``remove()`` (this runs on the daemon's event loop: no waiting here)."""
        _kill_members(self.path)
        _rmdir(self.path, attempts=1)


def own_oom_kills(mounts: Mounts | None = None) -> tuple[Path, str] | None:
    """The file and key that count OOM kills in the daemon's own memory cgroup (where the workers
    of a cluster without limits run), or None if there is none to read."""
    mounts = mounts or find_mounts()
    if mounts.v2 is not None:
        path = mounts.v2 / mounts.v2_own.lstrip("/") / "memory.events.local"
        return (path, "oom_kill") if path.exists() else None
    if mounts.v1_memory is not None:
        path = mounts.v1_memory / mounts.v1_memory_own.lstrip("/") / "memory.oom_control"
        return (path, "oom_kill") if path.exists() else None
    return None
