"""Module: a class sent to a cluster; instances are live, named, stateful remote objects.

    RemoteCounter = tether.module(Counter).to(tether.here)
    counter = RemoteCounter(start=10, name="counter")   # constructed on the cluster
    counter.increment()                                  # runs there; state stays there
    tether.here.get("counter").value                     # any other process, by name

Runhouse's other form, a subclass of ``tether.Module``, works too: the instance is made here and
sent with its state (its ``__dict__``, pickled); its class travels by import path::

    class Trainer(tether.Module):
        def __init__(self, lr=0.1):
            super().__init__()
            self.lr, self.steps = lr, 0

    trainer = Trainer(lr=0.5).to(cluster, name="trainer")   # a RemoteInstance, as above
"""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar

from tether.core.cluster import Cluster, resolve_cluster
from tether.core.images import Env
from tether.core.packaging import ImportSpec, import_spec
from tether.core.resources import Resource, load
from tether.core.stubs import RemoteInstance, stub_timeout
from tether.errors import ConfigError
from tether.plugins import emit
from tether.protocol import wire


class Module(Resource):
    """The definition of a class to run remotely (by import path, or serialized)."""

    RESOURCE_TYPE = "module"
    #: tether's own API on a subclass (``class Trainer(tether.Module)``): used here, never offered
    #: as a remote method of its instances (``tether.worker.objects.interface``)
    _tether_local_api: ClassVar[frozenset[str]] = frozenset(
        {"to", "get_or_to", "config", "from_config", "save", "share", "delete_configs"})

    def __init__(self, cls: type | None = None, name: str | None = None, *, serialize: bool = False,
                 spec: ImportSpec | None = None) -> None:
        if type(self) is not Module:  # a user's subclass: its instance holds only its own state
            return
        self.cls = cls
        self.name = name or (cls.__name__ if cls is not None else None)
        self.serialize = serialize
        if spec is None and cls is not None and not serialize:
            spec = import_spec(cls)
        self.spec = spec

    def to(self, system: Cluster | str | None = None, env: Env | str | list[str] | None = None,
           stream_logs: bool = True, max_concurrency: int | None = None,
           timeout: float | None = None, *, name: str | None = None) -> Any:
        """Check the class imports on ``system`` and return a factory of remote instances.

        ``max_concurrency=N`` lets at most N calls run at once on each instance (1: calls queue
        and run one at a time, Runhouse's "enqueue"). ``timeout``: the default timeout of the
        instances' calls in seconds (not of their construction), as ``Function.to``'s.
        ``name``: the definition's name.

        On an instance of a subclass (``Trainer(lr=0.5).to(cluster, name="trainer")``): send the
        instance with its state, and return the live remote instance (a ``RemoteInstance``) named
        ``name`` (default: the class name and a random suffix).
        """
        if type(self) is not Module:  # a class from a notebook or __main__ travels pickled
            definition = Module(type(self), serialize=type(self).__module__ == "__main__")
            remote_class = definition.to(system, env, stream_logs, max_concurrency, timeout)
            return remote_class.send_state(dict(vars(self)), name)
        if name:
            self.name = name
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigError("max_concurrency must be at least 1")
        timeout = stub_timeout(timeout)
        cluster = resolve_cluster(system)
        env_obj = cluster.resolve_env(env)
        spec = cluster.prepare_deploy(None if self.serialize else self.spec, env_obj)
        meta, payload = self._deploy_meta(env_obj, spec)
        interface = cluster.client.deploy({**meta, "op": "inspect", "kind": "class"}, payload,
                                          stream_logs=stream_logs)
        return RemoteClass(self, cluster, env_obj, interface, stream_logs, max_concurrency, spec, timeout)

    def get_or_to(self, system: Cluster | str | None = None, env: Env | str | list[str] | None = None,
                  name: str | None = None, **options: Any) -> Any:
        """A subclass instance's ``to()``, unless ``system`` already holds an object named
        ``name`` (default: the class name): then a handle on that one (Runhouse's ``get_or_to``)."""
        if type(self) is Module:
            raise ConfigError("get_or_to() is for instances of a tether.Module subclass; "
                              "a definition's .to() returns a factory")
        cluster = resolve_cluster(system)
        name = name or type(self).__name__
        found = cluster.get(name, None, remote=True)
        return found if found is not None else self.to(cluster, env, name=name, **options)

    def _deploy_meta(self, env: Env, spec: ImportSpec | None = None) -> tuple[dict[str, Any], list]:
        meta: dict[str, Any] = {"env": env.wire_spec()}
        if self.serialize:
            if self.cls is None:
                raise ConfigError(f"module {self.name!r} has no local class to serialize")
            payload = wire.dumps(self.cls, f"class {self.name!r}")
            meta.update(serialized=True, payload_frames=len(payload), qualname=self.name)
            return meta, payload
        return {**meta, **(spec or self.spec).wire(), "payload_frames": 0}, []

    def config(self) -> dict[str, Any]:
        return {"type": self.RESOURCE_TYPE, "name": self.name, "serialize": self.serialize,
                "import": self.spec.wire() if self.spec else None}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Module:
        imp = config.get("import") or {}
        spec = ImportSpec(imp["module"], imp["qualname"], tuple(imp.get("path_entries") or ()), None) if imp else None
        return cls(None, config["name"], serialize=config.get("serialize", False), spec=spec)


