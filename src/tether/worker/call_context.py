"""Which call a worker thread (or task) is running, and its output sent back to that call's caller.

Imported by the worker runtime and its async side (one copy of the context variable for both:
the runtime runs as ``__main__``). Standard library and ``tether.protocol.wire`` only.
"""

from __future__ import annotations

import contextvars
import io
from typing import Any

from tether.protocol import wire

current_call: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("tether_call", default=None)


class CallContext:
    __slots__ = ("call_id", "stream_logs", "conn")

    def __init__(self, call_id: int, stream_logs: bool, conn: Any) -> None:
        self.call_id, self.stream_logs, self.conn = call_id, stream_logs, conn


class CallStream(io.TextIOBase):
    """sys.stdout/sys.stderr replacement: a write inside a call goes to that call's caller too."""

    def __init__(self, stream_name: bytes, fallback: io.TextIOBase) -> None:
        self._name, self._fallback = stream_name, fallback

    def write(self, text: str) -> int:
        call = current_call.get()
        if call is not None and call.stream_logs and text:
            call.conn.send(wire.LOG, [self._name, text.encode("utf-8", "replace")], call.call_id)
        self._fallback.write(text)
        return len(text)

    def flush(self) -> None:
        self._fallback.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"
