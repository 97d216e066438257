"""Every call has an id; the daemon keeps results for a while so a caller can fetch them later.

A caller whose connection drops mid-call gets its result with ``cluster.result(call_id)`` (``GET
/_tether/calls/{id}``). Results are kept within bounds of count, age and bytes (configurable with
``TETHER_RESULTS_MAX_COUNT``, ``TETHER_RESULTS_MAX_AGE`` seconds, ``TETHER_RESULTS_MAX_BYTES``);
the ids of dropped results are remembered (bounded too), so a late fetch says "expired" rather
than "unknown".
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from typing import Any

from tether.protocol import shm, wire


class UnknownCall(LookupError):
    pass


class ExpiredCall(LookupError):
    pass


class CallRecord:
    __slots__ = ("id", "name", "method", "worker", "ipc_id", "started", "finished", "result", "done",
                 "streaming", "size", "node", "upstream", "caller", "output")

    def __init__(self, call_id: str, name: str, method: str, worker: Any, ipc_id: int,
                 node: int = 0, upstream: Any = None) -> None:
        self.id, self.name, self.method = call_id, name, method
        self.worker, self.ipc_id = worker, ipc_id
        self.node, self.upstream = node, upstream  # a call forwarded to another node
        self.started, self.finished = time.time(), None
        self.result: wire.Message | None = None
        self.done = asyncio.Event()
        self.streaming = False  # a generator: its items went to the caller, only the end is kept
        self.size = 0
        self.caller: bytes | None = None  # x-tether-caller: user@host:pid (daemon/history.py)
        self.output: Any = None  # a history.CallOutput: what the call printed, for its record

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "method": self.method, "started": self.started,
                "finished": self.finished, "done": self.done.is_set()}


class CallTable:
    """Calls in flight, and the results of finished ones, oldest first (eviction is O(1) per
    call: this runs on every call)."""

    def __init__(self, max_count: int | None = None, max_age: float | None = None,
                 max_bytes: int | None = None, on_drop=None) -> None:
        """``on_drop(msg)`` runs when a kept result is forgotten (to free its shared memory)."""
        self.on_drop = on_drop
        env = os.environ.get
        self.max_count = max_count or int(env("TETHER_RESULTS_MAX_COUNT", "1000"))
        self.max_age = max_age or float(env("TETHER_RESULTS_MAX_AGE", "600"))
        self.max_bytes = max_bytes or int(env("TETHER_RESULTS_MAX_BYTES", str(1 << 30)))
        self.running: dict[str, CallRecord] = {}
        self.finished: OrderedDict[str, CallRecord] = OrderedDict()
        self.expired: OrderedDict[str, float] = OrderedDict()
        self.bytes = 0

    def start(self, call_id: str, name: str, method: str, worker: Any, ipc_id: int,
              node: int = 0, upstream: Any = None) -> CallRecord:
        record = CallRecord(call_id, name, method, worker, ipc_id, node, upstream)
        old = self.finished.pop(call_id, None)  # a caller reusing an id: the new call wins
        if old is not None:
            self._drop(old)
        self.running[call_id] = record
        return record

    def finish(self, record: CallRecord, msg: wire.Message) -> None:
        if record.done.is_set():
            return
        record.result = msg
        record.size = sum(f.nbytes for f in msg.frames) + shm.size_of(msg)
        record.finished = time.time()
        record.worker = record.upstream = None
        record.done.set()
        if self.running.get(record.id) is record:
            del self.running[record.id]
            self.finished[record.id] = record
            self.bytes += record.size
        self._evict(record.finished)

    def get(self, call_id: str) -> CallRecord:
        self._evict(time.time())
        record = self.running.get(call_id) or self.finished.get(call_id)
        if record is not None:
            return record
        if call_id in self.expired:
            raise ExpiredCall(
                f"the result of call {call_id} has expired: the daemon keeps the last "
                f"{self.max_count} results for {self.max_age:.0f} s (at most {self.max_bytes} bytes)")
        raise UnknownCall(f"no call with id {call_id!r} on this daemon")

    def _evict(self, now: float) -> None:
        finished = self.finished
        while finished:
            call_id, record = next(iter(finished.items()))
            if (len(finished) <= self.max_count and self.bytes <= self.max_bytes
                    and now - record.finished <= self.max_age):
                break  # oldest first: the rest are younger and within bounds
            del finished[call_id]
            self._drop(record)
            self.expired[call_id] = now
        while len(self.expired) > 100_000:
            self.expired.popitem(last=False)

    def _drop(self, record: CallRecord) -> None:
        self.bytes -= record.size
        if self.on_drop is not None and record.result is not None:
            self.on_drop(record.result)

    def clear(self) -> None:
        """Forget every kept result (the daemon is stopping)."""
        while self.finished:
            self._drop(self.finished.popitem(last=False)[1])


class CallTracker:
    """Keeps a call's result in the call table, even when its caller went away mid-call."""

    __slots__ = ("route", "record", "queue", "on_result", "draining", "files")

    def __init__(self, route: Any, record: CallRecord, queue) -> None:
        self.route, self.record, self.queue = route, record, queue
        self.on_result = None  # a kept result (RemoteRef) is registered as an object
        self.draining = False
        self.files: list[str] | None = None  # the call's arguments spooled to shared memory (daemon/spool.py)

    def end(self, msg: wire.Message) -> None:
        if self.files:  # the worker unlinks each file it maps: these are what it never took
            shm.discard(self.route.store.shm, self.files)
            self.files = None
        if msg.kind == wire.RESULT and self.on_result is not None:
            self.on_result()
        record = self.record
        worker = record.worker
        self.route.calls.finish(record, msg)
        self.route.history.end(record, msg, worker.pid if worker is not None else None)

    def abandon(self, streaming: bool) -> None:
        # A generator whose reader went away is stopped (closing the local iterator early stops
        # the remote one); any other call runs to its end and its result is kept for fetching.
        if streaming and self.record.upstream is not None:
            self.record.upstream.close()  # the node sees its caller go and stops the generator
        elif streaming and self.record.worker is not None:
            self.record.worker.cancel(self.record.ipc_id)
        self.draining = True
        self.route.spawn(self._drain())

    async def _drain(self) -> None:
        while True:
            msg = await self.queue.get()
            if isinstance(msg, wire.Message) and msg.kind in wire.TERMINAL_KINDS:  # not DISCONNECTED
                self.end(msg)
                return
