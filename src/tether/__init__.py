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
    "send": ("tether.core.function", "function"),  # Runhouse's first name of rh.function
    "Function": ("tether.core.function", "Function"),
    "RemoteFunction": ("tether.core.stubs", "RemoteFunction"),
    "module": ("tether.core.module", "module"),
    "Module": ("tether.core.module", "Module"),
    "cluster": ("tether.core.cluster", "cluster"),
    "Cluster": ("tether.core.cluster", "Cluster"),
    "ondemand_cluster": ("tether.core.cluster", "ondemand_cluster"),
    "env": ("tether.core.images", "env"),
    "Env": ("tether.core.images", "Env"),
    "Image": ("tether.core.image", "Image"),
    "secret": ("tether.core.secrets", "secret"),
    "provider_secret": ("tether.core.secrets", "provider_secret"),
    "Secret": ("tether.core.secrets", "Secret"),
    "load": ("tether.core.resources", "load"),
    "configs": ("tether.core.configs", "configs"),
    "get": ("tether.core.invoke", "get"),
    "RemoteRef": ("tether.core.invoke", "RemoteRef"),
    "CallHandle": ("tether.core.invoke", "CallHandle"),
    "exists": ("tether.core.resources", "exists"),
    "current_folder": ("tether.core.registry.names", "current_folder"),
    "set_folder": ("tether.core.registry.names", "set_folder"),
    "unset_folder": ("tether.core.registry.names", "unset_folder"),
    "shared_with_me": ("tether.core.resources", "shared_with_me"),
    "versions": ("tether.core.resources", "versions"),
    "rollback": ("tether.core.resources", "rollback"),
    "Resource": ("tether.core.resources", "Resource"),
    "folder": ("tether.core.data.folder", "folder"),
    "Folder": ("tether.core.data.folder", "Folder"),
    "blob": ("tether.core.data.blob", "blob"),
    "Blob": ("tether.core.data.blob", "Blob"),
    "table": ("tether.core.data.table", "table"),
    "Table": ("tether.core.data.table", "Table"),
    "TetherError": ("tether.errors", "TetherError"),
    "ConfigError": ("tether.errors", "ConfigError"),
    "NotFoundError": ("tether.errors", "NotFoundError"),
    "LaunchError": ("tether.errors", "LaunchError"),
    "QuotaExceededError": ("tether.errors", "QuotaExceededError"),
    "ConnectionError": ("tether.errors", "ConnectionError"),
    "AuthenticationError": ("tether.errors", "AuthenticationError"),
    "AccessDeniedError": ("tether.errors", "AccessDeniedError"),
    "VersionMismatchError": ("tether.errors", "VersionMismatchError"),
    "SerializationError": ("tether.errors", "SerializationError"),
    "CallCancelledError": ("tether.errors", "CallCancelledError"),
    "CallTimeoutError": ("tether.errors", "CallTimeoutError"),
    "TetherWarning": ("tether.errors", "TetherWarning"),
    "StateResetWarning": ("tether.errors", "StateResetWarning"),
    "ResultExpiredError": ("tether.errors", "ResultExpiredError"),
    "RemoteError": ("tether.errors", "RemoteError"),
    "WorkerDiedError": ("tether.errors", "WorkerDiedError"),
    "OutOfMemoryError": ("tether.errors", "OutOfMemoryError"),
    "Ladder": ("tether.steps.ladder", "Ladder"),
}

__all__ = ["__version__", "here", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "here":  # not cached: a fresh lookup each time, like tether.cluster("local")
        return importlib.import_module("tether.core.cluster").here()
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
    from tether.core.cluster import Cluster, cluster, ondemand_cluster
    from tether.core.configs import Defaults
    from tether.core.data.blob import Blob, blob
    from tether.core.data.folder import Folder, folder
    from tether.core.data.table import Table, table
    from tether.core.function import Function, function
    from tether.core.function import function as send
    from tether.core.image import Image
    from tether.core.images import Env, env
    from tether.core.module import Module, module
    from tether.core.registry.names import current_folder, set_folder, unset_folder
    from tether.core.resources import Resource, exists, load, rollback, shared_with_me, versions
    from tether.core.stubs import RemoteFunction
    from tether.errors import (
        AccessDeniedError,
        AuthenticationError,
        CallCancelledError,
        CallTimeoutError,
        ConfigError,
        ConnectionError,
        LaunchError,
        NotFoundError,
        OutOfMemoryError,
        QuotaExceededError,
        RemoteError,
        ResultExpiredError,
        SerializationError,
        StateResetWarning,
        TetherError,
        TetherWarning,
        VersionMismatchError,
        WorkerDiedError,
    )
    from tether.steps.ladder import Ladder

    here: Cluster
    configs: Defaults
