"""tether: send your own Python functions and classes to remote compute as live, named services.

    import tether as rh

    remote_fn = rh.function(my_fn).to(rh.here)          # deploy on the local cluster
    remote_fn(1, 2)                                      # call it like a local function

    Counter = rh.module(MyCounter).to(rh.here)
    counter = Counter(start=10, name="counter")          # a named, live remote instance
    counter.increment()

The public API keeps Runhouse's documented names. Everything is imported lazily: orchestrators
import tether while parsing DAGs, so ``import tether`` must stay cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tether._version import __version__

# public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "function": ("tether.core.function", "function"),
    "Function": ("tether.core.function", "Function"),
    "module": ("tether.core.module", "module"),
    "Module": ("tether.core.module", "Module"),
    "cluster": ("tether.core.cluster", "cluster"),
    "Cluster": ("tether.core.cluster", "Cluster"),
    "env": ("tether.core.images", "env"),
    "Env": ("tether.core.images", "Env"),
    "load": ("tether.core.resources", "load"),
    "get": ("tether.core.invoke", "get"),
    "RemoteRef": ("tether.core.invoke", "RemoteRef"),
    "CallHandle": ("tether.core.invoke", "CallHandle"),
    "exists": ("tether.core.resources", "exists"),
    "Resource": ("tether.core.resources", "Resource"),
    "TetherError": ("tether.core.errors", "TetherError"),
    "ConfigError": ("tether.core.errors", "ConfigError"),
    "NotFoundError": ("tether.core.errors", "NotFoundError"),
    "LaunchError": ("tether.core.errors", "LaunchError"),
    "ConnectionError": ("tether.core.errors", "ConnectionError"),
    "AuthenticationError": ("tether.core.errors", "AuthenticationError"),
    "VersionMismatchError": ("tether.core.errors", "VersionMismatchError"),
    "SerializationError": ("tether.core.errors", "SerializationError"),
    "CallCancelledError": ("tether.core.errors", "CallCancelledError"),
    "ResultExpiredError": ("tether.core.errors", "ResultExpiredError"),
    "RemoteError": ("tether.core.errors", "RemoteError"),
    "WorkerDiedError": ("tether.core.errors", "WorkerDiedError"),
    "OutOfMemoryError": ("tether.core.errors", "OutOfMemoryError"),
    "Ladder": ("tether.core.ladder", "Ladder"),
}

__all__ = ["__version__", "here", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "here":
        from tether.core.cluster import here

        return here()
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'tether' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from tether.core.cluster import Cluster, cluster
    from tether.core.errors import (
        AuthenticationError,
        CallCancelledError,
        ConfigError,
        ConnectionError,
        LaunchError,
        NotFoundError,
        OutOfMemoryError,
        RemoteError,
        ResultExpiredError,
        SerializationError,
        TetherError,
        VersionMismatchError,
        WorkerDiedError,
    )
    from tether.core.function import Function, function
    from tether.core.images import Env, env
    from tether.core.ladder import Ladder
    from tether.core.module import Module, module
    from tether.core.resources import Resource, exists, load

    here: Cluster
