"""What a resource name means: this machine's local registry, or a path in the team registry.

    ~/x            this machine only (the local registry, ``$TETHER_HOME/resources/``)
    @/x            the current user's: ``/<user>/x`` in the team registry
    /alice/x       absolute: owner ``alice``
    ^x             built in to tether, read-only (``builtins.py``: ``^local``, ``^rh-cpu``...)
    x, ./x         in the current folder (``current_folder()``): ``@`` when a team registry is
                   configured, else ``~`` (as before registries); ``set_folder()`` changes it

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
    path: str  # the local registry's name, the team registry's /owner/... path, a built-in's name
    name: str  # the resource's own name: what it is called once loaded
    builtin: bool = False  # ``^x``: one of tether's built-in configs (``builtins.py``)

    @property
    def rns_address(self) -> str:
        if self.builtin:
            return f"^{self.path}"
        return f"~/{self.path}" if self.local else self.path


#: ``set_folder()``'s stack of folders, the last one current (``~/team``, ``/alice/team``)
_folders: list[str] = []


def current_folder() -> str:
    """Where a bare name is (Runhouse's ``rh.current_folder()``): the folder ``set_folder()`` set,
    else ``/<you>`` with a team registry (asked of it once per token), else ``~`` (this machine)."""
    if _folders:
        return _folders[-1]
    return "~" if remote.configured() is None else _user_folder()


def _user_folder() -> str:
    login = remote.configured()
    if login is None:
        raise _no_registry("@")
    return f"/{remote.RegistryClient(login).whoami()['user']}"


def set_folder(path: str) -> str:
    """Make ``path`` (any name form: ``~/team``, ``@/team``, ``/alice/team``, or ``team`` inside
    the current folder) the current folder of this process; ``unset_folder()`` goes back."""
    if path in ("~", "@"):
        folder = "~" if path == "~" else _user_folder()
    else:
        address = resolve(path)
        if address.builtin:
            raise ConfigError(f"{path!r} is a built-in resource, not a folder")
        folder = address.rns_address
    _folders.append(folder.rstrip("/"))
    return _folders[-1]


def unset_folder() -> str:
    """Go back to the folder before the last ``set_folder()``; returns the current one."""
    if _folders:
        _folders.pop()
    return current_folder()


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
    if name.startswith("^"):
        rest = name[1:].strip("/")
        return Address(True, rest, rest, builtin=True)
    if name.startswith("./"):
        name = name[2:]
    login = remote.configured()
    if name.startswith("@/"):
        if login is None:
            raise _no_registry(name)
        return _absolute(f"/{remote.RegistryClient(login).whoami()['user']}/{name[2:].strip('/')}")
    if name.startswith("/"):
        if login is None:
            raise _no_registry(name)
        return _absolute(name)
    if _folders:
        return resolve(f"{_folders[-1]}/{name}")
    if login is None:
        return Address(True, name, name)
    return resolve(f"@/{name}")


def _absolute(path: str) -> Address:
    parts = path.strip("/").split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"bad registry name {path!r}: /owner/name, e.g. /alice/embedder")
    return Address(False, "/" + "/".join(parts), "/".join(parts[1:]))
