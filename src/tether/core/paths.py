"""Where tether keeps its files on the caller's machine (``$TETHER_HOME``, default ``~/.tether``),
and the small helpers every writer of them shares: a file lock, a private write, a live pid."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
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


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created 0600), across threads and processes."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) atomically: readers see the old file or the new one."""
    tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def pid_alive(pid: object) -> bool:
    """Whether ``pid`` names a live process (our own exited child, a zombie, is not alive)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
