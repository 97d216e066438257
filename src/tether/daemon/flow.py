"""What one call may hold in the daemon while its caller reads slower than the call produces.

Every reply of a worker lands on its call's ``CallQueue``, and the call's HTTP response takes
them off as fast as the caller reads (uvicorn's ``send`` waits while the socket to the caller is
full). Without a bound, a caller that stops reading lets that queue grow without end: measured,
a fast generator grew the daemon by 3 GB in 8 s. Two kinds of messages can come in unbounded
numbers, and each has its policy (docs/wire.md, "Flow control"):

* generator items (ITEM): a **credit window**. The worker announces its window in the STREAM
  message and sends items while what it sent minus what the daemon credited back is under it;
  the daemon credits (CREDIT, kind 10) what the response took off the queue, in batches of a
  quarter window. So a generator pauses while its caller does not read, and only that call
  pauses: every call of an env shares one socket, which must never stop.
* printed output (LOG): **dropped with a counter** once a call's queued output passes
  ``TETHER_OUTPUT_BUFFER`` bytes, until the caller has caught up with half of it; the caller
  then gets one line, where the gap is, saying how many lines it lost and where they all are (the
  worker's log keeps every line). Pausing the printing thread instead would make a call's
  progress depend on how fast its caller drains logs, and an ``async def`` method prints from
  the worker's event loop: pausing it would stall every async call of the env.

A message's cost is its bytes plus what holding it costs (``wire.flow_cost``), so the bounds
hold for tiny messages too. Consecutive queued LOGs of one stream are handed out joined (one
write to the caller instead of one per line): a backlog drains faster than it formed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tether.daemon.history import CallOutput
from tether.protocol import wire

#: bytes of printed output one call may queue before the rest is dropped (counted)
OUTPUT_BUFFER = wire.size_knob("TETHER_OUTPUT_BUFFER", 4 << 20)
#: bytes a head daemon holds of one forwarded call's answer before it stops reading the node
FORWARD_BUFFER = wire.size_knob("TETHER_FORWARD_BUFFER", 8 << 20)
_JOIN = 1 << 16  # queued LOGs are joined up to this many bytes
_NL = 10  # b"\n"[0]


class _Gap:
    """Where a call's output was dropped: the line the caller gets there, counted until then."""

    __slots__ = ("call_id", "lines", "nbytes", "where")

    def __init__(self, call_id: int, where: str) -> None:
        self.call_id, self.where = call_id, where
        self.lines = self.nbytes = 0

    def add(self, text: memoryview, starts_line: bool) -> None:
        """Count a dropped text: its bytes, and the lines that start in it (a line whose start
        the caller got is not lost: the gap ends it)."""
        n = text.nbytes
        if n:
            self.nbytes += n
            self.lines += starts_line + text.tobytes().count(b"\n") - (text[n - 1] == _NL)

    def message(self) -> wire.Message:
        lines = f"{self.lines:,} lines ({self.nbytes:,} bytes)" if self.lines else f"{self.nbytes:,} bytes"
        text = (f"[tether] {lines} of output were dropped: the caller read slower than the call "
                f"printed. {self.where}".rstrip() + "\n")
        return wire.Message(wire.LOG, self.call_id, [memoryview(b"err"), memoryview(text.encode())])


