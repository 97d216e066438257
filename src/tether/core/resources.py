"""The Resource base: a name, a compact JSON ``config()``, ``from_config()``, ``save()``, sharing.

Every resource (cluster, function, module, remote instance, env, a pipeline's service record)
round-trips through its config, so a name saved in one process is loaded in another (an
orchestrator's next step) with ``tether.load(name)``. Names are this machine's (``~/x``, and any
name when no team registry is configured) or a team registry's (``/alice/x``, ``@/x``): see
``tether.core.registry.names``. In a team registry every save is a version, and resources are
shared with users and groups (``share``), who see them in ``shared_with_me()``.

A config names its type (``"type": "cluster"``); :data:`TYPES` says which class turns that type
back into a resource, by import path, so that loading one type imports only its own module. A
new resource type (a plugin's, or a later layer's) adds itself with :func:`register_type`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, ClassVar

from tether.core.registry import remote, store
from tether.core.registry.names import Address, resolve
from tether.errors import ConfigError

#: resource type -> "module:Class" whose ``from_config`` makes it again
TYPES: dict[str, str] = {
    "cluster": "tether.core.cluster:Cluster",
    "env": "tether.core.images:Env",
    "image": "tether.core.image:Image",
    "secret": "tether.core.secrets:Secret",
    "function": "tether.core.function:Function",
    "module": "tether.core.module:Module",
    "instance": "tether.core.stubs:RemoteInstance",
    "service": "tether.steps.services:Service",  # saved by pipeline steps
    "folder": "tether.core.data.folder:Folder",
    "blob": "tether.core.data.blob:Blob",
    "table": "tether.core.data.table:Table",
}
ACCESS_LEVELS = ("read", "write")


class Resource:
    """Something with a name that can be saved and loaded by that name.

    Subclasses set ``RESOURCE_TYPE`` (a key of :data:`TYPES`), return a JSON-able dict from
    ``config()`` that always holds ``type`` and ``name``, and implement ``from_config``.
    """

    RESOURCE_TYPE: ClassVar[str] = "resource"

    name: str | None
    #: where it was saved or loaded from: ``/alice/x`` (team registry), ``~/x`` (this machine)
    rns_address: str | None = None

    def config(self) -> dict[str, Any]:
        """A JSON-able dict that ``from_config`` turns back into an equal resource."""
        return {"type": self.RESOURCE_TYPE, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Resource:
        raise NotImplementedError

    def save(self, name: str | None = None) -> Resource:
        """Save the config under ``name`` (default: where it was loaded from or saved last, else
        its name): in the team registry as a new version when one is configured (``@/x``,
        ``/alice/x``), else on this machine."""
        address = _address(name or self.rns_address or self.name)
        self._take_name(address)
        store.save(address, self._config_to_save(address))
        _remember(self, address)
        return self

    def _take_name(self, address: Address) -> None:
        """Be named as saved at ``address`` (a deployed handle also names its object so:
        ``tether.core.stubs``)."""
        self.name = address.name

    def _config_to_save(self, address: Address) -> dict[str, Any]:
        """What ``save()`` writes at ``address`` (a cluster adds how to reach it: ``Cluster``)."""
        return self.config()

    def _registry_path(self) -> str:
        if self.rns_address and not self.rns_address.startswith("~/"):
            return self.rns_address
        if not self.name:
            raise ConfigError("this resource has no name: save(name=...) it in the team registry first")
        return store.remote_address(self.rns_address or self.name)

    def share(self, users: str | Sequence[str], *more: str, access_level: str = "read") -> list[dict[str, str]]:
        """Give users (``"bob"``) and groups (``"group:ml"``) ``access_level`` ``"read"`` (load it;
        call a cluster's services) or ``"write"`` (save new versions; deploy, tear down). Needs a
        team registry; only the owner (or an admin) shares. Returns who has access now."""
        return share(self._registry_path(), users, *more, access_level=access_level)

    def unshare(self, users: str | Sequence[str], *more: str) -> list[dict[str, str]]:
        """Take back what ``share`` gave (a grant to a cluster they hold ends within minutes)."""
        return unshare(self._registry_path(), users, *more)

    revoke = unshare  # Runhouse's name

    def shares(self) -> list[dict[str, str]]:
        """Who this resource is shared with: ``[{"principal": "user:bob", "access": "read"}]``."""
        return _client(self._registry_path()).shares(self._registry_path())

    def versions(self) -> list[dict[str, Any]]:
        """The saved versions: ``[{"version", "created", "created_by", "current"}]``, oldest first."""
        return versions(self._registry_path())

    def rollback(self, version: int) -> int:
        """Make ``version``'s config current again (as a new version, whose number is returned)."""
        return rollback(self._registry_path(), version)

    def delete_configs(self) -> None:
        """Remove the saved config of this resource from its registry."""
        if self.rns_address or self.name:
            store.delete(self.rns_address or self.name)


def _address(name: str | None) -> Address:
    if not name:
        raise ConfigError("a resource needs a name to be saved: pass name=... or call .save(name=...)")
    return resolve(name)


def _remember(resource: Any, address: Address) -> None:
    """Set ``rns_address`` without going through a remote instance's ``__setattr__``."""
    object.__setattr__(resource, "rns_address", address.rns_address)


def _client(path: str) -> remote.RegistryClient:
    found = remote.client()
    if found is None:
        raise ConfigError(f"{path} is a team registry name, but no registry is configured: `tether login URL`")
    return found


def _principals(users: str | Sequence[str], more: Sequence[str]) -> list[str]:
    found = [users] if isinstance(users, str) else list(users)
    return [*found, *more]


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


def load(name: str, version: int | None = None) -> Resource:
    """Load any saved resource by name (a cluster, a function, a module instance, an env);
    ``version``: one of a team registry's saved versions (default: the current one)."""
    config, address = store.load(name, version)
    resource = from_config(config)
    _remember(resource, address)
    if version is not None:  # a secret reads the values of that version
        object.__setattr__(resource, "_loaded_version", version)
    return resource


def exists(name: str, resource_type: str | None = None) -> bool:
    """Whether a resource is saved under ``name`` (any form: ``~/x``, ``@/x``, ``/alice/x``,
    ``^x``, ``x`` in the current folder; see ``names``); ``resource_type``: and is of that type
    (``"cluster"``, ``"function"``...)."""
    found = store.find(name)
    return found is not None and resource_type in (None, found[0].get("type"))


def share(name: str, users: str | Sequence[str], *more: str, access_level: str = "read") -> list[dict[str, str]]:
    """Share the team registry resource ``name`` (see :meth:`Resource.share`)."""
    if access_level not in ACCESS_LEVELS:
        raise ConfigError(f"access_level is 'read' or 'write', not {access_level!r}")
    path = store.remote_address(name)
    return _client(path).share(path, _principals(users, more), access_level)


def unshare(name: str, users: str | Sequence[str], *more: str) -> list[dict[str, str]]:
    """Stop sharing the team registry resource ``name`` with these users and groups."""
    path = store.remote_address(name)
    return _client(path).unshare(path, _principals(users, more))


def versions(name: str) -> list[dict[str, Any]]:
    """The saved versions of a team registry resource, oldest first."""
    path = store.remote_address(name)
    return _client(path).versions(path)


def rollback(name: str, version: int) -> int:
    """Make ``version`` of a team registry resource current again (a new version: its number)."""
    path = store.remote_address(name)
    return _client(path).rollback(path, version)


def shared_with_me() -> list[dict[str, Any]]:
    """What others shared with you in the team registry: ``[{"path", "type", "owner", "access", ...}]``."""
    found = remote.client()
    if found is None:
        raise ConfigError("shared_with_me() needs a team registry: `tether login URL` or set "
                          f"{remote.ENV_URL} and {remote.ENV_TOKEN}")
    return found.shared_with_me()
