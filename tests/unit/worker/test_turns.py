"""The worker's call threads taking turns at its socket (``tether.worker.turns``), woken one at a
time by epoll: a call that blocks never keeps the next message from being read, messages that
arrive together each get a thread, and the end of the socket ends the worker."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque

import pytest

from tether.worker.turns import AGAIN, Readiness, TakeTurns

pytestmark = pytest.mark.skipif(not Readiness.available(), reason="epoll and eventfd are Linux-only")


def _none(*_) -> None:
    """A job's end: no follow-up job."""


def _serve(sock: socket.socket, route, max_threads: int = 8) -> threading.Event:
    """Lines of the socket as messages, read the way the worker reads them (non-blocking)."""
    buf, ready, ended = bytearray(), deque(), threading.Event()

    def read():
        while not ready:
            try:
                data = sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return AGAIN
            if not data:
                return None
            buf.extend(data)
            *lines, rest = buf.split(b"\n")
            buf[:] = rest
            ready.extend(bytes(line) for line in lines)
        return ready.popleft()

    TakeTurns(read, route, ended.set, max_threads, readiness=Readiness(sock.fileno()),
              pending=lambda: bool(ready)).start()
    return ended


def test_a_blocked_call_does_not_stop_the_next_from_being_read():
    ours, theirs = socket.socketpair()
    release, second = threading.Event(), threading.Event()

    def route(msg):
        if msg == b"block":
            return lambda: _none(release.wait(10))
        if msg == b"go":
            return lambda: _none(second.set(), release.set())
        return None

    ended = _serve(ours, route)
    theirs.sendall(b"block\n")
    theirs.sendall(b"go\n")
    assert second.wait(10) and release.is_set()
    theirs.close()
    assert ended.wait(10)


def test_messages_read_together_each_get_a_thread():
    ours, theirs = socket.socketpair()
    n, barrier = 5, threading.Barrier(5, timeout=10)
    done = []

    def route(msg):
        return lambda: _none(barrier.wait(), done.append(msg))  # all must run at once

    _serve(ours, route)
    theirs.sendall(b"".join(b"call %d\n" % i for i in range(n)))  # one write: one read
    deadline = time.monotonic() + 10
    while len(done) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(done) == [b"call %d" % i for i in range(n)]
    theirs.close()


def test_messages_handled_while_reading_wake_nobody_else():
    ours, theirs = socket.socketpair()
    seen, called = [], threading.Event()

    def route(msg):
        seen.append(msg)
        if msg == b"call":
            return called.set
        return None  # dealt with by the reader (a cancel, a credit)

    _serve(ours, route)
    theirs.sendall(b"credit\ncancel\ncall\n")
    assert called.wait(10) and seen == [b"credit", b"cancel", b"call"]
    theirs.close()


def test_with_every_thread_busy_the_reader_queues_calls_and_keeps_reading():
    ours, theirs = socket.socketpair()
    release, ran = threading.Event(), []

    def route(msg):
        if msg == b"release":  # dealt with while reading, as a cancel is
            release.set()
            return None
        return lambda: _none(release.wait(30), ran.append(msg))

    _serve(ours, route, max_threads=2)
    theirs.sendall(b"first\n")  # one thread runs it (blocked), the other reads
    time.sleep(0.2)
    theirs.sendall(b"second\n")  # no thread is free: queued, and the reader keeps reading
    time.sleep(0.2)
    theirs.sendall(b"release\n")  # read by the thread that queued "second", not a thread running it
    deadline = time.monotonic() + 10
    while len(ran) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(ran) == [b"first", b"second"] and release.is_set()
    theirs.close()
