"""Helpers of the multi-node tests: code of a throwaway project, and a cluster of test hosts."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tether as rh


@contextmanager
def importable(root: Path, stem: str, code: str) -> Iterator:
    """``code`` as a module of a project at ``root``, imported here (and rsync'ed to the nodes)."""
    (root / "pyproject.toml").write_text(f"[project]\nname = '{stem}'\n")
    name = f"{stem}_{uuid.uuid4().hex[:8]}"
    (root / f"{name}.py").write_text(code)
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(root))
        sys.modules.pop(name, None)


def cluster_of(hosts, prefix: str) -> rh.Cluster:
    """A new SSH cluster of ``hosts`` (the first is the head), each with its own user."""
    return rh.cluster(name=f"{prefix}-{uuid.uuid4().hex[:6]}", ips=[f"{h.user}@{h.ip}" for h in hosts],
                      ssh_creds=hosts[0].ssh_creds())
