"""Which call a worker thread (or task) is running, and its output sent back to that call's caller.

Imported by the worker runtime and its async side (one copy of the context variable for both:
the runtime runs as ``__main__``). Standard library and ``tether.protocol.wire`` only.

Printed output is coalesced (``Output``): a ``print`` only appends to a buffer, and consecutive
writes of one call to one stream leave as one LOG message. One message and one syscall per write
held a worker to ~6k lines/s, and woke the daemon as often. The buffer is sent

* by a flusher thread, woken by the first write into an empty buffer, 1 ms (``LINGER``) later:
  a line printed before a long computation reaches the caller within milliseconds (up to the
  interpreter's switch interval, 5 ms, more while the printing thread holds the GIL), and a call
  that prints a line and returns sends it with its reply, the flusher out of its way;
* by the writer itself once it holds ``LIMIT`` bytes (memory stays bounded), and when a line it
  ends is one of the first ``BURST`` in ``WINDOW``: sparse lines (the last ones before an OOM
  kill, say) leave at once, while a flood of lines still goes in batches;
* before any other message the worker sends (``_Connection.send`` takes it first): a call's
  output always reaches its caller before its result, error or next generator item;
* on the way out: ``os._exit``, ``atexit``, and when the daemon goes away. A worker killed
  outright (SIGKILL, the OOM killer) loses at most the lines of the last few milliseconds of a
  flood; sparse lines are sent before ``print`` returns.

The worker's log file (the streams replaced, "fallback") gets the same text, in the same order,
in the same batches.
"""

from __future__ import annotations

import atexit
import contextvars
import io
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tether.protocol import wire

current_call: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("tether_call", default=None)

#: bytes of output held before the writer sends them itself (the daemon joins LOGs up to as much)
LIMIT = 64 << 10
#: seconds the flusher waits, once woken by a write, before it sends
LINGER = 0.001
#: the first ``BURST`` lines ended in each ``WINDOW`` seconds leave at once, from the writer: the
#: last lines before a crash or an OOM kill are not lost, and a flood is still sent in batches
WINDOW, BURST = 0.005, 4


class CallContext:
    __slots__ = ("call_id", "stream_logs", "conn")

    def __init__(self, call_id: int, stream_logs: bool, conn: Any) -> None:
        self.call_id, self.stream_logs, self.conn = call_id, stream_logs, conn


