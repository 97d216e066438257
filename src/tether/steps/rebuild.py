"""Rebuilding an instance's state after tether made it again: ``__tether_rebuild__(self, context)``.

An instance lives in its env's worker process. When a step climbs the ladder after an out-of-memory
kill, that process is gone, and tether makes the instance again from its constructor arguments on
the new rung: whatever it learned since (a fitted model, a loaded checkpoint, a cache) is gone. A
class that can get it back defines::

    class Trainer:
        def __init__(self, checkpoint_dir: str) -> None: ...

        def __tether_rebuild__(self, context) -> None:
            # context.reason: why it was made again; context.method/args/kwargs: the step's call
            self.model = load_latest(self.checkpoint_dir)

and tether calls it once, in the worker, after making the instance again and before the step's
call runs on it. The name is a dunder with tether's prefix, like ``__rich__`` or Ray's
``__ray_ready__``: it cannot collide with a method the class already has for its own purposes (a
plain ``rebuild`` or ``on_remade`` could, and tether would call it unasked), and, as a name that
starts with ``_``, it is not listed among the stub's remote methods.

Only instances deployed through the steps (``actions.deploy``: tether keeps their constructor
arguments in a ``Service`` record) are rebuilt; other instances the climb reset are named in the
step's warning. An exception raised by ``__tether_rebuild__`` fails the step like the call's own
would (an out-of-memory one climbs the ladder again). It may run more than once for one reset (two
steps that run at once after a climb): make it idempotent.

This module imports only the standard library: the context is unpickled in the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the optional method tether calls on an instance it made again
METHOD = "__tether_rebuild__"


@dataclass(frozen=True)
class RebuildContext:
    """What ``__tether_rebuild__`` is told.

    Attributes:
        service: the service's name.
        cluster: the cluster it lives on now.
        reason: why it was made again (the daemon's words: the worker that died, the new limits).
        args: the constructor's positional arguments, as deployed.
        kwargs: the constructor's keyword arguments, as deployed.
        method: the method the step is about to call on it; None when the step calls another
            service (this one shared its worker and was made again with it).
        call_args: the step's positional arguments for ``method``.
        call_kwargs: the step's keyword arguments for ``method``.
        attempt: the step's attempt (1 is the first try).
        rung: the compute it runs on now, e.g. ``{"memory": "1Gi", "cpus": 1}``; None without a
            ladder.
    """

    service: str
    cluster: str
    reason: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    method: str | None = None
    call_args: tuple[Any, ...] = ()
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    rung: dict[str, Any] | None = None