class RemoteClass:
    """Calling it constructs an instance on the cluster: ``RemoteCls(*args, name="trainer")``."""

    def __init__(self, module: Module, cluster: Cluster, env: Env, interface: dict[str, Any],
                 stream_logs: bool = True, max_concurrency: int | None = None,
                 spec: ImportSpec | None = None, timeout: float | None = None) -> None:
        self.module, self.cluster, self.env = module, cluster, env
        self.interface, self.stream_logs = interface, stream_logs
        self.max_concurrency = max_concurrency
        self.spec = spec  # the import spec as the cluster sees it (paths on the node)
        self.timeout = timeout  # the instances' default call timeout

    def __call__(self, *args: Any, name: str | None = None, **kwargs: Any) -> RemoteInstance:
        return self._make(name, args, kwargs)

    def send_state(self, state: dict[str, Any], name: str | None = None) -> RemoteInstance:
        """An instance made on the cluster without calling ``__init__``, its ``__dict__`` set to
        ``state`` (a ``tether.Module`` subclass instance made here, sent with ``.to()``)."""
        return self._make(name, (), state, from_state=True)

    def _make(self, name: str | None, args: tuple, kwargs: dict[str, Any],
              from_state: bool = False) -> RemoteInstance:
        name = name or f"{self.module.name}-{uuid.uuid4().hex[:8]}"
        meta, payload = self.module._deploy_meta(self.env, self.spec)
        what = f"the state of {self.module.name}" if from_state else f"the arguments of {self.module.name}()"
        payload = [*payload, *wire.dumps((args, kwargs), what)]
        meta.update(op="deploy", kind="instance", name=name)
        if from_state:
            meta["from_state"] = True
        if self.max_concurrency:
            meta["max_concurrency"] = int(self.max_concurrency)
        start = time.monotonic()
        interface = self.cluster.client.deploy(meta, payload, stream_logs=self.stream_logs)
        emit("tether_on_deploy", {"cluster": self.cluster.name, "name": name, "kind": "instance",
                                  "env": self.env.env_name, "seconds": time.monotonic() - start})
        return RemoteInstance(self.cluster, name, interface, self.stream_logs, self.timeout)

    def __repr__(self) -> str:
        return f"<RemoteClass {self.module.name} on {self.cluster.name!r}>"


def module(cls: type | None = None, name: str | None = None, *, serialize: bool = False) -> Module:
    """Wrap a class so that ``.to(cluster)`` makes a factory of live remote instances.

    Args:
        cls: a class defined at module level of your project (it travels by import path).
        name: the definition's name (default: the class name).
        serialize: send the class pickled by value (for notebooks and ``__main__``).
    """
    if cls is None:
        if not name:
            raise ConfigError("tether.module() needs a class, or name= of a saved module")
        return load(name)  # type: ignore[return-value]
    if not isinstance(cls, type):
        raise ConfigError(f"tether.module() takes a class, not {type(cls).__name__}; for functions use tether.function()")
    return Module(cls, name, serialize=serialize)
