"""Remote results passed between calls: a ``RemoteRef`` unpickles, in the worker, to the object.

The worker runtime registers its object table here at start; in a caller's process nothing is
registered and a ref is never unpickled (it only travels caller -> worker).
"""

from __future__ import annotations

from typing import Any

_objects: dict[str, Any] | None = None


def register(objects: dict[str, Any]) -> None:
    global _objects
    _objects = objects


def resolve(name: str) -> Any:
    entry = (_objects or {}).get(name)
    if entry is None:
        from tether.errors import NotFoundError

        raise NotFoundError(
            f"the remote result {name!r} no longer exists on this cluster (it was deleted, or the "
            f"worker holding it restarted): run the call that made it again", ref=name)
    return entry.obj
