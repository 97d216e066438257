"""Env specs: what a worker process is made of (packages, env vars, working dir, interpreter).

Objects deployed with the same env share one worker process on the cluster; different envs get
different processes, so their packages and state stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.core.registry import local
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
    """

    RESOURCE_TYPE = "env"

    reqs: list[str] = field(default_factory=list)
    env_vars: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    working_dir: str | None = None
    python: str | None = None
    compute: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reqs = list(self.reqs or [])
        self.env_vars = {str(k): str(v) for k, v in (self.env_vars or {}).items()}
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
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Env:
        return cls(reqs=config.get("reqs") or [], env_vars=config.get("env_vars") or {},
                   name=config.get("name"), working_dir=config.get("working_dir"),
                   python=config.get("python"), compute=config.get("compute") or {})


def env(reqs: list[str] | None = None, env_vars: dict[str, str] | None = None, name: str | None = None,
        working_dir: str | None = None, python: str | None = None,
        compute: dict[str, Any] | None = None) -> Env:
    """Make an env, or load a saved one when only ``name`` is given and it was saved."""
    if (name and reqs is None and env_vars is None and working_dir is None and python is None
            and compute is None):
        if local.exists(name):
            return Env.from_config(local.load(name))
    return Env(reqs=reqs or [], env_vars=env_vars or {}, name=name, working_dir=working_dir,
               python=python, compute=compute or {})


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
