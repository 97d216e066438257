"""Secrets: named credentials kept apart from every config, and given to a cluster's workers only.

    hf = tether.provider_secret("huggingface")               # reads ~/.cache/huggingface/token
    api = tether.secret("openai", values={"OPENAI_API_KEY": "sk-..."})
    api.save()                                                # team registry: encrypted at rest
    api.share("bob")                                          # bob may read its values
    env = tether.env(reqs=[...], secrets=["huggingface", api])  # its worker gets HF_TOKEN, ...
    cluster.sync_secrets(["aws"], env=env)                    # ... or now, to a running worker

A Secret's ``config()`` never holds its values: they live in ``_values`` and go only to (1) this
machine's secrets store, ``$TETHER_HOME/secrets/<name>.json`` (0600, in 0700 folders), beside the
secret's config in the local registry; (2) the team registry's secret route, which encrypts them
with its own key (``tether.registry.vault``); (3) a daemon's ``PUT /_tether/secrets/{env}``, which
gives them to that env's worker (``tether.daemon.secrets``). ``repr``/``str`` show names and keys
only, and errors name keys, never values. Values are loaded when first used (``.values``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tether.core import secret_providers as providers
from tether.core.registry import store
from tether.core.registry.names import resolve
from tether.core.resources import Resource, _address, _remember
from tether.errors import ConfigError, NotFoundError
from tether.state import secrets_dir, write_private

if TYPE_CHECKING:
    from tether.core.cluster import Cluster
    from tether.core.images import Env


class Secret(Resource):
    """A named set of secret values (``{"token": ...}``) and how a worker gets them.

    Args:
        name: its name (``~/x`` this machine, ``@/x`` / ``/alice/x`` a team registry, as any resource).
        values: the values; a provider secret reads them from this machine's credentials files.
        provider: ``aws``, ``gcp``, ``azure``, ``huggingface``, ``github``, ``ssh``, or None (custom).
        env_vars: value key -> env var name in the worker (a custom secret's keys are the names by default).
        path: the file a provider secret was read from (informational; not a secret).
    """

    RESOURCE_TYPE = "secret"

    def __init__(self, name: str | None = None, values: dict[str, Any] | None = None,
                 provider: str | None = None, env_vars: dict[str, str] | None = None,
                 path: str | None = None) -> None:
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"secret values= is a dict of keys to values, not {type(values).__name__}")
        if env_vars is not None and not isinstance(env_vars, dict):
            raise ConfigError(f"secret env_vars= maps value keys to env var names, not {type(env_vars).__name__}")
        self.name = name
        self.provider = providers.check_provider(provider) if provider else None
        self.env_vars = dict(env_vars or {})
        self.path = str(path) if path else None
        self._values = dict(values) if values is not None else None
        self._loaded_version: int | None = None  # tether.load(name, version=N): that version's values

    # -- what it shows: never the values ------------------------------------------------------------

    def __repr__(self) -> str:
        keys = "not loaded" if self._values is None else sorted(self._values)
        return f"Secret(name={self.name!r}, provider={self.provider!r}, keys={keys})"

    __str__ = __repr__

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": self.RESOURCE_TYPE, "name": self.name, "provider": self.provider}
        if self.env_vars:
            config["env_vars"] = dict(self.env_vars)
        if self.path:
            config["path"] = self.path
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Secret:
        return cls(name=config.get("name"), provider=config.get("provider"),
                   env_vars=config.get("env_vars"), path=config.get("path"))

    @classmethod
    def from_name(cls, name: str) -> Secret:
        """The secret saved as ``name`` (Runhouse's spelling of ``tether.secret(name)``)."""
        return resolve_secret(name)

    # -- values ----------------------------------------------------------------------------------------

    @property
    def values(self) -> dict[str, Any]:
        """The values (a copy), loaded from where the secret was saved, or its provider's files."""
        if self._values is None:
            self._values = self._load_values()
        return dict(self._values)

    @values.setter
    def values(self, values: dict[str, Any]) -> None:
        self._values = dict(values)

    def _load_values(self) -> dict[str, Any]:
        where = self.rns_address
        if where and where.startswith("~/"):
            return read_local(where[2:])
        if where:
            return store.registry_client().secret_values(where, getattr(self, "_loaded_version", None))
        if self.provider:
            return providers.read(self.provider, self.path)
        raise ConfigError(f"secret {self.name!r} has no values: pass values={{...}}, or load a saved one "
                          "with tether.secret(name)")

    # -- saving ----------------------------------------------------------------------------------------

    def save(self, name: str | None = None, save_values: bool = True) -> Secret:
        """Save the config, and the values unless ``save_values=False``: on this machine in
        ``$TETHER_HOME/secrets/`` (0600), or in the team registry, encrypted with its key."""
        address = _address(name or self.rns_address or self.name)
        values = self.values if save_values else None  # read before the address changes
        self.name = address.name
        self._loaded_version = None  # from now on, the current version
        if address.local:
            store.save(address, self.config())
            if values is not None:
                write_local(address.path, values)
        elif values is not None:
            store.registry_client().put_secret(address.path, self.config(), values)
        else:
            store.save(address, self.config())
        _remember(self, address)
        return self

    def delete_configs(self) -> None:
        where = self.rns_address or self.name
        address = resolve(where) if where else None
        if address is not None and address.local:
            _local_path(address.path).unlink(missing_ok=True)
        super().delete_configs()

    delete = delete_configs  # Runhouse's name

    def is_present(self) -> bool:
        """Whether its values can be had (given, saved, or in the provider's local files)."""
        try:
            self.values  # noqa: B018
        except (ConfigError, NotFoundError):
            return False
        return True

    # -- giving it out ---------------------------------------------------------------------------------

    def delivery(self) -> dict[str, Any]:
        """What a worker gets: env vars and 0600 files (``secret_providers.delivery``)."""
        return providers.delivery(self.provider, self.values, self.env_vars)

    def to(self, system: Cluster | str, env: Env | str | None = None) -> Secret:
        """Give it to ``env``'s worker on ``system`` (``cluster.sync_secrets([self], env=env)``)."""
        if isinstance(system, str):  # by name, as resources.TYPES does: cluster imports this module
            system = importlib.import_module("tether.core.cluster").resolve_cluster(system)
        system.sync_secrets([self], env=env)
        return self

    def write(self, path: str | Path | None = None, overwrite: bool = False) -> Path:
        """Write a file-backed secret (aws, gcp, huggingface, ssh) to ``path`` (default: the
        provider's usual file on this machine), 0600; an existing file is kept unless ``overwrite``."""
        files = self.delivery()["files"]
        if not files:
            raise ConfigError(f"secret {self.name!r} ({self.provider or 'custom'}) has no file to write; "
                              "its values become env vars")
        target = Path(path).expanduser() if path else providers.default_path(
            self.provider or "", (self.values.get("key_name") if self.provider == "ssh" else None))
        if target.exists() and not overwrite:
            raise ConfigError(f"{target} exists: pass overwrite=True to replace it")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(target, next(iter(files.values())))
        return target


# -- this machine's secrets store -----------------------------------------------------------------------


def _local_path(name: str) -> Path:
    parts = name.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"bad secret name {name!r}")
    return secrets_dir().joinpath(*parts[:-1], parts[-1] + ".json")


def write_local(name: str, values: dict[str, Any]) -> Path:
    path = _local_path(name)
    root = secrets_dir()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, json.dumps({"values": values}))
    return path


