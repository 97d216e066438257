"""Memory of a process and of the processes below it, read from ``/proc`` (Linux).

RSS counts every page a process has in memory, shared ones too (the interpreter, the libraries
two workers both map), so a sum of RSS over a tree counts the shared pages once per process. PSS
(``/proc/<pid>/smaps_rollup``) splits each shared page among the processes that map it: its sum is
what the tree really holds. Both are given; a process that is gone counts 0.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

MIB = 1024 * 1024


def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def rss_mib(pid: int) -> float | None:
    kib = _status_kib(pid, "VmRSS:")
    return None if kib is None else kib / 1024


def pss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (2nd field) is in parentheses and may hold spaces: parse after its end
        fields = stat[stat.rfind(")") + 2:].split()
        out[int(entry.name)] = int(fields[1])
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, theirs...), not ``pid`` itself."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return sorted(found)


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_s_with_children(pid: int) -> float:
    """CPU seconds so far of ``pid`` and every process below it (a gone one counts 0)."""
    return sum(cpu_s(p) or 0.0 for p in [pid, *descendants(pid)])


def tree(pids: list[int]) -> dict[str, float | int]:
    """RSS and PSS summed over ``pids`` (MiB), and how many were alive."""
    rss = [rss_mib(p) for p in pids]
    pss = [pss_mib(p) for p in pids]
    return {"processes": sum(r is not None for r in rss), "rss_mib": sum(r or 0 for r in rss),
            "pss_mib": sum(p or 0 for p in pss)}


def raise_open_files(wanted: int) -> int:
    """Raise this process's open-files soft limit toward ``wanted`` (up to the hard limit); the
    limit now. N client connections need N descriptors here (and as many in the daemon)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
