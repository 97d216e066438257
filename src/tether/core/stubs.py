"""Handles on what lives on a cluster: a deployed function, an instance's methods and attributes,
a stored value. The definitions they come from (``Function``, ``Module``) are in ``function.py`` and
``module.py``; a handle holds a cluster and a name, and calls through the cluster's client.

Attribute rules of a ``RemoteInstance``: the remote class's own methods always win (a user method
named ``save`` is the user's); then the stub's own API (``save``, ``config``, ``name``); anything
else is read or written on the remote object (properties and instance attributes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tether.core import resources
from tether.core.images import Env
from tether.core.invoke import RemoteCallable, check_timeout, default_timeout
from tether.core.registry.names import Address
from tether.core.resources import Resource
from tether.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from tether.core.cluster import Cluster
    from tether.core.distribute import DistributedFunction
    from tether.core.function import Function
    from tether.core.notebook import Notebook

_OWN = frozenset({"_t_cluster", "_t_name", "_t_interface", "_t_stream_logs", "_t_methods", "_t_timeout"})


class RemoteAttributeError(NotFoundError, AttributeError):
    """The remote object has no such attribute (or is gone): a NotFoundError and an AttributeError."""


class RemoteMethod(RemoteCallable):
    """A bound remote method; call it like the local one (also ``.aio``, ``.map``, ``.remote``...)."""

    __slots__ = ("_instance", "_method")

    def __init__(self, instance: RemoteInstance, method: str) -> None:
        self._instance, self._method = instance, method

    def _target(self):
        inst = self._instance
        flags = object.__getattribute__(inst, "_interface")().get("methods", {}).get(self._method) or {}
        return (object.__getattribute__(inst, "_t_cluster"), object.__getattribute__(inst, "_t_name"),
                self._method, flags, object.__getattribute__(inst, "_t_stream_logs"),
                object.__getattribute__(inst, "_t_timeout"))

    def __repr__(self) -> str:
        return f"<RemoteMethod {object.__getattribute__(self._instance, '_t_name')}.{self._method}>"


class RemoteInstance(Resource):
    """A live object on a cluster, found by name from any process.

    ``timeout``: the default call timeout of its methods, attribute reads and writes, in seconds
    (None: the process default, ``TETHER_CALL_TIMEOUT``; ``math.inf``: none); see
    ``tether.core.invoke``.
    """

    RESOURCE_TYPE = "instance"

    def __init__(self, cluster: Cluster, name: str, interface: dict[str, Any] | None = None,
                 stream_logs: bool = True, timeout: float | None = None) -> None:
        object.__setattr__(self, "_t_cluster", cluster)
        object.__setattr__(self, "_t_name", name)
        object.__setattr__(self, "_t_interface", interface)
        object.__setattr__(self, "_t_stream_logs", stream_logs)
        object.__setattr__(self, "_t_methods", {})
        object.__setattr__(self, "_t_timeout", stub_timeout(timeout))

    def __getattribute__(self, attr: str) -> Any:
        if not attr.startswith("__") and attr not in _OWN:
            methods = object.__getattribute__(self, "_t_methods")
            method = methods.get(attr)
            if method is not None:
                return method
            if attr in object.__getattribute__(self, "_interface")().get("methods", {}):
                method = methods[attr] = RemoteMethod(self, attr)
                return method
        return object.__getattribute__(self, attr)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return RemoteInstance.fetch(self, attr)  # a property or an instance attribute of the remote object

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr in _OWN:
            object.__setattr__(self, attr, value)
        else:
            self._t_cluster.client.call(self._t_name, "__setattr__", (attr, value), stream_logs=self._t_stream_logs,
                                        timeout=self._attribute_timeout())

    @property
    def remote(self) -> RemoteAttributes:
        """Its attributes on the cluster, private ones too (Runhouse's ``module.remote``):
        ``inst.remote.lr``, ``inst.remote._cache``, ``inst.remote.lr = 0.1``; ``inst.remote()``
        is ``fetch()``. A remote method named ``remote`` wins over this (see the module docstring)."""
        return RemoteAttributes(self)

    def fetch(self, item: str | None = None) -> Any:
        """The remote attribute ``item`` (Runhouse's ``module.fetch("attr")``); without one, the
        remote object itself, pickled here with its state (its class must import here)."""
        try:
            return self._t_cluster.client.call(self._t_name, item or "__value__",
                                               stream_logs=self._t_stream_logs, timeout=self._attribute_timeout())
        except NotFoundError as exc:  # also an AttributeError: getattr(stub, a, default), hasattr work
            raise RemoteAttributeError(exc.message, **exc.fields) from exc

    def _attribute_timeout(self) -> float | None:
        timeout = object.__getattribute__(self, "_t_timeout")
        if timeout is None:
            return default_timeout()
        return None if timeout == float("inf") else timeout

    def _interface(self) -> dict[str, Any]:
        interface = object.__getattribute__(self, "_t_interface")
        if interface is None:
            cluster = object.__getattribute__(self, "_t_cluster")
            info = cluster.client.request_json("GET", f"/_tether/objects/{object.__getattribute__(self, '_t_name')}")
            interface = info["interface"]
            object.__setattr__(self, "_t_interface", interface)
        return interface

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._t_name

    @property
    def system(self) -> Cluster:
        return self._t_cluster

    def __repr__(self) -> str:
        interface = object.__getattribute__(self, "_t_interface") or {}
        return f"<RemoteInstance {self._t_name!r} ({interface.get('type', '?')}) on {self._t_cluster.name!r}>"

    def config(self) -> dict[str, Any]:
        return {"type": self.RESOURCE_TYPE, "name": self._t_name, "system": self._t_cluster.config(),
                "stream_logs": self._t_stream_logs, "timeout": self._t_timeout}

    def _take_name(self, address: Address) -> None:
        object.__setattr__(self, "_t_name", alias(self._t_cluster, self._t_name, address))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RemoteInstance:
        # "alias": the object's name in configs saved by tether before daemon aliases
        return cls(resources.from_config(config["system"]), config.get("alias") or config["name"],
                   None, config.get("stream_logs", True), config.get("timeout"))


class RemoteAttributes:
    """``instance.remote``: reads and writes the remote object's attributes."""

    __slots__ = ("_instance",)

    def __init__(self, instance: RemoteInstance) -> None:
        object.__setattr__(self, "_instance", instance)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return RemoteInstance.fetch(self._instance, attr)  # not a remote method named fetch

    def __setattr__(self, attr: str, value: Any) -> None:
        self._instance.__setattr__(attr, value)

    def __call__(self) -> Any:
        return RemoteInstance.fetch(self._instance)


class RemoteValue:
    """A value stored on the cluster (``cluster.get(key, remote=True)``); ``fetch()`` brings it here."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster, self.name = cluster, name

    def fetch(self) -> Any:
        return self.cluster.client.call(self.name, "__value__", timeout=default_timeout())

    def __repr__(self) -> str:
        return f"<RemoteValue {self.name!r} on {self.cluster.name!r}>"


class RemoteFunction(Resource, RemoteCallable):
    """A function deployed on a cluster: call it like the local one (``fn(x)``, ``fn.aio(x)``,
    ``fn.map(xs)``, ``fn.submit(x)``, ``fn.remote(x)``), from this or any other process.

    Made by ``Function.to()``, by ``cluster.get(name)``, or loaded by name once saved. It keeps the
    definition it was deployed from, when this process has it, for ``local()``, ``distribute()``
    and ``to()`` another cluster. ``timeout`` is its calls' default timeout in seconds (None: the
    process default, ``TETHER_CALL_TIMEOUT``; ``math.inf``: none), saved with it; see
    ``tether.core.invoke`` for ``timeout=`` on a call.
    """

    RESOURCE_TYPE = "function"

    def __init__(self, cluster: Cluster, name: str, interface: dict[str, Any] | None = None,
                 stream_logs: bool = True, definition: Function | None = None,
                 env: Env | None = None, timeout: float | None = None) -> None:
        self.system, self.name, self.interface = cluster, name, interface
        self.stream_logs, self.definition, self.env = stream_logs, definition, env
        self.timeout = stub_timeout(timeout)

    def _target(self):
        flags = ((self.interface or {}).get("methods") or {}).get("call") or {}
        return self.system, self.name, "call", flags, self.stream_logs, self.timeout

    call = RemoteCallable.__call__

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the original function in this process."""
        return self._definition("local()").local(*args, **kwargs)

    def to(self, system: Cluster | str | None = None, env: Env | str | list[str] | None = None,
           name: str | None = None, **options: Any) -> RemoteFunction:
        """Deploy the same function elsewhere (another cluster, env or name)."""
        if self.timeout is not None:
            options.setdefault("timeout", self.timeout)
        return self._definition("to()").to(system, env=env if env is not None else self.env,
                                           name=name or self.name, **options)

    def distribute(self, kind: str, num_nodes: int | None = None, procs_per_node: int = 1,
                   port: int | None = None, ray_start_args: list[str] | None = None) -> DistributedFunction:
        """Run this function with a distributed engine across the cluster's nodes.

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

    def _take_name(self, address: Address) -> None:
        self.name = alias(self.system, self.name, address)

    def notebook(self, persist: bool = False, sync_package_on_close: str | None = None,
                 port_forward: int = 8888, **options: Any) -> Notebook:
        """JupyterLab on this function's cluster, with its env's env vars, working dir and node
        (``Cluster.notebook``, whose other options ``options`` are)."""
        return self.system.notebook(persist=persist, sync_package_on_close=sync_package_on_close,
                                    port_forward=port_forward, env=options.pop("env", self.env), **options)

    def _definition(self, what: str) -> Function:
        if self.definition is None:
            raise ConfigError(f"function {self.name!r} was loaded by name, without its code: {what} "
                              "needs tether.function(fn) in this process", service=self.name)
        return self.definition

    def __repr__(self) -> str:
        return f"<RemoteFunction {self.name!r} on {self.system.name!r}>"

    def config(self) -> dict[str, Any]:
        definition = self.definition.config() if self.definition is not None else {}
        return {**definition, "type": self.RESOURCE_TYPE, "name": self.name,
                "system": self.system.config(), "env": self.env.config() if self.env else None,
                "stream_logs": self.stream_logs, "interface": self.interface, "timeout": self.timeout}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RemoteFunction:
        definition = None
        if config.get("import"):
            definition = resources.resource_class("function").from_config({**config, "system": None})
        return cls(resources.from_config(config["system"]), config["name"], config.get("interface"),
                   config.get("stream_logs", True), definition,
                   Env.from_config(config["env"]) if config.get("env") else None, config.get("timeout"))


def stub_timeout(timeout: float | None) -> float | None:
    """A stub's default timeout: seconds, ``math.inf`` (never, whatever the process default), or
    None (the process default)."""
    if timeout is None or timeout == float("inf"):
        return timeout
    return check_timeout(timeout, "the stub's timeout")


def alias(cluster: Cluster, name: str, address: Address) -> str:
    """The name a handle on the object ``name`` takes when saved at ``address``: the address's
    last part (``embed`` for ``@/team/embed``, as Runhouse's ``name``). When that differs from
    ``name``, the daemon is asked to make it another name of the object (an alias, not a rename:
    handles on the first name keep working; ``daemon/aliases.py``)."""
    new = address.name.rsplit("/", 1)[-1]
    if new != name:
        cluster.client.alias(new, name)
    return new


def stub_for(cluster: Cluster, info: dict[str, Any]) -> Any:
    """The right handle for an object the daemon describes (``/_tether/objects/{name}``)."""
    kind = info["kind"]
    if kind == "function":
        return RemoteFunction(cluster, info["name"], info.get("interface"))
    if kind == "value":
        return RemoteValue(cluster, info["name"])
    return RemoteInstance(cluster, info["name"], info.get("interface"))
