"""Child processes of the benchmark: started in their own session, always stopped by id.

Nothing here looks processes up by name. Every process this run starts, and every process those
start (tether's daemon and workers, Ray's raylet, agents and workers, wrk), inherits ``RUN_MARKER``
in its environment, set to this run's throwaway folder: that identifies them exactly, even where
a process renames itself (Ray's ``ray::IDLE``) or was orphaned by an interrupted start.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path


def start(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, cwd=cwd,
                            start_new_session=True)


def read_line(proc: subprocess.Popen, timeout: float) -> bytes:
    """The child's next stdout line, or b"" if none came within ``timeout`` s (or it exited)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else b""


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds."""
    if proc is None:
        return
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


RUN_MARKER = "TETHER_BENCH_RUN"


def owned_by(folder: Path) -> list[int]:
    """Pids of live processes (not this one) whose ``RUN_MARKER`` is ``folder`` or inside it."""
    prefix = f"{RUN_MARKER}=".encode()
    top = os.fsencode(str(folder))
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for var in env:
            if var.startswith(prefix):
                value = var[len(prefix):]
                if (value == top or value.startswith(top + b"/")) and _alive(int(entry.name)):
                    found.append(int(entry.name))
                break
    return found


def sweep(folder: Path, grace: float = 10.0) -> list[str]:
    """Stop what ``owned_by(folder)`` finds (SIGTERM, then SIGKILL); returns "pid command" of each."""
    pids = owned_by(folder)
    found = [f"{pid} {_command(pid)}" for pid in pids]
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            _kill(pid, signal.SIGKILL)
    return found


def _command(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    return " ".join(a.decode(errors="replace") for a in argv if a)[:200]


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
