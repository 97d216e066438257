"""Which installer builds envs and installs packages on this node: ``uv`` where it is, else pip.

uv (its PyPI wheel, a dependency of tether, so every node's ``~/.tether/venv`` has it) builds a
venv and installs into it several times faster than pip, mostly by resolving and unpacking in
parallel and linking from its cache. It is looked for next to the daemon's interpreter (the
``bin`` folder of the venv tether runs from), then on ``PATH``; when it is in neither, pip does
the work as it always did.

``TETHER_ENV_INSTALLER`` in the daemon's environment chooses: ``auto`` (the default), ``uv``
(uv, and a clear error when it is missing) or ``pip``.

uv does not read pip's configuration files. The usual pip settings given as environment
variables (``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS``, ``PIP_NO_INDEX``) are passed on as uv's
options, unless uv's own (``UV_INDEX_URL``...) are set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass

from tether.errors import ConfigError

CHOICES = ("auto", "uv", "pip")


@dataclass(frozen=True)
class Installer:
    """``name`` is "uv" or "pip"; ``uv`` the uv binary (None for pip)."""

    name: str
    uv: str | None = None
    version: str = ""

    @property
    def label(self) -> str:
        """What progress lines say: "uv 0.13.8", "pip"."""
        return f"{self.name} {self.version}".strip()

    def venv_argv(self, base: str, target: str) -> list[str]:
        """Make a venv at ``target`` from interpreter ``base``."""
        if self.uv:
            return [self.uv, "venv", "--quiet", "--python", base, target]
        return [base, "-m", "venv", target]

    def install_argv(self, python: str, reqs: list[str]) -> list[str]:
        """Install ``reqs`` into interpreter ``python``'s environment."""
        if self.uv:
            return [self.uv, "pip", "install", "--python", python, *_pip_settings(), *reqs]
        return [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
                *reqs]


def find() -> Installer:
    """The installer this node uses now (``TETHER_ENV_INSTALLER``, then what is installed)."""
    choice = (os.environ.get("TETHER_ENV_INSTALLER") or "auto").strip().lower()
    if choice not in CHOICES:
        raise ConfigError(f"TETHER_ENV_INSTALLER is one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "pip":
        return Installer("pip")
    uv = find_uv()
    if uv is None:
        if choice == "uv":
            raise ConfigError("TETHER_ENV_INSTALLER=uv, and this node has no uv: `pip install uv` into "
                              "the daemon's environment, or set TETHER_ENV_INSTALLER=auto to fall back to pip")
        return Installer("pip")
    return Installer("uv", uv, _version(uv))


def find_uv() -> str | None:
    """The uv binary: in the scripts folder of the daemon's environment, else on ``PATH``."""
    scripts = sysconfig.get_path("scripts")
    for folder in (scripts, None):
        found = shutil.which("uv", path=folder) if folder else shutil.which("uv")
        if found:
            return found
    return None


_versions: dict[str, str] = {}


def _version(uv: str) -> str:
    if uv not in _versions:
        try:
            out = subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=10).stdout
            _versions[uv] = out.split()[1] if len(out.split()) > 1 else ""
        except (OSError, subprocess.SubprocessError):
            _versions[uv] = ""
    return _versions[uv]


def _pip_settings() -> list[str]:
    """pip's index settings from the environment, as uv's options (uv's own win)."""
    env, out = os.environ, []
    if env.get("PIP_INDEX_URL") and not env.get("UV_INDEX_URL") and not env.get("UV_DEFAULT_INDEX"):
        out += ["--index-url", env["PIP_INDEX_URL"]]
    if env.get("PIP_EXTRA_INDEX_URL") and not env.get("UV_EXTRA_INDEX_URL") and not env.get("UV_INDEX"):
        for url in env["PIP_EXTRA_INDEX_URL"].split():
            out += ["--extra-index-url", url]
    if env.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes", "on") and not env.get("UV_NO_INDEX"):
        out.append("--no-index")
    if env.get("PIP_FIND_LINKS") and not env.get("UV_FIND_LINKS"):
        for url in env["PIP_FIND_LINKS"].split():
            out += ["--find-links", url]
    return out
