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


def ensure_token(state_dir: Path) -> str:
    """The cluster's bearer token, created with the cluster and stored with mode 0600."""
    import secrets

    path = state_dir / "token"
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
