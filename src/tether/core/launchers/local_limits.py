"""The size a local cluster emulates: ``tether.cluster(name="small", memory="512Mi", cpus=1)``.

The local launcher writes the limits to ``limits.json`` in the cluster's state dir before it starts
the daemon; the daemon (``tether.daemon.limits``) puts its worker processes in a cgroup with that
memory limit and CPU quota (or watches their memory when it cannot), so that a "small" local cluster
really runs out of memory. The daemon itself stays outside: it survives its workers' OOM kills.

A cluster whose limits changed while its daemon runs is restarted on the next ``up()`` (a new
machine size is a new machine; objects are made again on their next deploy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tether.core import compute

SPEC_KEYS = frozenset({"memory", "cpus"})
LIMITS_FILE = "limits.json"


def from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """``{"memory": bytes or None, "cpus": float or None}``; a ConfigError for a bad value."""
    memory = spec.get("memory")
    cpus = spec.get("cpus")
    return {"memory": compute.parse_memory(memory) if memory is not None else None,
            "cpus": compute.parse_cpus(cpus) if cpus is not None else None}


def validate(spec: dict[str, Any]) -> None:
    from_spec(spec)


def write(state: Path, spec: dict[str, Any]) -> None:
    """Record the limits the next daemon of this state dir enforces (atomically)."""
    tmp = state / f".{LIMITS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(from_spec(spec)))
    os.replace(tmp, state / LIMITS_FILE)


def read(state: Path) -> dict[str, Any]:
    """The limits recorded for this state dir (none when the file is missing or unreadable)."""
    try:
        data = json.loads((state / LIMITS_FILE).read_text())
    except (OSError, ValueError):
        return {"memory": None, "cpus": None}
    return {"memory": data.get("memory"), "cpus": data.get("cpus")}


def matches(state: Path, spec: dict[str, Any]) -> bool:
    """Whether the running daemon of ``state`` enforces the limits ``spec`` asks for."""
    return read(state) == from_spec(spec)
