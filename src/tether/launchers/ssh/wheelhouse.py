"""The wheels a node needs to run this process's exact tether: collected here, shipped over SSH.

On-prem machines (and the test hosts) often have no package index, so the node installs with
``pip install --no-index`` from what the caller sends:

* tether's own wheel (``own_wheel``): repacked from the installed distribution; or, when tether
  runs from a source tree, built from it (with this environment's setuptools when it is new
  enough, else from the editable install's files, else with build isolation), cached by version +
  a hash of the sources;
* its runtime dependencies at the **versions installed here** (cloudpickle must match on both
  sides), walked from tether's metadata with the markers evaluated for the node's Python;
* pip itself (the node's venv is made ``--without-pip``: Debian's python3 lacks ensurepip);
* uv, when it is installed here (``tether[uv]``): the node's daemon then builds envs with it
  (``tether.daemon.installer``). Its wheel is the one from the index (a repacked one would lack
  the ``uv`` binary, a script outside site-packages); when none can be had for the node, the node
  goes without, and builds envs with pip.

Each wheel comes from the first place that has one fitting the node's tags: the cache
(``$TETHER_HOME/wheels/``), this environment's installed distribution repacked as a wheel
(``distwheels``; no network at all when the node's Python minor and platform match ours), or ``pip download
--only-binary=:all:`` for the node's Python version and platform. When none fits, the error names
the node and says what to do (``install_from="index"``, or a matching Python on the node).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether._version import __version__
from tether.errors import LaunchError
from tether.launchers.ssh import own_wheel
from tether.launchers.ssh.distwheels import editable_root, wheel_tags
from tether.launchers.ssh.distwheels import repack as _repack
from tether.launchers.ssh.own_wheel import source_hash, source_tree
from tether.state import locked, tether_home

MIN_PYTHON = (3, 11)  # tether's requires-python


@dataclass(frozen=True)
class NodePython:
    """The interpreter found on a node: what its wheels must fit."""

    exe: str
    version: tuple[int, int, int]
    machine: str
    libc: tuple[str, str] = ("", "")
    implementation: str = "cpython"
    system: str = "Linux"

    @classmethod
    def from_probe(cls, data: dict[str, Any]) -> NodePython:
        return cls(exe=data["exe"], version=tuple(data["version"][:3]), machine=data["machine"],
                   libc=tuple(data.get("libc") or ("", "")), implementation=data.get("impl", "cpython"),
                   system=data.get("system", "Linux"))

    @classmethod
    def here(cls) -> NodePython:
        import platform

        return cls(sys.executable, tuple(sys.version_info[:3]), platform.machine(),
                   tuple(platform.libc_ver()), sys.implementation.name, platform.system())

    @property
    def minor(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def describe(self) -> str:
        libc = f", {self.libc[0]} {self.libc[1]}" if self.libc[0] else ""
        return f"Python {'.'.join(map(str, self.version))} ({self.implementation}, {self.system} {self.machine}{libc})"

    @property
    def key(self) -> str:
        return f"cp{self.version[0]}{self.version[1]}-{self.system.lower()}-{self.machine}-{''.join(self.libc)}"

    def platforms(self) -> list[str]:
        arch = self.machine
        plats: list[str] = []
        if self.system == "Linux" and self.libc[0] == "glibc":
            major, minor = (int(x) for x in self.libc[1].split(".")[:2])
            plats += [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
            plats += [f"manylinux{alias}_{arch}" for alias, since in (("2014", 17), ("2010", 12), ("1", 5))
                      if minor >= since]
        if self.system == "Linux":
            plats.append(f"linux_{arch}")
        return plats

    @functools.cached_property
    def tags(self) -> frozenset:
        from packaging import tags

        py = self.version[:2]
        plats = self.platforms()
        found = list(tags.compatible_tags(py, f"cp{py[0]}{py[1]}", plats))
        if self.implementation == "cpython":
            found = list(tags.cpython_tags(py, platforms=plats)) + found
        return frozenset(found)

    def marker_env(self) -> dict[str, str]:
        from packaging.markers import default_environment

        env = default_environment()
        env.update(python_version=self.minor, python_full_version=".".join(map(str, self.version)),
                   platform_machine=self.machine, implementation_name=self.implementation,
                   platform_system=self.system, sys_platform=self.system.lower(), os_name="posix")
        return env


# -- tether's own code (``own_wheel``) -------------------------------------------------------------


def tether_wheel() -> Path:
    """tether's wheel for exactly this code (``tether.launchers.ssh.own_wheel``)."""
    return own_wheel.tether_wheel(wheels_dir())


