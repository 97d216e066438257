"""Where tether keeps its files on the caller's machine (``$TETHER_HOME``, default ``~/.tether``)."""

from __future__ import annotations

import os
from pathlib import Path


def tether_home() -> Path:
    return Path(os.environ.get("TETHER_HOME") or Path.home() / ".tether").expanduser()


def cluster_dir(name: str) -> Path:
    """State of a cluster started from this machine: token, daemon.json, logs."""
    return tether_home() / "clusters" / name


def resources_dir() -> Path:
    return tether_home() / "resources"
