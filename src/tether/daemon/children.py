"""The daemon's children die with it, and before it: workers and ``run_bash`` commands never
outlive a daemon killed with SIGKILL (before, a ``sleep 300`` started by ``run_bash`` ran on under
init), and the kernel's OOM killer takes them first (``OOM_SCORE_ADJ``).

Two layers, both Linux-only and silently absent elsewhere:

* ``preexec()``: the child asks the kernel for SIGKILL when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``). The kernel sends it when the *thread* that forked the child ends,
  so it is only used from the daemon's main thread (its event loop, where children are spawned);
* the reaper (``daemon/reaper.py``): a small process that kills the children's whole process
  groups (their own children too) when the daemon is gone. ``watch(pgid)`` / ``unwatch(pgid)``
  tell it which groups are live; a command that ended is unwatched, so what it started in the
  background on purpose (``nohup server &``) is left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("tether.daemon")

PR_SET_PDEATHSIG = 1

#: every child's ``oom_score_adj`` (the daemon keeps its own): on a machine, or in a memory cgroup,
#: that runs out of memory, the kernel kills a worker or a command before the daemon, which then
#: reports the death and serves on. Raising a score needs no privilege; lowering one does, so
#: the daemon cannot protect itself below 0 (docs/daemon.md, "Out of memory").
OOM_SCORE_ADJ = 500


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl


_prctl = _load_prctl()


def preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with this process and go first when memory runs
    out, or None where it cannot be had (not Linux, no prctl, not the main thread)."""
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def die_with_parent() -> None:  # runs in the child, between fork and exec: no locks, no logging
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: go now
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(fd, b"%d" % OOM_SCORE_ADJ)
            finally:
                os.close(fd)
        except OSError:
            pass

    return die_with_parent


class Reaper:
    """The daemon's end of the reaper process (see the module docstring)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._early: list[bytes] | None = []  # lines sent before start (then None)

    def start(self) -> None:
        """Start it (the daemon does once it serves: its start-up is not slowed down); groups
        watched before are sent then (meanwhile PDEATHSIG covers those direct children)."""
        if self.proc is not None or not hasattr(os, "killpg"):
            return
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", script], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                start_new_session=True)  # a signal to the daemon's group does not reach it
        except OSError as exc:
            log.warning("no reaper for the daemon's children (%s): they may outlive a killed daemon", exc)
            return
        early, self._early = self._early or [], None
        for line in early:
            self._send(line)

    def watch(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid)

    def unwatch(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    def _send(self, line: bytes) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None:
            if self._early is not None and len(self._early) < 10_000:
                self._early.append(line)
            return
        with self._lock:
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except (OSError, ValueError) as exc:
                self.proc = None
                log.warning("the reaper of the daemon's children is gone (%s)", exc)


REAPER = Reaper()  # started by the daemon once it serves; lines sent before wait for it
watch, unwatch = REAPER.watch, REAPER.unwatch
