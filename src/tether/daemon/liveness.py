"""Which workers stopped answering: the daemon's view of a stuck worker, for ``cluster.status()``.

The daemon hears from a worker with every message it sends (a log line, a result, a generator
item): ``WorkerProcess._on_message`` stores the time in ``worker.heard``, one monotonic clock read
and one attribute store per message (the only cost on the call path). A call sent to an idle worker
stores it too, so that silence is counted from when the daemon started waiting for an answer.

Silence alone does not make a worker stuck: a long call that prints nothing is silent for as long
as it runs. So while a worker has calls in flight and has said nothing for a while, a ``Watch``
(one asyncio task per worker) pings it: a CONTROL ``ping`` is answered by a thread of its own in
the worker, whatever its calls are doing, within milliseconds. The answer is a message, so a live
worker is never silent for much longer than a ping period. One that does not answer is stopped
(SIGSTOP, a debugger), deadlocked with the GIL held, or too starved to run: a worker with calls in
flight and no message for longer than ``TETHER_WORKER_STUCK_SECONDS`` is reported, in its entry of
``/_tether/status``::

    "envs": {"train": {"worker": {"pid": 1234, ..., "unresponsive":
                                  {"seconds": 42.0, "calls": 3, "pid": 1234}}}}

``TETHER_WORKER_STUCK_SECONDS`` (default 30) is read by the daemon when a worker starts. Why 30:
a live worker answers a ping in milliseconds, so the threshold only has to outlast what can hold
a whole Python process still without it being stuck: a C extension holding the GIL (unpickling a
multi-GB argument, a big regex, importing a heavy package), a major GC pause, a machine swapping
under load. Those last seconds; 30 s stays clear of them and still names a stuck worker within
the minute. Tests set a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from tether.protocol import wire

if TYPE_CHECKING:
    from tether.daemon.workers import WorkerProcess

log = logging.getLogger("tether.daemon")

STUCK_ENV = "TETHER_WORKER_STUCK_SECONDS"
DEFAULT_STUCK_SECONDS = 30.0
clock = time.monotonic  # what ``worker.heard`` is measured with
_PING = wire.json_frame({"op": "ping", "stream_logs": False})


def stuck_seconds() -> float:
    """``TETHER_WORKER_STUCK_SECONDS``, or the default when unset or not a positive number."""
    raw = os.environ.get(STUCK_ENV)
    if not raw:
        return DEFAULT_STUCK_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        log.warning("%s=%r is not a number of seconds above 0: using %s", STUCK_ENV, raw,
                    DEFAULT_STUCK_SECONDS)
        return DEFAULT_STUCK_SECONDS
    return value


class Watch:
    """Pings one worker while it is busy and quiet; says whether it is unresponsive.

    Started when the worker is attached, on the daemon's loop; ends when the worker dies.
    """

    def __init__(self, worker: WorkerProcess, stuck: float | None = None) -> None:
        self.worker = worker
        self.stuck = stuck if stuck is not None else stuck_seconds()
        # ping a worker quiet for a quarter of the threshold: a live one is heard long before it
        self.every = min(5.0, self.stuck / 4)
        self.probe: int | None = None  # the id of a ping not answered yet
        self.reported = False
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        worker = self.worker
        dead = asyncio.ensure_future(worker.died.wait())
        try:
            while True:
                done, _ = await asyncio.wait({dead}, timeout=self.every)
                if done:
                    return
                self._tick()
        finally:
            dead.cancel()

    def _tick(self) -> None:
        worker = self.worker
        pending = worker._pending  # noqa: SLF001 - the calls in flight, by id on its connection
        if self.probe is not None and self.probe in pending:
            self._log_change()
            return  # still unanswered: no second ping
        self.probe = None
        if pending and clock() - worker.heard >= self.every:
            try:
                self.probe = worker.request_with_id(wire.CONTROL, [_PING])[0]
            except RuntimeError:
                return  # not running any more: its death is reported by itself
        self._log_change()

    def calls(self) -> int:
        """Calls (and control requests) in flight on the worker, not counting a ping."""
        pending = self.worker._pending  # noqa: SLF001
        return len(pending) - (self.probe is not None and self.probe in pending)

    def report(self) -> dict[str, Any] | None:
        """``{"seconds", "calls", "pid"}`` when the worker has calls in flight and has not been
        heard from for longer than the threshold; else None."""
        calls = self.calls()
        silent = clock() - self.worker.heard
        if not calls or silent <= self.stuck or not self.worker.alive:
            return None
        return {"seconds": round(silent, 1), "calls": calls, "pid": self.worker.pid}

    def _log_change(self) -> None:
        """One line in the daemon's log when a worker becomes unresponsive, and when it answers again."""
        report = self.report()
        if (report is not None) == self.reported:
            return
        self.reported = report is not None
        worker = self.worker
        if report is not None:
            log.warning("the worker of env %r (pid %s) has not answered for %.0f s with %d call(s) in "
                        "flight (threshold %s=%g)", worker.spec.name, worker.pid, report["seconds"],
                        report["calls"], STUCK_ENV, self.stuck)
        else:
            log.info("the worker of env %r (pid %s) answers again", worker.spec.name, worker.pid)


def report(worker: WorkerProcess) -> dict[str, Any]:
    """What ``WorkerProcess.info()`` adds: ``{"unresponsive": {...}}`` for a stuck worker."""
    watch = worker.watch
    found = watch.report() if watch is not None else None
    return {"unresponsive": found} if found is not None else {}
