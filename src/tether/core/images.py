"""Env specs: what a worker process is made of (packages, env vars, working dir, interpreter).

Objects deployed with the same env share one worker process on the cluster; different envs get
different processes, so their packages and state stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.core.registry import store
from tether.core.resources import Resource
from tether.errors import ConfigError

DEFAULT_ENV = "default"


@dataclass
class Env(Resource):
    """A worker process spec.

    Args:
        reqs: pip requirements installed into a venv for this env on the cluster (built once, reused
            while the spec is unchanged; the project's other packages stay importable).
        env_vars: environment variables of the worker process.
        name: the env's name; objects deployed with the same name share one worker.
        working_dir: the worker's working directory on the cluster.
        python: the base interpreter on the cluster (default: the daemon's default).
        compute: where the env's worker runs, e.g. ``{"node_idx": 1}`` (the second machine of a
            multi-node cluster; 0, the default, is the head). The caller still talks to the head
            only: it deploys to, and forwards calls to, that node.
        secrets: secrets its worker gets as env vars and 0600 files (``tether.secret(...)``, a
            saved secret's name, or a provider's: ``"aws"``); given at each deploy, never part of
            the spec the daemon keeps (docs/secrets.md).
    """

    RESOURCE_TYPE = "env"

    reqs: list[str] = field(default_factory=list)
    env_vars: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    working_dir: str | None = None
    python: str | None = None
    compute: dict[str, Any] = field(default_factory=dict)
    secrets: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reqs = _check_reqs(self.reqs)
        if isinstance(self.secrets, str) or not isinstance(self.secrets or [], (list, tuple)):
            raise ConfigError(f"env secrets= is a list of secrets or secret names, not {self.secrets!r:.60}")
        self.secrets = list(self.secrets or [])
        self.env_vars = _check_env_vars(self.env_vars)
        for key in ("name", "working_dir", "python"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"env {key}= is a string, not {type(value).__name__} {value!r:.60}")
        if not isinstance(self.compute or {}, dict):
            raise ConfigError(f"env compute= is a dict such as {{'node_idx': 1}}, not {type(self.compute).__name__}")
        self.compute = dict(self.compute or {})
        node_idx = self.compute.get("node_idx", 0)
        if not isinstance(node_idx, int) or isinstance(node_idx, bool) or node_idx < 0:
            raise ConfigError(f"compute['node_idx'] is a node index (0 is the head), not {node_idx!r}")

    @property
    def env_name(self) -> str:
        return self.name or DEFAULT_ENV

    def wire_spec(self) -> dict[str, Any]:
        spec = {"name": self.env_name, "reqs": self.reqs, "env_vars": self.env_vars,
                "working_dir": self.working_dir, "python": self.python}
        node_idx = (self.compute or {}).get("node_idx", 0)
        if node_idx:
            spec["node_idx"] = node_idx  # the head forwards the deploy to that node
        return spec

    def config(self) -> dict[str, Any]:
        config = {"type": self.RESOURCE_TYPE, **self.wire_spec(), "name": self.name}
        if self.compute:
            config["compute"] = dict(self.compute)
        if self.secrets:  # their names: the values stay in the secrets' own stores
            config["secrets"] = [s if isinstance(s, str) else (s.rns_address or s.name or s.provider)
                                 for s in self.secrets]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Env:
        return cls(reqs=config.get("reqs") or [], env_vars=config.get("env_vars") or {},
                   name=config.get("name"), working_dir=config.get("working_dir"),
                   python=config.get("python"), compute=config.get("compute") or {},
                   secrets=config.get("secrets") or [])


def _check_reqs(reqs: Any) -> list[str]:
    """A list of requirement strings; a lone string would be installed letter by letter."""
    if reqs is None:
        return []
    if isinstance(reqs, str):
        raise ConfigError(f"env reqs= is a list of requirements, not the string {reqs!r:.60} "
                          f"(write reqs=[{reqs!r:.60}])")
    if not isinstance(reqs, (list, tuple)):
        raise ConfigError(f"env reqs= is a list of requirement strings, not {type(reqs).__name__}")
    bad = [r for r in reqs if not isinstance(r, str)]
    if bad:
        raise ConfigError(f"env reqs= holds requirement strings such as 'numpy>=1.26', not "
                          f"{type(bad[0]).__name__} {bad[0]!r:.60}")
    return list(reqs)


def _check_env_vars(env_vars: Any) -> dict[str, str]:
    """Names to string values (numbers are written out as they print, as a shell would)."""
    if env_vars is None:
        return {}
    if not isinstance(env_vars, dict):
        raise ConfigError(f"env env_vars= is a dict of names to values, not {type(env_vars).__name__}")
    out = {}
    for key, value in env_vars.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ConfigError(f"env env_vars= has a bad variable name {key!r:.60}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or "\0" in str(value):
            raise ConfigError(f"env env_vars[{key!r}] is a string (or a number), not "
                              f"{type(value).__name__} {value!r:.60}")
        out[key] = str(value)
    return out


def env(reqs: list[str] | None = None, env_vars: dict[str, str] | None = None, name: str | None = None,
        working_dir: str | None = None, python: str | None = None,
        compute: dict[str, Any] | None = None, secrets: list[Any] | None = None) -> Env:
    """Make an env, or load a saved one when only ``name`` is given and it was saved."""
    if (name and reqs is None and env_vars is None and working_dir is None and python is None
            and compute is None and secrets is None):
        saved = store.find(name)
        if saved is not None:
            found = Env.from_config(saved[0])
            found.rns_address = saved[1].rns_address
            return found
    return Env(reqs=[] if reqs is None else reqs, env_vars={} if env_vars is None else env_vars, name=name, working_dir=working_dir,
               python=python, compute=compute or {}, secrets=secrets or [])


def resolve_env(value: Env | str | list[str] | None) -> Env:
    """Accept what Runhouse accepted for ``env=``: an Env, an env name, or a list of reqs."""
    if value is None:
        return Env()
    if isinstance(value, Env):
        return value
    if isinstance(value, str):
        return env(name=value)
    if isinstance(value, (list, tuple)):
        return Env(reqs=list(value))
    raise ConfigError(f"env= takes a tether.env(...), an env name or a list of requirements, not {type(value).__name__}")
