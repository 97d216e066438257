"""Failure classification and retry-on-OOM: what went wrong, and what compute to try next.

A failed call is classified through the ``tether_classify_failure`` hook; the built-in classifier
below (registered as a plugin, like the local launcher) answers last, so a plugin can overrule it:

- ``"oom"``: the worker was killed by the kernel OOM killer or by the cluster's memory limit (the
  daemon reports it, with the limit and the peak), or the code raised ``MemoryError``, or a CUDA
  out-of-memory error (``torch.cuda.OutOfMemoryError`` by type name, even when the type cannot be
  imported here, or "CUDA out of memory" in the message);
- ``"user"``: any other exception of the remote code (not retried on a bigger machine);
- no answer (None) for tether's own infrastructure errors (connection, launch, cancellation) and
  for a call that outlived its timeout (``CallTimeoutError``: it says how long the call took, not
  what it needed; a bigger machine is no answer to a stuck worker or a slow step).

An OOM is raised as :class:`tether.OutOfMemoryError` (``limit`` and ``peak`` in bytes when known),
whatever it looked like. ``tether.steps.ladder.Ladder`` says which rung to climb to; the built-in
``tether_next_compute`` answer, also here, climbs one rung on "oom" only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tether import compute
from tether.errors import (
    CallCancelledError,
    CallTimeoutError,
    ConnectionError,
    LaunchError,
    OutOfMemoryError,
    RemoteError,
    TetherError,
)
from tether.plugins import get_plugin_manager, hookimpl
from tether.steps.ladder import next_rung

#: exception type names that mean out-of-memory whatever their module (torch.cuda.OutOfMemoryError,
#: torch.OutOfMemoryError, tether.OutOfMemoryError)
OOM_TYPE_NAMES = frozenset({"OutOfMemoryError"})
#: messages of out-of-memory errors raised under another type (older torch raises RuntimeError)
OOM_MESSAGE = re.compile(
    r"CUDA out of memory|CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED|"
    r"RESOURCE_EXHAUSTED: Out of memory|HIP out of memory", re.IGNORECASE)


def classify(error: BaseException, context: dict[str, Any] | None = None) -> str | None:
    """``"oom"``, ``"preempted"``, ``"user"`` or None, as the plugins (built-in last) answer."""
    return get_plugin_manager().hook.tether_classify_failure(error=error, context=dict(context or {}))


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _looks_oom(error: BaseException) -> bool:
    if isinstance(error, MemoryError):  # tether.OutOfMemoryError is one too
        return True
    if any(cls.__name__ in OOM_TYPE_NAMES for cls in type(error).__mro__):
        return True
    remote_type = getattr(error, "remote_type", "") or ""
    if isinstance(error, RemoteError) and remote_type.rsplit(".", 1)[-1] in OOM_TYPE_NAMES:
        return True
    message = getattr(error, "message", None) if isinstance(error, TetherError) else None
    return bool(OOM_MESSAGE.search(message if message is not None else str(error)))


def is_oom(error: BaseException) -> bool:
    """The built-in rule: the error, or one it was raised from, is an out-of-memory error."""
    return any(_looks_oom(e) for e in _chain(error))


def out_of_memory(error: BaseException, message: str | None = None, **fields: Any) -> OutOfMemoryError:
    """``error`` as a :class:`tether.OutOfMemoryError` (with its limit, peak and remote traceback
    when it has them), plus ``fields``; ``message`` replaces its message. Raise it ``from error``."""
    override = message
    original = next((e for e in _chain(error) if _looks_oom(e)), error)
    known = dict(getattr(original, "fields", None) or {})
    for key in ("remote_type", "remote_traceback"):
        known.pop(key, None)
    remote_type = getattr(original, "remote_type", "") or _type_name(original)
    remote_tb = getattr(original, "remote_traceback", "") or ""
    message = getattr(original, "message", None) if isinstance(original, TetherError) else None
    message = message if message is not None else str(original)
    if not isinstance(original, OutOfMemoryError):
        message = f"out of memory: {remote_type}: {message}" if message else f"out of memory: {remote_type}"
    known.setdefault("limit", None)
    known.setdefault("peak", None)
    known.update(fields)
    return OutOfMemoryError(override if override is not None else message, remote_type=remote_type,
                            remote_traceback=remote_tb, **known)


def describe_oom(error: OutOfMemoryError) -> str:
    """One line: the limit and the peak, when known."""
    limit, peak = getattr(error, "limit", None), getattr(error, "peak", None)
    parts = []
    if limit:
        parts.append(f"limit {compute.format_bytes(limit)}")
    if peak:
        parts.append(f"peak {compute.format_bytes(peak)}")
    return ", ".join(parts) or "limit and peak unknown"


def _type_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


# -- the built-in plugin ---------------------------------------------------------------------------


@hookimpl(trylast=True)
def tether_classify_failure(error: BaseException, context: dict[str, Any]) -> str | None:
    if is_oom(error):
        return "oom"
    if isinstance(error, CallCancelledError | CallTimeoutError | ConnectionError | LaunchError):
        return None  # tether's own trouble, not the code's: no opinion
    return "user"


@hookimpl(trylast=True)
def tether_next_compute(current: dict[str, Any], failure: str, ladder: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next_rung(current, failure, ladder)
