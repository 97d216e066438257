"""Image: what a cluster's machines are set up with once, at bring-up, before your code runs there.

    image = (tether.Image("trainer")
             .from_docker("nvcr.io/nvidia/pytorch:24.01-py3")   # on-demand launchers only
             .install_packages(["numpy", "pandas"])
             .run_bash(["apt-get install -y ffmpeg"])
             .set_env_vars({"OMP_NUM_THREADS": "1"}))
    gpu = tether.ondemand_cluster("gpu", accelerators="A10G:1", image=image)

Each step runs once per machine, in order: ``tether.core.image_apply`` records a step on the node
(in its cluster state dir) under a key made of the step's content and the keys of the steps
before it, so that a second ``up_if_not()`` skips what is done, and a changed step re-runs with
every step after it. An Image is plain data (``config()``), saved and loaded like an Env.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.core.images import _check_env_vars, _check_reqs
from tether.core.registry import store
from tether.core.resources import Resource
from tether.errors import ConfigError

#: step kinds, in Runhouse's names
KINDS = ("install_packages", "run_bash", "set_env_vars")


@dataclass(frozen=True)
class ImageStep:
    """One setup step: ``kind`` (one of :data:`KINDS`) and what it takes (JSON-able)."""

    kind: str
    args: dict[str, Any]

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "args": self.args}

    def key(self, previous: str) -> str:
        """This step's record key: its content chained to the key of the step before it, so that
        a change anywhere re-runs that step and every later one."""
        text = json.dumps([previous, self.kind, self.args], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def describe(self) -> str:
        """A short line for progress output."""
        if self.kind == "install_packages":
            return f"install_packages {' '.join(self.args['reqs'])}"
        if self.kind == "run_bash":
            text = " && ".join(self.args["commands"])
            return f"run_bash {text[:80]}{'...' if len(text) > 80 else ''}"
        return f"set_env_vars {', '.join(sorted(self.args['env_vars']))}"


@dataclass
class Image(Resource):
    """A cluster's setup: a docker base image (where the launcher can start one) and steps.

    Args:
        name: the image's name (for ``save()`` and progress output).
        docker_image: the docker image id the machines start from (``from_docker``).
        steps: the setup steps, in order (built with the chainable methods).
    """

    RESOURCE_TYPE = "image"

    name: str | None = None
    docker_image: str | None = None
    steps: list[ImageStep] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError(f"Image name is a string, not {type(self.name).__name__}")

    # -- the chainable steps (Runhouse's names) --------------------------------------------------

    def from_docker(self, image_id: str) -> Image:
        """Start the machines from a docker image (``"nvcr.io/nvidia/pytorch:24.01-py3"``; a
        ``"docker:"`` prefix is accepted). Only launchers that make machines can: a local or
        SSH cluster's machine already runs, and is refused with a ConfigError at definition."""
        if not isinstance(image_id, str) or not image_id.strip():
            raise ConfigError(f"from_docker() takes a docker image id such as "
                              f"'python:3.11-slim', not {image_id!r}")
        image_id = image_id.strip()
        image_id = image_id[len("docker:"):] if image_id.startswith("docker:") else image_id
        if self.docker_image and self.docker_image != image_id:
            raise ConfigError(f"Image {self.name!r} already starts from {self.docker_image!r}: "
                              "an image has one docker base")
        self.docker_image = image_id
        return self

    def install_packages(self, reqs: list[str] | str) -> Image:
        """Install packages into the cluster's default env on every node (uv where the node has
        it, else pip). Each call is one step."""
        reqs = _check_reqs([reqs] if isinstance(reqs, str) else reqs)
        if not reqs:
            raise ConfigError("install_packages() needs at least one requirement, e.g. ['numpy']")
        return self._add("install_packages", reqs=reqs)

    pip_install = install_packages  # Runhouse's older name

    def run_bash(self, commands: list[str] | str) -> Image:
        """Run shell commands on every node, in order; the step fails at the first that fails.
        Each call is one step."""
        commands = [commands] if isinstance(commands, str) else commands
        if not isinstance(commands, (list, tuple)) or not commands or not all(
                isinstance(c, str) and c.strip() for c in commands):
            raise ConfigError(f"run_bash() takes a command or a list of commands (non-empty "
                              f"strings), not {commands!r:.80}")
        return self._add("run_bash", commands=list(commands))

    def set_env_vars(self, env_vars: dict[str, str] | str) -> Image:
        """Environment variables of every worker process and command on the cluster: a dict, or
        the path of a ``.env`` file here (read now: its values go into the image)."""
        if isinstance(env_vars, (str, Path)):
            env_vars = _read_dotenv(Path(env_vars))
        env_vars = _check_env_vars(env_vars)
        if not env_vars:
            raise ConfigError("set_env_vars() needs at least one variable, e.g. {'OMP_NUM_THREADS': '1'}")
        return self._add("set_env_vars", env_vars=env_vars)

    def _add(self, kind: str, **args: Any) -> Image:
        self.steps.append(ImageStep(kind, args))
        return self

    # -- what a launcher and the recorder read ----------------------------------------------------

    @property
    def image_id(self) -> str | None:
        """SkyPilot's form of the docker base, ``"docker:<id>"`` (None without one)."""
        return f"docker:{self.docker_image}" if self.docker_image else None

    def keyed_steps(self) -> list[tuple[str, ImageStep]]:
        """``(key, step)`` in order, each key chained to the ones before (see ``ImageStep.key``)."""
        out, previous = [], self.docker_image or ""
        for step in self.steps:
            previous = step.key(previous)
            out.append((previous, step))
        return out

    def env_vars(self) -> dict[str, str]:
        """Every ``set_env_vars`` step merged, later steps winning."""
        merged: dict[str, str] = {}
        for step in self.steps:
            if step.kind == "set_env_vars":
                merged.update(step.args["env_vars"])
        return merged

    # -- config --------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": self.RESOURCE_TYPE, "name": self.name,
                                  "steps": [s.config() for s in self.steps]}
        if self.docker_image:
            config["docker_image"] = self.docker_image
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Image:
        image = cls(name=config.get("name"))
        if config.get("docker_image"):
            image.from_docker(config["docker_image"])
        for step in config.get("steps") or []:
            kind, args = step.get("kind"), step.get("args") or {}
            if kind not in KINDS:
                raise ConfigError(f"unknown image step {kind!r} in image {image.name!r} (known: {', '.join(KINDS)})")
            getattr(image, kind)(*args.values())
        return image


def _read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` and quotes allowed, ``#`` comments skipped)."""
    try:
        text = path.expanduser().read_text()
    except OSError as exc:
        raise ConfigError(f"set_env_vars() could not read the .env file {str(path)!r}: {exc}") from None
    out = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, eq, value = line.partition("=")
        if not eq:
            raise ConfigError(f"{path}:{number} is not KEY=VALUE: {line!r:.60}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def resolve_image(value: Image | str | dict | None) -> Image | None:
    """What ``image=`` takes: an Image, a saved image's name, a docker image id (``"docker:..."``,
    Runhouse's ``image_id``), or an image config."""
    if value is None or isinstance(value, Image):
        return value
    if isinstance(value, dict):
        return Image.from_config(value)
    if isinstance(value, str):
        saved = None if value.startswith("docker:") else store.find(value)
        if saved is not None and saved[0].get("type") == "image":
            found = Image.from_config(saved[0])
            found.rns_address = saved[1].rns_address
            return found
        return Image().from_docker(value)
    raise ConfigError(f"image= takes a tether.Image(...), a saved image's name or a docker image id, "
                      f"not {type(value).__name__}")
