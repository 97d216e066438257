"""A streaming call's credit window, on the worker's side (docs/wire.md, "Flow control").

A generator sends items while what it sent minus what the daemon credited back (CREDIT: the
call's caller took that much) is under ``TETHER_STREAM_WINDOW`` bytes; then it waits. Only that
call waits: the socket to the daemon, shared by every call of the env, keeps flowing. An item is
counted once sent, so one item bigger than the window still goes through, alone.

The window is announced to the daemon in the call's STREAM message, so the two sides always agree
on it. CREDITs are read by the worker's reader thread; the waiting side is a call thread (a sync
generator) or the event loop (an async one).

Standard library only (imported by worker processes).
"""

from __future__ import annotations

import threading
from typing import Any

from tether.protocol import wire

#: bytes (as ``wire.flow_cost`` counts them) a generator may send ahead of its caller
WINDOW = wire.size_knob("TETHER_STREAM_WINDOW", 8 << 20)


class Window:
    """For a sync generator: ``acquire`` blocks its thread while the window is full.

    ``sent`` is written only by the generator's thread and ``granted`` only by the reader thread
    (one at a time), so the common case, room in the window, takes no lock (it runs per item)."""

    __slots__ = ("size", "sent", "granted", "cancelled", "waiting", "_cond")

    def __init__(self, size: int = WINDOW) -> None:
        self.size = max(1, size)
        self.sent = self.granted = 0
        self.cancelled = self.waiting = False
        self._cond = threading.Condition(threading.Lock())

    def acquire(self, cost: int) -> bool:
        """Count ``cost`` as sent, once the window has room; False if the call was cancelled."""
        if self.sent - self.granted >= self.size or self.cancelled:
            with self._cond:
                self.waiting = True  # before the check: a grant after it sees it and notifies
                while self.sent - self.granted >= self.size and not self.cancelled:
                    self._cond.wait()
                self.waiting = False
            if self.cancelled:
                return False
        self.sent += cost
        return True

    def grant(self, amount: int) -> None:
        self.granted += amount
        if self.waiting:
            with self._cond:
                self._cond.notify()

    def cancel(self) -> bool:
        """Wake a waiting ``acquire`` (it returns False); True if one was waiting."""
        with self._cond:
            self.cancelled = True
            self._cond.notify()
            return self.waiting


class AsyncWindow:
    """For an async generator, on the worker's event loop; granted from the reader thread."""

    __slots__ = ("size", "sent", "granted", "_loop", "_lock", "_waiter")

    def __init__(self, loop: Any, size: int = WINDOW) -> None:
        self.size = max(1, size)
        self.sent = self.granted = 0
        self._loop, self._lock, self._waiter = loop, threading.Lock(), None

    async def acquire(self, cost: int) -> None:
        """Count ``cost`` as sent, once the window has room (a cancelled task stops waiting)."""
        while self.sent - self.granted >= self.size:
            with self._lock:
                if self.sent - self.granted < self.size:
                    break
                waiter = self._waiter = self._loop.create_future()
            await waiter
        self.sent += cost

    def grant(self, amount: int) -> None:
        with self._lock:
            self.granted += amount
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    def cancel(self) -> bool:
        return False  # an async call is stopped by cancelling its task


def _wake(waiter) -> None:
    if not waiter.done():
        waiter.set_result(None)
