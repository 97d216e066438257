"""What a resource name means: this machine's local registry, or a path in the team registry.

    ~/x            this machine only (the local registry, ``$TETHER_HOME/resources/``)
    @/x            the current user's: ``/<user>/x`` in the team registry
    /alice/x       absolute: owner ``alice``
    x              ``@/x`` when a team registry is configured, else ``~/x`` (as before registries)

Folders are more ``/``: ``@/team/embedder``. A resource's ``name`` is the part after the owner
(``x`` for ``/alice/x``); its ``rns_address`` is the whole address (Runhouse's name for it).
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.core.registry import remote
from tether.errors import ConfigError


@dataclass(frozen=True)
class Address:
    local: bool
    path: str  # the local registry's name, or the team registry's /owner/... path
    name: str  # the resource's own name: what it is called once loaded

    @property
    def rns_address(self) -> str:
        return f"~/{self.path}" if self.local else self.path


def _no_registry(name: str) -> ConfigError:
    return ConfigError(
        f"{name!r} names a resource in a team registry, but none is configured: run `tether login URL` "
        f"or set {remote.ENV_URL} and {remote.ENV_TOKEN} (or use ~/{name.split('/')[-1]} for this machine)")


def resolve(name: str) -> Address:
    """The address ``name`` stands for (the current user is asked of the registry for ``@/``)."""
    if not name or not name.strip("/~@"):
        raise ConfigError(f"bad resource name {name!r}: a resource needs a name to be saved or loaded")
    if name.startswith("~/"):
        rest = name[2:].strip("/")
        return Address(True, rest, rest)
    login = remote.configured()
    if name.startswith("@/"):
        if login is None:
            raise _no_registry(name)
        return _absolute(f"/{remote.RegistryClient(login).whoami()['user']}/{name[2:].strip('/')}")
    if name.startswith("/"):
        if login is None:
            raise _no_registry(name)
        return _absolute(name)
    if login is None:
        return Address(True, name, name)
    return resolve(f"@/{name}")


def _absolute(path: str) -> Address:
    parts = path.strip("/").split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"bad registry name {path!r}: /owner/name, e.g. /alice/embedder")
    return Address(False, "/" + "/".join(parts), "/".join(parts[1:]))