class Output:
    """The process's printed output on its way out, as runs: ``[stream, call_id, texts]``, one per
    stretch of consecutive writes of one call (``None``: the log file only) to one stream.

    Any thread writes; ``take`` (under the connection's send lock, so the order of takes is the
    order on the socket) hands the runs over as LOG messages and writes them to the log file.
    """

    def __init__(self) -> None:
        self._fresh()
        self._send: Callable[[float], None] | None = None  # the connection's flush(timeout)
        os.register_at_fork(after_in_child=self._fresh)

    def _fresh(self) -> None:
        """Empty, and no flusher yet (also in a forked child: the parent sends what it held)."""
        self.lock = threading.RLock()  # re-entrant: a finalizer may print while a write holds it
        self.runs: list[list] = []
        self.size = 0
        self._window, self._quick = 0.0, 0  # the current WINDOW's start, lines sent at once in it
        self._last: list | None = None
        self._wake = threading.Lock()  # held while no wake is pending: a write releases it
        self._wake.acquire()
        self._flusher: threading.Thread | None = None

    def attach(self, send: Callable[[float], None]) -> None:
        """Where output goes from now on: ``send(timeout)`` takes it under the socket's lock."""
        self._send = send

    def write(self, stream: CallStream, call_id: int | None, text: str) -> None:
        with self.lock:
            last = self._last
            if last is not None and last[0] is stream and last[1] == call_id:
                last[2].append(text)
                first = False
            else:
                last = self._last = [stream, call_id, [text]]
                self.runs.append(last)
                first = len(self.runs) == 1
            self.size += len(text)
            full = self.size >= LIMIT or (text.endswith("\n") and self._at_once())
            if first:
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_soon, name="tether-output", daemon=True)
                    try:
                        self._flusher.start()
                    except RuntimeError:  # no new thread at interpreter shutdown: send it now
                        self._flusher, full = None, True
                if self._wake.locked():  # (else a wake is pending: the flusher takes this too)
                    self._wake.release()
        if full:
            self.flush()

    def _at_once(self) -> bool:
        """Whether a line just ended is sent now (one of the window's first ``BURST``)."""
        now = time.monotonic()
        if now - self._window > WINDOW:
            self._window, self._quick = now, 0
        self._quick += 1
        return self._quick <= BURST

    def flush(self, timeout: float = -1) -> None:
        """Send (and log) everything written so far, now; ``timeout``: at most that long waiting
        for the socket (on the way out)."""
        if self._send is not None:
            self._send(timeout)
        else:
            self.take()

    def take(self) -> list:
        """The runs written so far as LOG message parts (``wire.encode``), written to the log
        file meanwhile; the buffer is empty after."""
        with self.lock:
            runs, self.runs, self._last, self.size = self.runs, [], None, 0
        parts: list = []
        logged: list[str] = []
        fallback = None
        for stream, call_id, texts in runs:
            text = texts[0] if len(texts) == 1 else "".join(texts)
            if stream._fallback is not fallback:
                _log(fallback, logged)
                fallback, logged = stream._fallback, []
            logged.append(text)
            if call_id is not None:
                parts += wire.encode(wire.LOG, [stream._name, text.encode("utf-8", "replace")], call_id)
        _log(fallback, logged)
        return parts

    def _flush_soon(self) -> None:
        wake = self._wake
        while True:
            wake.acquire()  # a write into an empty buffer; writes from now on wake it again
            # A short wait first: a call that prints a line and returns sends it with its reply
            # meanwhile, and this thread then wants the GIL once, not while the call runs.
            time.sleep(LINGER)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the flusher must outlive any one failure
                pass


def _log(fallback: Any, texts: list[str]) -> None:
    """Write to the worker's log file (a replaced stream); a text its encoding cannot hold is
    written with replacements, and a log that fails does not stop the output sent."""
    if fallback is None or not texts:
        return
    text = "".join(texts)
    try:
        fallback.write(text)
        fallback.flush()
    except UnicodeError:
        try:
            fallback.buffer.write(text.encode(fallback.encoding or "utf-8", "replace"))
            fallback.flush()
        except Exception:  # noqa: BLE001
            pass
    except Exception:  # noqa: BLE001
        pass


#: the worker process's output (one connection per process)
OUTPUT = Output()


class CallStream(io.TextIOBase):
    """sys.stdout/sys.stderr replacement: a write inside a call goes to that call's caller too."""

    def __init__(self, stream_name: bytes, fallback: io.TextIOBase) -> None:
        self._name, self._fallback = stream_name, fallback

    def write(self, text: str) -> int:
        if type(text) is not str:
            if not isinstance(text, str):
                raise TypeError(f"write() argument must be str, not {type(text).__name__}")
            text = str(text)
        if text:
            call = current_call.get()
            OUTPUT.write(self, call.call_id if call is not None and call.stream_logs else None, text)
        return len(text)

    def flush(self) -> None:
        """Nothing to wait for: the flusher thread sends within milliseconds of the first write,
        and every exit path flushes (see the module's docstring)."""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


def install() -> None:
    """Replace sys.stdout and sys.stderr, and flush what is held before the process ends."""
    sys.stdout = CallStream(b"out", sys.stdout)  # type: ignore[assignment]
    sys.stderr = CallStream(b"err", sys.stderr)  # type: ignore[assignment]
    atexit.register(_flush_at_exit)
    exit_now = os._exit

    def _exit(status: int) -> None:  # user code and multiprocessing's children leave this way
        _flush_at_exit()
        exit_now(status)

    os._exit = _exit


def _flush_at_exit() -> None:
    try:
        OUTPUT.flush(timeout=2.0)
    except BaseException:  # noqa: BLE001 - leaving anyway
        pass
