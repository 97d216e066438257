"""The worker's call threads take turns reading its socket (leader/followers).

One thread at a time reads the next message. When it is a sync call, that same thread runs it,
and the next waiting thread becomes the reader: the call never crosses a thread boundary, which
on the 2-core machines measured here saved ~40% of a worker's CPU per call against a reader
thread that hands each call to a thread pool.

Someone must always be reading (a CANCEL has to get through while every thread is busy), so a
reader that would be the last idle thread starts a new one, up to ``max_threads``; past that it
puts the call on a backlog that the next thread to finish a call runs.

How the idle threads wait (``Readiness``, Linux): all of them in ``epoll_wait`` on one epoll set
in which the socket is registered one-shot, so new bytes wake exactly one of them, and nobody is
woken when a reader starts running the call it read. A plain lock handed from the reader to the
next thread instead woke that thread on every call, which then fought the caller's thread for the
GIL while the call ran: measured, ~4 context switches and ~5 futex calls per no-op call in the
worker, against 1 and 0 this way. Where epoll is missing, the lock hand-over is used.

Standard library only (imported by worker processes).
"""

from __future__ import annotations

import os
import select
import threading
from collections import deque
from collections.abc import Callable

Job = Callable[[], None]
#: what ``read()`` returns (with a ``Readiness``) when no whole message is there yet
AGAIN = object()


class Readiness:
    """Idle threads wait here for the socket (fd ``fd``) to have bytes: one thread is woken per
    arming. The thread that was woken reads until nothing is left (``AGAIN``), then ``rearm()``s;
    ``kick()`` wakes one thread for messages already read but not yet taken."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.kick_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.epoll = select.epoll()
        self._mask = select.EPOLLIN | select.EPOLLONESHOT
        self.epoll.register(fd, self._mask)
        self.epoll.register(self.kick_fd, self._mask)

    @staticmethod
    def available() -> bool:
        return hasattr(select, "epoll") and hasattr(os, "eventfd")

    def wait(self) -> None:
        """Block until this thread is the one woken (the socket, or a kick)."""
        while True:
            try:
                events = self.epoll.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self.kick_fd:
                    try:
                        os.eventfd_read(self.kick_fd)
                    except BlockingIOError:
                        pass
                    self.epoll.modify(self.kick_fd, self._mask)
            if events:
                return

    def rearm(self) -> None:
        """Let the socket wake a thread again (at once, if bytes are already waiting)."""
        self.epoll.modify(self.fd, self._mask)

    def kick(self) -> None:
        os.eventfd_write(self.kick_fd, 1)


class TakeTurns:
    """``read()`` returns the next message (None at the end); ``route(msg)`` handles it and
    returns a job to run in a call thread, or None when the message was dealt with.

    With ``readiness``, ``read()`` must not block: it returns ``AGAIN`` when no whole message is
    there, and ``pending()`` says whether messages already read wait to be taken."""

    def __init__(self, read: Callable[[], object | None], route: Callable[[object], Job | None],
                 on_end: Callable[[], None], max_threads: int, name: str = "tether-call",
                 readiness: Readiness | None = None, pending: Callable[[], bool] | None = None) -> None:
        self._read, self._route, self._on_end = read, route, on_end
        self.max_threads = max(2, max_threads)
        self.name = name
        self._readiness, self._pending = readiness, pending
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
        next_job = self._next_job if self._readiness is None else self._next_job_woken
        while True:
            job = next_job()
            while job is not None:
                job = _run_job(job)
            with self._state:
                self.idle += 1

    def _take_backlog(self) -> Job | None:
        with self._state:
            if self._backlog:
                self.idle -= 1
                return self._backlog.popleft()
        return None

    def _keep(self, job: Job) -> bool:
        """Whether the reader runs ``job`` itself (else it went to the backlog: every thread is
        busy and no more may start). Starts the next reader when this one was the last idle."""
        with self._state:
            if self.idle > 1 or self.threads < self.max_threads:
                self.idle -= 1
                if self.idle == 0:
                    self._spawn()  # the next reader
                return True
            self._backlog.append(job)
            return False

    def _next_job(self) -> Job | None:
        """A job for this thread (it counts as busy from here on); reads until one comes."""
        job = self._take_backlog()
        if job is not None:
            return job
        with self._read_lock:
            while True:
                msg = self._read()
                if msg is None:
                    self._on_end()
                    return None
                job = self._route(msg)
                if job is None:
                    continue  # dealt with while reading (a control message, a cancel...)
                if self._keep(job):
                    return job

    def _next_job_woken(self) -> Job | None:
        """``_next_job`` with a ``Readiness``: wait to be the thread woken, then read what is there."""
        readiness = self._readiness
        job = self._take_backlog()  # only on the way in: a reader that queued a call keeps reading
        if job is not None:
            return job
        while True:
            readiness.wait()
            job = None
            with self._read_lock:
                while True:
                    msg = self._read()
                    if msg is AGAIN:
                        break
                    if msg is None:
                        self._on_end()
                        return None
                    job = self._route(msg)
                    if job is not None:
                        if self._keep(job):
                            break
                        job = None
                more = self._pending()
            readiness.rearm()
            if job is not None:
                if more:
                    readiness.kick()  # messages read with this one: another thread takes them
                return job


def _run_job(job: Job) -> Job | None:
    """Run a job; a job may hand back a follow-up (the next call its gate lets through)."""
    return job()
