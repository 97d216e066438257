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

from tether.core import wire


class UnknownCall(LookupError):
    pass


class ExpiredCall(LookupError):
    pass


class CallRecord:
    __slots__ = ("id", "name", "method", "worker", "ipc_id", "started", "finished", "result", "done",
                 "streaming", "size")

    def __init__(self, call_id: str, name: str, method: str, worker: Any, ipc_id: int) -> None:
        self.id, self.name, self.method = call_id, name, method
        self.worker, self.ipc_id = worker, ipc_id
        self.started, self.finished = time.time(), None
        self.result: wire.Message | None = None
        self.done = asyncio.Event()
        self.streaming = False  # a generator: its items went to the caller, only the end is kept
        self.size = 0

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "method": self.method, "started": self.started,
                "finished": self.finished, "done": self.done.is_set()}


class CallTable:
    def __init__(self, max_count: int | None = None, max_age: float | None = None,
                 max_bytes: int | None = None) -> None:
        env = os.environ.get
        self.max_count = max_count or int(env("TETHER_RESULTS_MAX_COUNT", "1000"))
        self.max_age = max_age or float(env("TETHER_RESULTS_MAX_AGE", "600"))
        self.max_bytes = max_bytes or int(env("TETHER_RESULTS_MAX_BYTES", str(1 << 30)))
        self.records: OrderedDict[str, CallRecord] = OrderedDict()
        self.expired: OrderedDict[str, float] = OrderedDict()
        self.bytes = 0

    def start(self, call_id: str, name: str, method: str, worker: Any, ipc_id: int) -> CallRecord:
        record = CallRecord(call_id, name, method, worker, ipc_id)
        self.records[call_id] = record
        return record

    def finish(self, record: CallRecord, msg: wire.Message) -> None:
        if record.done.is_set():
            return
        record.result = msg
        record.size = sum(f.nbytes for f in msg.frames)
        record.finished = time.time()
        record.worker = None
        self.bytes += record.size
        record.done.set()
        self._evict()

    def get(self, call_id: str) -> CallRecord:
        self._evict()
        record = self.records.get(call_id)
        if record is not None:
            return record
        if call_id in self.expired:
            raise ExpiredCall(
                f"the result of call {call_id} has expired: the daemon keeps the last "
                f"{self.max_count} results for {self.max_age:.0f} s (at most {self.max_bytes} bytes)")
        raise UnknownCall(f"no call with id {call_id!r} on this daemon")

    def _evict(self) -> None:
        now = time.time()
        for call_id in list(self.records):
            record = self.records[call_id]
            if not record.done.is_set():
                continue
            over = (len(self.records) > self.max_count or self.bytes > self.max_bytes
                    or now - (record.finished or now) > self.max_age)
            if not over:
                break  # oldest first: the rest are younger and within bounds
            del self.records[call_id]
            self.bytes -= record.size
            self.expired[call_id] = now
        while len(self.expired) > 100_000:
            self.expired.popitem(last=False)