class CallQueue(asyncio.Queue):
    """The messages of one call on their way to its caller, within the bounds above.

    ``worker`` (a ``WorkerProcess``: ``credit(call_id, amount)``, ``log_path``) and ``call_id``
    say where CREDIT goes and which log keeps the output dropped here.
    """

    # Defaults as class attributes: a queue is made per call, and most calls change none of them.
    output_limit = OUTPUT_BUFFER
    output = 0  # cost of the LOGs queued
    _gap: _Gap | None = None  # while dropping: the gap at the queue's tail
    _open: list[bool] | None = None  # the call's stdout, stderr: in the middle of a line
    _batch = 0  # CREDIT is sent in batches of this (0: no window announced)
    _owed = 0
    record: Any = None  # a recorded call (calls.CallRecord): its output is kept (history.py)
    silent = False  # the caller does not read output (JSON, stream-logs 0): kept for the record only

    def __init__(self, worker: Any = None, call_id: int = 0, output_buffer: int | None = None) -> None:
        super().__init__()
        self.worker, self.call_id = worker, call_id
        if output_buffer is not None:
            self.output_limit = output_buffer

    # asyncio.Queue's hooks (what PriorityQueue overrides): put_nowait/get_nowait call them.

    def _put(self, item: Any) -> None:
        if type(item) is wire.Message:
            kind = item.kind
            if kind == wire.LOG:
                if self.record is not None:
                    self._keep(item)
                if self.silent:
                    return
                if self.output_limit:
                    self._put_log(item)
                    return
            if kind == wire.STREAM and item.frames:
                self._announce(item)
        self._queue.append(item)

    def _get(self) -> Any:
        item = self._queue.popleft()
        if type(item) is wire.Message:
            kind = item.kind
            if kind == wire.ITEM:
                if self._batch:
                    self._owed += wire.flow_cost(item.frames)
                    if self._owed >= self._batch:
                        self.worker.credit(self.call_id, self._owed)
                        self._owed = 0
            elif kind == wire.LOG and self.output_limit:
                self.output -= wire.flow_cost(item.frames)
                item = self._join(item)
        elif type(item) is _Gap:
            if self._gap is item:
                self._gap = None
            return item.message()
        return item

    def _keep(self, msg: wire.Message) -> None:
        """Output kept for the call's record and its followers (the first line makes its buffer:
        a call that prints nothing costs nothing)."""
        out = self.record.output
        if out is None:
            out = self.record.output = CallOutput()
        out.add(msg)

    # -- the policies --------------------------------------------------------------------------

    def _announce(self, msg: wire.Message) -> None:
        """A STREAM message says the worker's window: credit in quarters of it."""
        if self.worker is None:
            return
        try:
            window = int(msg.json(0).get("window") or 0)
        except (ValueError, AttributeError, TypeError):
            window = 0
        if window > 0:
            self._batch = max(1, window // 4)

    def _put_log(self, msg: wire.Message) -> None:
        """Queue a LOG, or drop it into the gap. A gap starts when the queued output would pass
        the limit, and ends once the caller took half of it back, at the start of a line (or
        when it took all of it: output that never ends a line, like a progress bar)."""
        frames = msg.frames
        err = frames[0] == b"err"
        text = frames[1]
        is_open = self._open
        if is_open is None:
            is_open = self._open = [False, False]
        starts_line = not is_open[err]
        if text.nbytes:
            is_open[err] = text[text.nbytes - 1] != _NL
        cost = wire.flow_cost(frames)
        gap, output = self._gap, self.output
        if gap is not None:
            if output and not (starts_line and output <= self.output_limit // 2):
                gap.add(text, starts_line)
                return
            self._gap = None  # caught up: output flows again, after the gap's line
        elif output and output + cost > self.output_limit:
            if not starts_line:  # the caller has the start of this line: end it
                end = wire.Message(wire.LOG, msg.call_id, [frames[0], memoryview(b"\n")])
                self.output += wire.flow_cost(end.frames)
                self._queue.append(end)
            log_path = getattr(self.worker, "log_path", None)
            where = f"The worker log on the cluster has every line: {log_path}" if log_path else ""
            gap = self._gap = _Gap(msg.call_id, where)
            self._queue.append(gap)  # the caller learns of the gap where it is
            gap.add(text, starts_line)
            return
        self.output += cost
        self._queue.append(msg)

    def _join(self, msg: wire.Message) -> wire.Message:
        """This LOG and the queued LOGs of the same stream right after it, as one message."""
        queue = self._queue
        if not queue:
            return msg
        stream, texts, size = msg.frames[0], [msg.frames[1]], msg.frames[1].nbytes
        while queue and size < _JOIN:
            nxt = queue[0]
            if type(nxt) is not wire.Message or nxt.kind != wire.LOG or nxt.frames[0] != stream:
                break
            queue.popleft()
            self.output -= wire.flow_cost(nxt.frames)
            texts.append(nxt.frames[1])
            size += nxt.frames[1].nbytes
        if len(texts) == 1:
            return msg
        return wire.Message(wire.LOG, msg.call_id, [stream, memoryview(b"".join(texts))])


class ForwardQueue(CallQueue):
    """A call forwarded to another node: the head stops reading the node's answer while this
    holds more than ``FORWARD_BUFFER`` bytes, so a slow caller slows the node (whose own queue
    applies the policies above) instead of filling the head."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(output_buffer=0)
        self.limit = FORWARD_BUFFER if limit is None else limit
        self.held = 0
        self._room: asyncio.Event | None = None

    def _put(self, item: Any) -> None:
        if type(item) is wire.Message:
            self.held += wire.flow_cost(item.frames)
        self._queue.append(item)

    def _get(self) -> Any:
        item = self._queue.popleft()
        if type(item) is wire.Message:
            self.held -= wire.flow_cost(item.frames)
            if self._room is not None and self.held <= self.limit:
                self._room.set()
        return item

    async def room(self) -> None:
        """Returns once the queue holds at most ``limit`` bytes."""
        while self.held > self.limit:
            self._room = asyncio.Event()
            await self._room.wait()
        self._room = None
