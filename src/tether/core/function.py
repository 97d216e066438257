"""Function: a function sent to a cluster as a named service, called like the local function.

    remote_add = tether.function(add).to(tether.here)
    remote_add(1, 2)                    # runs in a worker on the cluster, prints stream back
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tether.core.cluster import Cluster, resolve_cluster
from tether.core.cluster import cluster as _cluster
from tether.core.errors import ConfigError
from tether.core.images import Env, resolve_env
from tether.core.invoke import RemoteCallable
from tether.core.packaging import ImportSpec, import_spec
from tether.core.resources import Resource


class Function(Resource, RemoteCallable):
    """A function, either local (a definition) or bound to a cluster (a callable service)."""

    RESOURCE_TYPE = "function"

    def __init__(self, fn: Callable | None = None, name: str | None = None, *, serialize: bool = False,
                 system: Cluster | None = None, env: Env | None = None,
                 spec: ImportSpec | None = None, stream_logs: bool = True,
                 interface: dict[str, Any] | None = None) -> None:
        self._fn = fn
        self.interface = interface
        self.name = name or (getattr(fn, "__name__", None) if fn is not None else None)
        self.serialize = serialize
        self.system = system
        self.env = env
        self.stream_logs = stream_logs
        if spec is None and fn is not None and not serialize:
            spec = import_spec(fn)  # fail now, at definition, with the fix in the message
        self.spec = spec

    def to(self, system: Cluster | str | None = None, env: Env | str | list[str] | None = None,
           name: str | None = None, stream_logs: bool | None = None,
           max_concurrency: int | None = None) -> Function:
        """Deploy onto ``system`` (default: the local cluster) and return the callable service.

        Redeploying after an edit of the source starts a fresh worker import of the new code.
        ``max_concurrency=N`` lets at most N calls run at once (1: calls queue and run one by one).
        """
        cluster = resolve_cluster(system)
        env_obj = resolve_env(env)
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
            from tether.core import wire

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
        _emit_deploy(cluster, name, "function", env_obj, time.monotonic() - start)
        return Function(self._fn, name, serialize=self.serialize, system=cluster, env=env_obj,
                        spec=self.spec, stream_logs=logs, interface=interface)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.system is None:
            if self._fn is None:
                raise ConfigError(f"function {self.name!r} is not deployed: call .to(cluster) first")
            kwargs.pop("stream_logs", None)
            return self._fn(*args, **kwargs)
        return RemoteCallable.__call__(self, *args, **kwargs)

    def _target(self):
        if self.system is None:
            raise ConfigError(f"function {self.name!r} is not deployed: call .to(cluster) first")
        flags = ((self.interface or {}).get("methods") or {}).get("call") or {}
        return self.system, self.name, "call", flags, self.stream_logs

    call = __call__

    def distribute(self, kind: str, num_nodes: int | None = None, procs_per_node: int = 1,
                   port: int | None = None, ray_start_args: list[str] | None = None):
        """Run this deployed function with a distributed engine across the cluster's nodes.

        Args:
            kind: "pytorch" (a worker per rank, torch.distributed's env vars set; a call runs on
                every rank and returns each rank's result) or "ray" (Ray started on every node;
                the function runs on the head with Ray connected).
            num_nodes: how many of the cluster's nodes (default: all).
            procs_per_node: ranks per node (pytorch).
            port: MASTER_PORT (pytorch, default a free port on the head) or Ray's port (6379).
            ray_start_args: more ``ray start`` options, e.g. ``["--num-cpus=2"]``.
        """
        from tether.core.distribute import DistributedFunction

        return DistributedFunction(self, kind, num_nodes=num_nodes, procs_per_node=procs_per_node,
                                   port=port, ray_start_args=ray_start_args)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the original function in this process."""
        if self._fn is None:
            raise ConfigError(f"function {self.name!r} has no local code (it was loaded by name)")
        return self._fn(*args, **kwargs)

    def __repr__(self) -> str:
        where = f" on {self.system.name!r}" if self.system else " (local)"
        return f"<Function {self.name!r}{where}>"

    def config(self) -> dict[str, Any]:
        return {
            "type": self.RESOURCE_TYPE, "name": self.name, "serialize": self.serialize,
            "system": self.system.config() if self.system else None,
            "env": self.env.config() if self.env else None,
            "import": self.spec.wire() if self.spec else None,
            "stream_logs": self.stream_logs, "interface": self.interface,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Function:
        spec = None
        if config.get("import"):
            imp = config["import"]
            spec = ImportSpec(imp["module"], imp["qualname"], tuple(imp.get("path_entries") or ()), None)
        return cls(None, config["name"], serialize=config.get("serialize", False),
                   system=cluster_from_config(config.get("system")),
                   env=Env.from_config(config["env"]) if config.get("env") else None,
                   spec=spec, stream_logs=config.get("stream_logs", True),
                   interface=config.get("interface"))


def cluster_from_config(config: dict[str, Any] | None) -> Cluster | None:
    """The cluster handle of a saved config, shared with this process's other handles of that name."""
    if not config:
        return None
    return _cluster(config["name"], config.get("launcher", "local"), **(config.get("spec") or {}))


def _emit_deploy(cluster: Cluster, name: str, kind: str, env: Env, seconds: float) -> None:
    from tether.core.plugins import emit

    emit("tether_on_deploy", {"cluster": cluster.name, "name": name, "kind": kind,
                              "env": env.env_name, "seconds": seconds})


def function(fn: Callable | None = None, name: str | None = None, *, serialize: bool = False,
             system: Cluster | str | None = None, env: Env | str | list[str] | None = None) -> Function:
    """Wrap ``fn`` as a Function; or load a saved one with ``tether.function(name="embed")``.

    Args:
        fn: a function defined at module level of your project (it travels by import path).
        name: the service name on the cluster (default: the function's name).
        serialize: send ``fn`` pickled by value (for notebooks and ``__main__``).
        system, env: shortcut for ``.to(system, env=env)``.
    """
    if fn is None:
        if not name:
            raise ConfigError("tether.function() needs a function, or name= of a saved function")
        from tether.core.resources import load

        loaded = load(name)
        if not isinstance(loaded, Function):
            raise ConfigError(f"{name!r} is saved as a {loaded.RESOURCE_TYPE}, not a function")
        return loaded
    if not callable(fn):
        raise ConfigError(f"tether.function() takes a function, not {type(fn).__name__}")
    f = Function(fn, name, serialize=serialize)
    if system is not None:
        return f.to(system, env=env)
    return f
