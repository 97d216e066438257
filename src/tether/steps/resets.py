"""What a step says about state its climb reset, and the ``__tether_rebuild__`` calls that follow.

A climb (``tether.steps.climb``) makes instances again from their constructor arguments: on one
env's worker, on a whole new machine, or on the rung's cluster. The step's log gets one warning
naming every such instance (through the orchestrator's logger: ``logger.warning``; without a
logger, a ``tether.StateResetWarning``), and each instance deployed through the steps whose class
defines ``__tether_rebuild__`` is rebuilt before the step's own call runs (``tether.steps.rebuild``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from tether import compute
from tether.errors import NotFoundError, StateResetWarning
from tether.steps.climb import Climb
from tether.steps.rebuild import METHOD, RebuildContext
from tether.steps.services import Service


def warn(logger: Any, message: str) -> None:
    """A warning in the step's log (or, without a logger, a StateResetWarning)."""
    if logger is None:
        warnings.warn(StateResetWarning(message), stacklevel=3)
        return
    (getattr(logger, "warning", None) or logger.info)("[tether] %s", message)


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _count(names: Sequence[str]) -> str:
    return f"instance {names[0]!r}" if len(names) == 1 else f"{len(names)} instances, {_names(names)}"


def tell(logger: Any, climbed: Climb) -> None:
    """Name every instance the climb reset (none: nothing is said)."""
    if not climbed.reset:
        return
    kept = [n for n in climbed.reset if n not in climbed.gone]
    if climbed.how == "env":
        where = (f"env {climbed.env!r} of cluster {climbed.cluster!r} was restarted at "
                 f"{compute.describe(climbed.rung)}")
        when = "now"
    else:
        where = f"cluster {climbed.cluster!r} was replaced by one at {compute.describe(climbed.rung)}"
        when = "at its next call" if len(kept) == 1 else "at their next calls"
    parts = [f"the climb reset the state of {_count(climbed.reset)}: {where}."]
    if kept:
        one = len(kept) == 1
        parts.append(f"{_names(kept)} {'is' if one else 'are'} made again from {'its' if one else 'their'} "
                     f"constructor arguments {when}; what {'it' if one else 'they'} held in memory is "
                     f"gone ({METHOD}(self, context) rebuilds an instance whose class defines it, "
                     "before it is called).")
    if climbed.gone:
        one = len(climbed.gone) == 1
        parts.append(f"{_names(climbed.gone)} {'was' if one else 'were'} not deployed through tether's "
                     f"pipeline steps: gone from the cluster (deploy {'it' if one else 'them'} again).")
    warn(logger, " ".join(parts))


def context(svc: Service, reason: str, method: str | None = None, args: Sequence[Any] = (),
            kwargs: dict[str, Any] | None = None, attempt: int = 1,
            rung: dict[str, Any] | None = None) -> RebuildContext:
    """The context ``__tether_rebuild__`` gets for ``svc`` (the step's call on it, if any)."""
    ctor_args, ctor_kwargs = svc.arguments()
    return RebuildContext(service=svc.name, cluster=svc.cluster, reason=reason, args=tuple(ctor_args),
                          kwargs=ctor_kwargs, method=method, call_args=tuple(args),
                          call_kwargs=dict(kwargs or {}), attempt=attempt, rung=rung)


def rebuild_reset(climbed: Climb, called: str | None, method: str | None, args: Sequence[Any],
                  kwargs: dict[str, Any] | None, attempt: int, logger: Any,
                  timeout: Callable[[], float | None]) -> None:
    """After a climb of one env: rebuild each instance it made again that was deployed through
    the steps (the one the step calls, ``called``, with the step's call; the others with none).
    A whole cluster's instances are rebuilt as their calls make them again (``remade``)."""
    if climbed.how != "env":
        return
    for name in climbed.reset:
        try:
            svc = Service.load(name)
        except NotFoundError:
            continue  # not deployed through the steps: named in the warning, nothing to rebuild with
        if svc.cluster != climbed.cluster:
            continue
        mine = name == called
        ctx = context(svc, f"the climb restarted env {climbed.env!r} at {compute.describe(climbed.rung)}",
                      method if mine else None, args if mine else (), kwargs if mine else None,
                      attempt, climbed.rung)
        if svc.rebuild(ctx, timeout=timeout()):
            _said(logger, f"rebuilt instance {name!r} with {METHOD}")


def remade(svc: Service, method: str | None, args: Sequence[Any], kwargs: dict[str, Any] | None,
           attempt: int, rung: dict[str, Any] | None, logger: Any,
           timeout: Callable[[], float | None]) -> Callable[[str], None]:
    """``Service.call``'s ``on_remade``: the service was made again on its cluster (a new
    machine, a move to the rung's cluster): say so, and rebuild it with the step's call."""

    def on_remade(why: str) -> None:
        if svc.kind != "instance":
            return
        warn(logger, f"instance {svc.name!r} was made again on cluster {svc.cluster!r} from its "
                     f"constructor arguments ({why}): what it held in memory is gone.")
        ctx = context(svc, why, method, args, kwargs, attempt, rung)
        if svc.rebuild(ctx, timeout=timeout()):
            _said(logger, f"rebuilt instance {svc.name!r} with {METHOD}")

    return on_remade


def _said(logger: Any, message: str) -> None:
    if logger is not None:
        logger.info("[tether] %s", message)
