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
        raise LookupError(
            f"the remote result {name!r} is not in this worker: a RemoteRef is handed over to calls "
            f"in the env that produced it (or it was deleted, or its worker restarted). Use "
            f"ref.fetch() to bring it to the caller instead.")
    return entry.obj
