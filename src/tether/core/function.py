"""Function: the definition of a function to send to a cluster as a named service.

    remote_add = tether.function(add).to(tether.here)   # a RemoteFunction (core/stubs.py)
    remote_add(1, 2)                    # runs in a worker on the cluster, prints stream back

The definition holds how the code travels (an import path, or pickled by value); ``.to()``
deploys it and returns the handle that calls it. ``tether.function(name=...)`` loads a saved one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tether.core.cluster import Cluster, resolve_cluster
from tether.core.images import Env
from tether.core.packaging import ImportSpec, import_spec, in_notebook, write_notebook_function
from tether.core.resources import Resource, load
from tether.core.stubs import RemoteFunction, stub_timeout
from tether.errors import ConfigError
from tether.plugins import emit
from tether.protocol import wire


class Function(Resource):
    """A function and how it travels: by import path (the default), or pickled (``serialize``)."""

    RESOURCE_TYPE = "function"

    def __init__(self, fn: Callable | None = None, name: str | None = None, *, serialize: bool = False,
                 spec: ImportSpec | None = None, stream_logs: bool = True) -> None:
        self._fn = fn
        self.name = name or (getattr(fn, "__name__", None) if fn is not None else None)
        self.serialize = serialize
        self.stream_logs = stream_logs
        if spec is None and fn is not None and not serialize:
            if name and in_notebook(fn):  # Runhouse's way: written to <name>_fn.py, imported from it
                spec = write_notebook_function(fn, name)
            else:
                spec = import_spec(fn)  # fail now, at definition, with the fix in the message
        self.spec = spec

    def to(self, system: Cluster | str | None = None, env: Env | str | list[str] | None = None,
           name: str | None = None, stream_logs: bool | None = None,
           max_concurrency: int | None = None, timeout: float | None = None) -> RemoteFunction:
        """Deploy onto ``system`` (default: the local cluster) and return the callable service.

        Redeploying after an edit of the source starts a fresh worker import of the new code.
        ``max_concurrency=N`` lets at most N calls run at once (1: calls queue and run one by one).
        ``timeout``: the default timeout of the handle's calls, in seconds (not of this deploy):
        past it a call is cancelled and raises ``tether.CallTimeoutError``. None: the process
        default (``TETHER_CALL_TIMEOUT``, else none); ``math.inf``: none. Saved with the handle.
        """
        timeout = stub_timeout(timeout)  # bad input fails before anything is deployed
        cluster = resolve_cluster(system)
        env_obj = cluster.resolve_env(env)
        name = name or self.name
        if not name:
            raise ConfigError("the function has no name: pass name=...")
        meta: dict[str, Any] = {"op": "deploy", "kind": "function", "name": name, "env": env_obj.wire_spec()}
        if max_concurrency is not None:
            if max_concurrency < 1:
                raise ConfigError("max_concurrency must be at least 1")
            meta["max_concurrency"] = int(max_concurrency)
        payload: list = []
        if self.serialize:
            if self._fn is None:
                raise ConfigError(f"function {name!r} was loaded from a config; it cannot be re-serialized")
            payload = wire.dumps(self._fn, f"function {name!r}")
            meta.update(serialized=True, payload_frames=len(payload), qualname=name)
        spec = cluster.prepare_deploy(None if self.serialize else self.spec, env_obj)
        if spec is not None:
            meta.update(spec.wire())
        logs = self.stream_logs if stream_logs is None else stream_logs
        start = time.monotonic()
        interface = cluster.client.deploy(meta, payload, stream_logs=logs)
        emit("tether_on_deploy", {"cluster": cluster.name, "name": name, "kind": "function",
                                  "env": env_obj.env_name, "seconds": time.monotonic() - start})
        return RemoteFunction(cluster, name, interface, logs, definition=self, env=env_obj, timeout=timeout)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here (a definition is not deployed: ``.to(cluster)`` first)."""
        if self._fn is None:
            raise ConfigError(f"function {self.name!r} is not deployed: call .to(cluster) first")
        kwargs.pop("stream_logs", None)
        return self._fn(*args, **kwargs)

    def distribute(self, kind: str, *args: Any, **kwargs: Any) -> Any:
        """Distribution runs what was deployed: ``.to(cluster).distribute(kind, ...)``."""
        raise ConfigError(f"function {self.name!r} is not deployed: call .to(cluster) before "
                          f".distribute({kind!r})")

    def notebook(self, *args: Any, **kwargs: Any) -> Any:
        """A notebook runs on the function's cluster: ``.to(cluster).notebook()``."""
        raise ConfigError(f"function {self.name!r} is not deployed: call .to(cluster) before .notebook()")

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the original function in this process."""
        if self._fn is None:
            raise ConfigError(f"function {self.name!r} has no local code (it was loaded by name)")
        return self._fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Function {self.name!r} (local)>"

    def config(self) -> dict[str, Any]:
        return {"type": self.RESOURCE_TYPE, "name": self.name, "serialize": self.serialize,
                "system": None, "import": self.spec.wire() if self.spec else None,
                "stream_logs": self.stream_logs}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Function | RemoteFunction:  # type: ignore[override]
        """The definition; or, when the config names a cluster, the deployed handle."""
        if config.get("system"):
            return RemoteFunction.from_config(config)
        spec = None
        if config.get("import"):
            imp = config["import"]
            spec = ImportSpec(imp["module"], imp["qualname"], tuple(imp.get("path_entries") or ()), None)
        return cls(None, config["name"], serialize=config.get("serialize", False), spec=spec,
                   stream_logs=config.get("stream_logs", True))


def function(fn: Callable | None = None, name: str | None = None, *, serialize: bool = False,
             system: Cluster | str | None = None, env: Env | str | list[str] | None = None,
             serialize_notebook_fn: bool = False) -> Function | RemoteFunction:
    """Wrap ``fn`` as a Function; or load a saved one with ``tether.function(name="embed")``.

    Args:
        fn: a function defined at module level of your project (it travels by import path).
        name: the service name on the cluster (default: the function's name).
        serialize: send ``fn`` pickled by value (for notebooks and ``__main__``). A function
            defined in a notebook with a ``name`` and without ``serialize`` is written to
            ``<name>_fn.py`` in the working directory and imported from there, as Runhouse did.
        system, env: shortcut for ``.to(system, env=env)``.
        serialize_notebook_fn: Runhouse's name of ``serialize``.

    ``tether.send`` is the same factory (Runhouse's first name of it).
    """
    if fn is None:
        if not name:
            raise ConfigError("tether.function() needs a function, or name= of a saved function")
        loaded = load(name)
        if not isinstance(loaded, Function | RemoteFunction):
            raise ConfigError(f"{name!r} is saved as a {loaded.RESOURCE_TYPE}, not a function")
        return loaded
    if not callable(fn):
        raise ConfigError(f"tether.function() takes a function, not {type(fn).__name__}")
    f = Function(fn, name, serialize=serialize or serialize_notebook_fn)
    if system is not None:
        return f.to(system, env=env)
    return f