def read_local(name: str) -> dict[str, Any]:
    path = _local_path(name)
    try:
        return dict(json.loads(path.read_text())["values"])
    except FileNotFoundError:
        raise NotFoundError(f"secret {name!r} has no saved values on this machine ({path}): save them "
                            "with secret.save()", name=name) from None


# -- factories --------------------------------------------------------------------------------------------


def secret(name: str | None = None, values: dict[str, Any] | None = None, provider: str | None = None,
           env_vars: dict[str, str] | None = None) -> Secret:
    """A secret with ``values``; with only ``name``, the one saved under it (or, for a provider's
    name such as ``"aws"`` that was never saved, that provider's local credentials)."""
    if values is None and provider is None and env_vars is None and name:
        return resolve_secret(name)
    if provider is not None:
        return provider_secret(provider, name=name, values=values, env_vars=env_vars)
    return Secret(name=name, values={} if values is None else values, env_vars=env_vars)


def provider_secret(provider: str, name: str | None = None, values: dict[str, Any] | None = None,
                    path: str | None = None, env_vars: dict[str, str] | None = None) -> Secret:
    """``provider``'s credentials (read from ``path`` or its usual file now, unless ``values`` are
    given). Its name defaults to the provider's (an ssh key's: the key file's name)."""
    providers.check_provider(provider)
    if provider == "ssh" and path is None and name:
        path = str(providers.default_path("ssh", name))
    if values is None:
        values = providers.read(provider, path)
        path = path or str(providers.default_path(provider))
    default = Path(path).name if provider == "ssh" and path else provider
    return Secret(name=name or default, values=values, provider=provider, env_vars=env_vars, path=path)


def resolve_secret(item: Secret | str) -> Secret:
    """A Secret from what ``env(secrets=[...])`` and ``sync_secrets`` take: a Secret, a saved
    secret's name, or a provider's name (its local credentials)."""
    if isinstance(item, Secret):
        return item
    if not isinstance(item, str) or not item:
        raise ConfigError(f"a secret is a tether.secret(...), a saved secret's name or a provider's name "
                          f"({', '.join(providers.PROVIDERS)}), not {type(item).__name__}")
    found = store.find(item)
    if found is not None:
        config, address = found
        if config.get("type") != Secret.RESOURCE_TYPE:
            raise ConfigError(f"{item!r} is a saved {config.get('type')}, not a secret")
        loaded = Secret.from_config(config)
        _remember(loaded, address)
        return loaded
    if item in providers.PROVIDERS:
        return provider_secret(item)
    raise NotFoundError(f"no secret named {item!r} is saved, and it is not a provider "
                        f"({', '.join(providers.PROVIDERS)}): save it first with "
                        f"tether.secret({item!r}, values={{...}}).save()", name=item)


def sync(cluster: Cluster, secrets: Sequence[Secret | str] | None, env: Env | str | None = None) -> dict[str, Any]:
    """Give ``secrets`` to ``env``'s worker on ``cluster`` (``Cluster.sync_secrets``); the daemon's
    answer names what it set (env var names, file paths), never a value."""
    from tether.core.images import resolve_env

    env_obj = resolve_env(env)
    if (env_obj.compute or {}).get("node_idx", 0):
        raise ConfigError(f"env {env_obj.env_name!r} runs on node {env_obj.compute['node_idx']}; secrets "
                          "are given to envs on the head node only (for now)", cluster=cluster.name)
    if secrets is None:  # Runhouse's default: every provider configured on this machine
        secrets = [p for p in providers.PROVIDERS if p != "ssh" and providers.default_path(p).is_file()]
    items = [resolve_secret(s) for s in ([secrets] if isinstance(secrets, (str, Secret)) else secrets)]
    body = {"secrets": {s.name or s.provider or "secret": s.delivery() for s in items}}
    if not body["secrets"]:
        return {"env": env_obj.env_name, "secrets": {}}
    return cluster.client.request_json("PUT", f"/_tether/secrets/{quote(env_obj.env_name, safe='')}", body=body)
