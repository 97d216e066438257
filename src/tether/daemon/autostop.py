"""Autostop: the daemon stops itself after ``autostop_mins`` minutes idle (-1: never).

Idle means no HTTP request in flight and none received for that long; the dashboard's requests
(without the bearer token: its session cookie, its pages) do not count (``watching``). ``IdleTracker`` wraps the
daemon's ASGI app from outside (nothing in the routes knows about it): two counters per request.
A watcher thread compares the idle time with the setting and asks the server to exit, which is
the ordinary graceful shutdown (workers stopped, ``daemon.json`` removed).

The setting lives in ``<state dir>/autostop.json`` (``tether.state.write_autostop``), written at
start from ``--autostop-mins`` and re-read when it changes, so a caller can change it on a running
daemon (``cluster.autostop_mins = 30``) by rewriting that file. Fractional minutes are fine (tests use
a few seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tether import state

log = logging.getLogger("tether.daemon")


class IdleTracker:
    """Pure ASGI middleware counting requests in flight and the time of the last one."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.in_flight = 0
        self.last_activity = time.monotonic()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        before = self.last_activity
        self.in_flight += 1
        self.last_activity = now = time.monotonic()
        scope["tether.idle"] = (self, before, now)
        try:
            await self.app(scope, receive, send)
        finally:
            if "tether.watching" not in scope:
                self.in_flight -= 1
                self.last_activity = time.monotonic()

    @staticmethod
    def watching(scope) -> None:
        """The request only watches (the dashboard's session, its login page, a refused request):
        it is not activity, or an open dashboard would keep a cluster up forever."""
        tracker, before, stamp = scope.get("tether.idle") or (None, 0.0, 0.0)
        if tracker is None or "tether.watching" in scope:
            return
        scope["tether.watching"] = True
        tracker.in_flight -= 1
        if tracker.last_activity == stamp:  # nothing else happened since it came
            tracker.last_activity = before

    def idle_seconds(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last_activity


class Autostop:
    """Watches an ``IdleTracker`` and calls ``stop()`` once idle for the configured time."""

    def __init__(self, tracker: IdleTracker, state_dir: Path, stop: Callable[[], None],
                 info: dict[str, Any] | None = None) -> None:
        self.tracker, self.state_dir, self.stop, self.info = tracker, state_dir, stop, info
        self.minutes = state.read_autostop(state_dir)
        self._mtime: int | None = None
        self._thread = threading.Thread(target=self._watch, name="tether-autostop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _refresh(self) -> None:
        try:
            mtime = (self.state_dir / state.AUTOSTOP).stat().st_mtime_ns
        except OSError:
            return
        if mtime != self._mtime:
            self._mtime = mtime
            minutes = state.read_autostop(self.state_dir)
            if minutes != self.minutes:
                log.info("autostop set to %s minutes", minutes)
            self.minutes = minutes
            if self.info is not None:
                self.info["autostop_mins"] = minutes

    def _watch(self) -> None:
        while True:
            self._refresh()
            seconds = self.minutes * 60
            if self.minutes >= 0 and self.tracker.idle_seconds() >= seconds:
                log.info("idle for %.1f s (autostop after %s minutes): stopping", self.tracker.idle_seconds(), self.minutes)
                self.stop()
                return
            # off (-1): the setting file is still looked at every second (a stat), so an autostop
            # set on a running daemon counts from when it was set, not up to 5 s later
            time.sleep(min(5.0, max(0.2, seconds / 10)) if self.minutes >= 0 else 1.0)
