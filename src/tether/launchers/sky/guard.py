"""Calls into SkyPilot that leave the caller's process as they found it.

SkyPilot raises its user-facing errors inside ``ux_utils.print_exception_no_traceback()``, which
sets ``sys.tracebacklimit = 0`` (its CLI prints one line, no traceback) and, when the exception
goes through it, never sets it back. In a program that called SkyPilot, every later traceback
would be empty: a RemoteError from a worker would lose its frames, so would the user's own.
``keep_tracebacks`` puts ``sys.tracebacklimit`` back as it was after each call.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_UNSET = object()


@contextlib.contextmanager
def keep_tracebacks() -> Iterator[None]:
    """``sys.tracebacklimit`` as it was before the block, whatever SkyPilot did inside it."""
    saved = getattr(sys, "tracebacklimit", _UNSET)
    try:
        yield
    finally:
        if saved is _UNSET:
            if hasattr(sys, "tracebacklimit"):
                del sys.tracebacklimit
        else:
            sys.tracebacklimit = saved


def keeps_tracebacks(function: F) -> F:
    """``keep_tracebacks`` around each call of ``function``."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with keep_tracebacks():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
