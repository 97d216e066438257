"""The ERROR frames a worker sends back: user exceptions with the user's traceback, and its own
kinds (not found, serialization, cancelled). Standard library and ``tether.core`` wire only."""

from __future__ import annotations

import os
from typing import Any

from tether.protocol import shm, wire
from tether.worker.objects import NotFound, Unserializable

_TETHER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def cancelled_frames(what: str):
    return wire.plain_error_frames(wire.CANCELLED, f"the call to {what} was cancelled", "CallCancelled")


def call_name(meta: Any) -> str:
    if not isinstance(meta, dict):
        return "?"
    method = meta.get("method", "?")
    return meta.get("object", "?") if method in ("call", "__call__") else f"{meta.get('object')}.{method}"


def error_frames(exc: BaseException):
    if isinstance(exc, shm.BadSharedFrame):  # a caller's message, not the user's code: a 400
        return wire.plain_error_frames(wire.BAD_REQUEST, str(exc), "BadSharedFrame")
    if isinstance(exc, NotFound):
        return wire.plain_error_frames(wire.NOT_FOUND, str(exc), "AttributeError")
    if isinstance(exc, Unserializable):
        return wire.plain_error_frames(wire.SERIALIZATION, str(exc), "TypeError")
    from tether.errors import SerializationError

    if isinstance(exc, SerializationError):
        return wire.plain_error_frames(wire.SERIALIZATION, str(exc), "SerializationError")
    return wire.error_frames(_user_frames(exc))


def _is_runtime_frame(frame) -> bool:
    # by file: the runtime runs as __main__ in a worker (python -m), so its frames are not "tether.*"
    return os.path.abspath(frame.f_code.co_filename).startswith(_TETHER_DIR)


def _user_frames(exc: BaseException) -> BaseException:
    """Drop tether's own frames from the top of the traceback: the caller sees its code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and _is_runtime_frame(tb.tb_frame):
        tb = tb.tb_next
    return exc.with_traceback(tb)
