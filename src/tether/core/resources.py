"""The Resource base: a name, a compact JSON ``config()``, ``from_config()``, ``save()``.

Every resource (cluster, function, module, remote instance, env, a pipeline's service record)
round-trips through its config, so a name saved in one process is loaded in another (an
orchestrator's next step) with ``tether.load(name)``.

A config names its type (``"type": "cluster"``); :data:`TYPES` says which class turns that type
back into a resource, by import path, so that loading one type imports only its own module. A
new resource type (a plugin's, or a later layer's) adds itself with :func:`register_type`.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from tether.core.registry import local
from tether.errors import ConfigError

#: resource type -> "module:Class" whose ``from_config`` makes it again
TYPES: dict[str, str] = {
    "cluster": "tether.core.cluster:Cluster",
    "env": "tether.core.images:Env",
    "image": "tether.core.image:Image",
    "function": "tether.core.function:Function",
    "module": "tether.core.module:Module",
    "instance": "tether.core.stubs:RemoteInstance",
    "service": "tether.steps.services:Service",  # saved by pipeline steps
    "folder": "tether.core.data.folder:Folder",
    "blob": "tether.core.data.blob:Blob",
    "table": "tether.core.data.table:Table",
}


class Resource:
    """Something with a name that can be saved and loaded by that name.

    Subclasses set ``RESOURCE_TYPE`` (a key of :data:`TYPES`), return a JSON-able dict from
    ``config()`` that always holds ``type`` and ``name``, and implement ``from_config``.
    """

    RESOURCE_TYPE: ClassVar[str] = "resource"

    name: str | None

    def config(self) -> dict[str, Any]:
        """A JSON-able dict that ``from_config`` turns back into an equal resource."""
        return {"type": self.RESOURCE_TYPE, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Resource:
        raise NotImplementedError

    def save(self, name: str | None = None) -> Resource:
        """Save the config under ``name`` (default: the resource's name) in the local registry."""
        if name:
            self.name = name
        local.save(self.config())
        return self

    def share(self, *users: str, access_level: str = "read") -> None:
        raise ConfigError(
            "sharing needs the team registry server (`tether registry serve`), which this version "
            "does not include yet; save() keeps resources in the local registry"
        )

    def delete_configs(self) -> None:
        """Remove the saved config of this resource from the local registry."""
        if self.name:
            local.delete(self.name)


def register_type(resource_type: str, target: str) -> None:
    """Make configs of ``resource_type`` load through ``target`` (``"package.module:Class"``)."""
    TYPES[resource_type] = target


def resource_class(resource_type: str | None, name: str | None = None) -> type[Resource]:
    try:
        module, _, qualname = TYPES[str(resource_type)].partition(":")
    except KeyError:
        raise ConfigError(f"unknown resource type {resource_type!r} in config {name!r} (known: "
                          f"{', '.join(sorted(TYPES))})") from None
    return getattr(importlib.import_module(module), qualname)


def from_config(config: dict[str, Any]) -> Resource:
    """The resource a config describes (its class found by ``config["type"]``)."""
    return resource_class(config.get("type"), config.get("name")).from_config(config)


def load(name: str) -> Resource:
    """Load any saved resource by name (a cluster, a function, a module instance, an env)."""
    return from_config(local.load(name))


def exists(name: str) -> bool:
    """Whether a resource is saved under ``name`` in the local registry."""
    return local.exists(name)
