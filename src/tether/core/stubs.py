"""Client-side proxies of remote objects: an instance's methods and attributes, a stored value.

Attribute rules of a ``RemoteInstance``: the remote class's own methods always win (a user method
named ``save`` is the user's); then the stub's own API (``save``, ``config``, ``name``); anything
else is read or written on the remote object (properties and instance attributes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tether.core.errors import NotFoundError
from tether.core.invoke import RemoteCallable
from tether.core.resources import Resource

if TYPE_CHECKING:
    from tether.core.cluster import Cluster

_OWN = frozenset({"_t_cluster", "_t_name", "_t_interface", "_t_stream_logs", "_t_methods"})


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
                self._method, flags, object.__getattribute__(inst, "_t_stream_logs"))

    def __repr__(self) -> str:
        return f"<RemoteMethod {object.__getattribute__(self._instance, '_t_name')}.{self._method}>"


class RemoteInstance(Resource):
    """A live object on a cluster, found by name from any process."""

    RESOURCE_TYPE = "instance"

    def __init__(self, cluster: Cluster, name: str, interface: dict[str, Any] | None = None,
                 stream_logs: bool = True) -> None:
        object.__setattr__(self, "_t_cluster", cluster)
        object.__setattr__(self, "_t_name", name)
        object.__setattr__(self, "_t_interface", interface)
        object.__setattr__(self, "_t_stream_logs", stream_logs)
        object.__setattr__(self, "_t_methods", {})

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
        # a property or an instance attribute of the remote object
        try:
            return self._t_cluster.client.call(self._t_name, attr, stream_logs=self._t_stream_logs)
        except NotFoundError as exc:  # also an AttributeError: getattr(stub, a, default), hasattr work
            raise RemoteAttributeError(exc.message, **exc.fields) from exc

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr in _OWN:
            object.__setattr__(self, attr, value)
        else:
            self._t_cluster.client.call(self._t_name, "__setattr__", (attr, value), stream_logs=self._t_stream_logs)

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
                "stream_logs": self._t_stream_logs}

    def save(self, name: str | None = None) -> RemoteInstance:  # type: ignore[override]
        from tether.core.registry import local

        config = self.config()
        if name:
            config["alias"], config["name"] = self._t_name, name
        local.save(config)
        return self

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RemoteInstance:
        from tether.core.function import cluster_from_config

        return cls(cluster_from_config(config["system"]), config.get("alias") or config["name"],
                   None, config.get("stream_logs", True))


class RemoteValue:
    """A value stored on the cluster (``cluster.get(key, remote=True)``); ``fetch()`` brings it here."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster, self.name = cluster, name

    def fetch(self) -> Any:
        return self.cluster.client.call(self.name, "__value__")

    def __repr__(self) -> str:
        return f"<RemoteValue {self.name!r} on {self.cluster.name!r}>"


def stub_for(cluster: Cluster, info: dict[str, Any]) -> Any:
    """The right proxy for an object the daemon describes (``/_tether/objects/{name}``)."""
    from tether.core.function import Function

    kind = info["kind"]
    if kind == "function":
        return Function(None, info["name"], system=cluster, interface=info.get("interface"))
    if kind == "value":
        return RemoteValue(cluster, info["name"])
    return RemoteInstance(cluster, info["name"], info.get("interface"))
