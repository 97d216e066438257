"""Code the restart tests deploy (by import path, like a user's project code)."""

from __future__ import annotations

import os
import signal
import subprocess


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def start_sleeper(seconds: int = 300) -> int:
    """A child of the worker that would outlive it (the pid)."""
    return subprocess.Popen(["sleep", str(seconds)]).pid


class Tally:
    """State held in memory only: ``count`` starts at ``start`` in a freshly made instance."""

    def __init__(self, start: int = 0):
        self.count = start

    def add(self, n: int = 1) -> int:
        self.count += n
        return self.count

    def pid(self) -> int:
        return os.getpid()

    def kill_worker(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class Reader:
    """Its constructor calls another object of the cluster (made again before it, after a restart)."""

    def __init__(self, cluster: str, key: str):
        import tether

        self.value = tether.cluster(name=cluster, launcher="local").get(key)

    def read(self):
        return self.value
