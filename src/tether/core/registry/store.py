"""Save, load, find and delete configs by any name form (``names``): the local registry or the
team registry. The user API (``core/resources.py``, the factories) goes through here only."""

from __future__ import annotations

from typing import Any

from tether.core.registry import builtins, local, remote
from tether.core.registry.names import Address, resolve
from tether.errors import ConfigError, NotFoundError


def registry_client() -> remote.RegistryClient:
    """The configured team registry's client (ConfigError when none is)."""
    found = remote.client()
    if found is None:  # resolve() said remote, so one is configured
        raise ConfigError("no team registry is configured")
    return found


def save(address: Address, config: dict[str, Any]) -> int | None:
    """Save ``config`` at ``address``; the new version's number (None in the local registry)."""
    _writable(address)
    if address.local:
        local.save({**config, "name": address.path})
        return None
    return registry_client().put(address.path, config)


def load(name: str, version: int | None = None) -> tuple[dict[str, Any], Address]:
    """The config saved as ``name`` (``version``: a team registry's saved version) and its address."""
    address = resolve(name)
    if address.builtin:
        found = builtins.config(address.path)
        if found is None:
            raise NotFoundError(f"no built-in resource named {name!r} (built in: "
                                f"{', '.join('^' + n for n in builtins.names())})", name=name)
        return found, address
    if address.local:
        if version is not None:
            raise ConfigError(f"{name!r} is in this machine's local registry, which keeps one version; "
                              "versions are kept by a team registry (`tether login URL`)")
        return local.load(address.path), address
    return registry_client().get(address.path, version)["config"], address


def find(name: str) -> tuple[dict[str, Any], Address] | None:
    """Like :func:`load`, or None when nothing is saved as ``name``."""
    address = resolve(name)
    if address.builtin:
        found = builtins.config(address.path)
        return None if found is None else (found, address)
    if address.local:
        return (local.load(address.path), address) if local.exists(address.path) else None
    try:
        return registry_client().get(address.path)["config"], address
    except NotFoundError:
        return None


def exists(name: str) -> bool:
    return find(name) is not None


def delete(name: str) -> None:
    address = resolve(name)
    _writable(address)
    if address.local:
        local.delete(address.path)
        return
    try:
        registry_client().delete(address.path)
    except NotFoundError:
        pass


def configs(folder: str) -> list[tuple[str, dict[str, Any]]]:
    """``(name, config)`` of each resource saved under ``folder``: in the local registry, or the
    current user's in the team registry (``@/folder/...``; one request per resource, so for the
    few records a pipeline keeps, e.g. its services)."""
    address = resolve(f"{folder.strip('/')}/_")
    prefix = address.path[:-1]
    if address.local:
        found = []
        for name in local.names():
            if name.startswith(prefix):
                try:
                    found.append((name, local.load(name)))
                except (NotFoundError, ValueError):
                    continue
        return found
    client = registry_client()
    found = []
    for row in client.list(prefix):
        try:
            found.append((row["path"], client.get(row["path"])["config"]))
        except NotFoundError:
            continue
    return found


def remote_address(name: str) -> str:
    """The team registry path of ``name`` (ConfigError when it is a local name)."""
    address = resolve(name)
    if address.local:
        raise ConfigError(f"{name!r} is saved on this machine only (local registry); sharing and "
                          "versions need a team registry: `tether login URL`, then save() it again")
    return address.path


def _writable(address: Address) -> None:
    if address.builtin:
        raise ConfigError(f"{address.rns_address} is built in to tether and read-only: save a copy "
                          f"under a name of yours, e.g. .save({address.path!r})")