# -- dependencies -----------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _tether_requirements() -> list[str]:
    try:
        return list(md.requires("tether") or [])
    except md.PackageNotFoundError:  # run from a source tree that was never installed
        import tomllib

        root = source_tree()
        if root is None:
            raise LaunchError("cannot find tether's dependencies: it is neither installed nor a source tree") from None
        return list(tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"])


def requirements(node: NodePython, roots: tuple[tuple[str, frozenset[str]], ...] = (("tether", frozenset()),),
                 ) -> list[tuple[str, str | None]]:
    """The runtime dependency closure of ``roots`` (tether's by default; tether itself left out)
    for ``node``: (name, version installed here or None)."""
    from packaging.requirements import Requirement

    env = node.marker_env()
    pinned: dict[str, str | None] = {}
    todo: list[tuple[str, frozenset[str]]] = list(roots)
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name == "tether":
            reqs = _tether_requirements()
        else:
            try:
                reqs = md.requires(name) or []
                pinned[_canonical(name)] = md.version(name)
            except md.PackageNotFoundError:
                pinned[_canonical(name)] = None  # not installed here (a marker false here only)
                continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not any(
                    req.marker.evaluate({**env, "extra": extra}) for extra in (extras or {""})):
                continue
            todo.append((_canonical(req.name), frozenset(req.extras)))
    pinned.pop("tether", None)
    return sorted(pinned.items())


def wheels_dir() -> Path:
    path = tether_home() / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fits(wheel: Path, node: NodePython) -> bool:
    from packaging.utils import parse_wheel_filename

    try:
        _, _, _, tags = parse_wheel_filename(wheel.name)
    except ValueError:
        return False
    return bool(tags & node.tags)


def _cached(name: str, version: str | None, node: NodePython, folder: Path) -> Path | None:
    from packaging.utils import parse_wheel_filename

    for wheel in sorted(folder.glob("*.whl")):
        try:
            wname, wversion, _, _ = parse_wheel_filename(wheel.name)
        except ValueError:
            continue
        if _canonical(wname) == name and (version is None or str(wversion) == version) and _fits(wheel, node):
            return wheel
    return None


def collect(node: NodePython, label: str, deps: bool = True) -> tuple[list[Path], list[str]]:
    """The wheels to ship to ``node`` and the requirement lines to install from them.

    ``deps=False`` (the node installs dependencies from its own index): tether and pip only, and
    the dependencies as pins for the node's pip to fetch.
    """
    pins = requirements(node)
    pip_version = md.version("pip") if _installed("pip") else None
    lines = [f"tether=={__version__}"]
    lines += [f"{n}=={v}" if v else n for n, v in pins]
    lines.append(f"pip=={pip_version}" if pip_version else "pip")
    wanted = [("pip", pip_version)] + (pins if deps else [])
    wheels = [tether_wheel()]
    folder = wheels_dir()
    uv = _uv_wheel(node, folder)
    if uv is not None:
        wheels.append(uv)
        lines.append(f"uv=={md.version('uv')}")
    return wheels + _wheels(wanted, node, folder, label), lines


def _wheels(wanted: list[tuple[str, str | None]], node: NodePython, folder: Path, label: str) -> list[Path]:
    """A wheel of each (name, version) for ``node``: from the cache, else this environment's
    installed copy repacked, else downloaded. A version whose ``Requires-Python`` excludes the
    node's Python (3.11.2 where ours is 3.11.7, say) is replaced by the newest that fits it."""
    wheels, missing, older = [], [], []
    for name, version in wanted:
        if version is not None and not _fits_python(name, node):
            older.append(name)
            continue
        wheel = _cached(name, version, node, folder)
        if wheel is None and version is not None:
            wheel = _repack_installed(name, node, folder)
        if wheel is None:
            missing.append((name, version))
        else:
            wheels.append(wheel)
    if missing:
        wheels += _download(missing, node, folder, label)
    if older:
        older_dir = folder / "for-python" / f"{node.key}-{'.'.join(map(str, node.version))}"
        wheels += _download([(name, None) for name in older], node, older_dir, label)
    return wheels


def _fits_python(name: str, node: NodePython) -> bool:
    """Whether the installed ``name``'s ``Requires-Python`` admits the node's Python."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = md.metadata(name).get("Requires-Python")
        return not spec or SpecifierSet(spec).contains(".".join(map(str, node.version)), prereleases=True)
    except (md.PackageNotFoundError, InvalidSpecifier):
        return True


def _uv_wheel(node: NodePython, folder: Path) -> Path | None:
    """uv's wheel for ``node`` at the version installed here: from the cache, else downloaded;
    None when uv is not installed here or no wheel can be had (the node then uses pip)."""
    if not _installed("uv"):
        return None
    version = md.version("uv")
    wheel = _cached("uv", version, node, folder)
    if wheel is None:
        subprocess.run([*_pip_download(node, folder), "--no-deps", f"uv=={version}"],
                       capture_output=True, text=True)
        wheel = _cached("uv", version, node, folder)
    return wheel


def _installed(name: str) -> bool:
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        return False
    return True


#: distributions a node's daemon and workers never import (pip: the fallback installer; the rest:
#: the CLI's), whose wheels go without bytecode: ~12 of the ~19 MB of pycs, for no faster start
NO_BYTECODE = frozenset({"pip", "pygments", "rich", "typer", "markdown-it-py", "mdurl", "shellingham"})


def _repack_installed(name: str, node: NodePython, folder: Path) -> Path | None:
    dist = md.distribution(name)
    tags = wheel_tags(dist)
    if not tags or not tags & node.tags or editable_root(dist) is not None:
        return None
    return _repack(dist, folder, bytecode=_canonical(name) not in NO_BYTECODE)


def _pip_download(node: NodePython, folder: Path) -> list[str]:
    """``pip download`` of wheels that fit ``node`` (its Python version and platforms), into ``folder``."""
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "--dest", str(folder), "--python-version", ".".join(map(str, node.version)),
           "--implementation", "cp" if node.implementation == "cpython" else "py"]
    for plat in node.platforms():
        cmd += ["--platform", plat]
    return cmd


def _download(missing: list[tuple[str, str | None]], node: NodePython, folder: Path, label: str) -> list[Path]:
    """``pip download`` the wheels that fit ``node`` (its Python version and platform)."""
    specs = [f"{n}=={v}" if v else n for n, v in missing]
    proc = subprocess.run([*_pip_download(node, folder), "--no-deps", *specs], capture_output=True, text=True)
    found = [_cached(n, v, node, folder) for n, v in missing]
    if proc.returncode or not all(found):
        lacking = [s for s, w in zip(specs, found, strict=True) if w is None]
        raise LaunchError(
            f"node {label} runs {node.describe}, and no wheel of {', '.join(lacking)} fits it: this "
            f"machine runs Python {sys.version_info[0]}.{sys.version_info[1]} and pip could not download "
            f"wheels for the node ({(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']}). "
            "Either let the node install from its own package index (install_from='index'), or give it "
            f"a Python {sys.version_info[0]}.{sys.version_info[1]} on the same architecture "
            "(python='/path/to/python3' in the cluster spec).", node=label)
    return [w for w in found if w is not None]


_house_lock = threading.Lock()


def make_house(node: NodePython, label: str, deps: bool = True) -> Path:
    """A folder with exactly the wheels for ``node`` (links into the cache) + requirements.txt.

    Nodes are bootstrapped in parallel threads, and other processes may share the cache: one
    builder at a time (a thread lock, then a file lock on the cache)."""
    with _house_lock, _cache_lock():
        return _make_house(node, label, deps)


def _cache_lock():
    return locked(wheels_dir() / ".lock")


def _make_house(node: NodePython, label: str, deps: bool) -> Path:
    uv = f"-uv{md.version('uv')}" if _installed("uv") else ""  # a house made without uv is another house
    house = wheels_dir() / "houses" / f"{node.key}-{__version__}-{source_hash()}-{'all' if deps else 'own'}{uv}"
    if (house / "requirements.txt").exists() and all(p.exists() for p in house.iterdir()):
        return house  # complete, and its name fixes its contents: never replaced under a reader
    wheels, lines = collect(node, label, deps)
    tmp = Path(tempfile.mkdtemp(prefix=".house-", dir=wheels_dir()))
    for wheel in wheels:
        (tmp / wheel.name).symlink_to(wheel)
    (tmp / "requirements.txt").write_text("\n".join(lines) + "\n")
    if house.exists():
        shutil.rmtree(house)
    house.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, house)
    return house


def packages_house(reqs: list[str], node: NodePython, label: str) -> Path:
    """A folder of wheels for ``reqs`` and their dependencies that fit ``node``, for a node that
    has no index of its own (``cluster.install_packages(..., from_local=True)``).

    When this environment has every one of ``reqs`` installed (at a version they accept), the
    wheels are those installed versions, as tether's own dependencies are (``_wheels``: no index
    needed); else ``pip download`` on this machine (its package index and pip settings)."""
    installed = _installed_roots(reqs)
    pins = requirements(node, installed) if installed is not None else None
    key = hashlib.sha256(json.dumps([sorted(reqs), node.key, node.version, pins]).encode()).hexdigest()[:16]
    folder = wheels_dir() / "packages" / key
    if (folder / ".complete").exists():
        return folder
    with _house_lock, _cache_lock():
        if (folder / ".complete").exists():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        if pins is not None:  # installed here: the same versions, repacked (no index needed)
            for wheel in _wheels(pins, node, wheels_dir(), label):
                (folder / wheel.name).unlink(missing_ok=True)
                (folder / wheel.name).symlink_to(wheel)
            (folder / ".complete").write_text("\n".join(reqs) + "\n")
            return folder
        proc = subprocess.run([*_pip_download(node, folder), *reqs], capture_output=True, text=True)
        if proc.returncode:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise LaunchError(f"could not fetch wheels of {' '.join(reqs)} for node {label} "
                              f"({node.describe}) on this machine:\n{tail}", node=label)
        (folder / ".complete").write_text("\n".join(reqs) + "\n")
    return folder


def _installed_roots(reqs: list[str]) -> tuple[tuple[str, frozenset[str]], ...] | None:
    """``reqs`` as roots of ``requirements`` when each is installed here at a version it accepts
    (no URL, no marker), else None."""
    from packaging.requirements import InvalidRequirement, Requirement

    roots = []
    for text in reqs:
        try:
            req = Requirement(text)
            version = md.version(req.name)
        except (InvalidRequirement, md.PackageNotFoundError):
            return None
        if req.url or req.marker is not None or not req.specifier.contains(version, prereleases=True):
            return None
        roots.append((_canonical(req.name), frozenset(req.extras)))
    return tuple(roots)
