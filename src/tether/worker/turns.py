"""The worker's call threads take turns reading its socket (leader/followers).

One thread at a time reads the next message. When it is a sync call, that same thread runs it,
and the next waiting thread becomes the reader: the call never crosses a thread boundary, which
on the 2-core machines measured here saved ~40% of a worker's CPU per call against a reader
thread that hands each call to a thread pool.

Someone must always be reading (a CANCEL has to get through while every thread is busy), so a
reader that would be the last idle thread starts a new one, up to ``max_threads``; past that it
puts the call on a backlog that the next thread to finish a call runs.

Standard library only (imported by worker processes).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

Job = Callable[[], None]


class TakeTurns:
    """``read()`` returns the next message (None at the end); ``route(msg)`` handles it and
    returns a job to run in a call thread, or None when the message was dealt with."""

    def __init__(self, read: Callable[[], object | None], route: Callable[[object], Job | None],
                 on_end: Callable[[], None], max_threads: int, name: str = "tether-call") -> None:
        self._read, self._route, self._on_end = read, route, on_end
        self.max_threads = max(2, max_threads)
        self.name = name
        self._read_lock = threading.Lock()
        self._state = threading.Lock()
        self._backlog: deque[Job] = deque()
        self.threads = 0
        self.idle = 0  # threads not running a job: reading, or waiting for their turn

    def start(self) -> None:
        with self._state:
            self._spawn()

    def _spawn(self) -> None:  # with self._state held
        self.threads += 1
        self.idle += 1
        threading.Thread(target=self._run, name=f"{self.name}-{self.threads}", daemon=True).start()

    def _run(self) -> None:
        while True:
            job = self._next_job()
            while job is not None:
                job = _run_job(job)
            with self._state:
                self.idle += 1

    def _next_job(self) -> Job | None:
        """A job for this thread (it counts as busy from here on); reads until one comes."""
        with self._state:
            if self._backlog:
                self.idle -= 1
                return self._backlog.popleft()
        with self._read_lock:
            while True:
                msg = self._read()
                if msg is None:
                    self._on_end()
                    return None
                job = self._route(msg)
                if job is None:
                    continue  # dealt with while reading (a control message, a cancel...)
                with self._state:
                    if self.idle > 1 or self.threads < self.max_threads:
                        self.idle -= 1
                        if self.idle == 0:
                            self._spawn()  # the next reader
                        return job
                    self._backlog.append(job)  # every thread is busy: keep reading


def _run_job(job: Job) -> Job | None:
    """Run a job; a job may hand back a follow-up (the next call its gate lets through)."""
    return job()
