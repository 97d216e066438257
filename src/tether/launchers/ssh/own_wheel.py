"""tether's own wheel, for exactly the code this process runs (shipped to SSH nodes).

Installed normally (``pip install tether``, ``pip install .``): the installed files are the wheel's
files, repacked. Run from a source tree (an editable install, or ``PYTHONPATH=src``), the wheel is
made, in this order, by the first way that works here:

1. ``pip wheel --no-build-isolation`` when this environment's setuptools is as new as
   ``pyproject.toml``'s ``[build-system] requires`` asks (offline, as builds always were);
2. the editable install's files: the source tree's package folder and the metadata pip wrote when
   it installed it (offline and instant; a fresh ``python -m venv`` on Python 3.11 has setuptools
   65.5, too old for the SPDX ``license`` field, which needs 77);
3. ``pip wheel`` with build isolation: pip fetches a recent setuptools from the package index it is
   configured with (needs that index, and takes seconds);

and when none works, a LaunchError says how to make one of them work. Each wheel is cached under
``$TETHER_HOME/wheels/tether/<version>-<source hash>/``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tether._version import __version__
from tether.errors import LaunchError
from tether.launchers.ssh import distwheels

#: an isolated build may download setuptools: bounded, so a bring-up never hangs on the network
ISOLATED_BUILD_SECONDS = 300


def package_dir() -> Path:
    import tether

    return Path(tether.__file__).resolve().parent


def source_tree() -> Path | None:
    """The source checkout this process imports tether from (editable install), or None."""
    pkg = package_dir()
    root = pkg.parent.parent if pkg.parent.name == "src" else pkg.parent
    try:
        pyproject = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    return root if re.search(r'^name\s*=\s*"tether"', pyproject, re.M) else None


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """A hash of the tether code this process runs: equal hashes mean the same code on a node."""
    digest = hashlib.sha256(__version__.encode())
    root = source_tree()
    pkg = package_dir()
    files = sorted(p for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if root is not None:
        files.append(root / "pyproject.toml")
    for path in files:
        digest.update(os.path.relpath(path, pkg.parent).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def tether_wheel(cache_root: Path) -> Path:
    """tether's wheel for exactly this code (made once per version + source hash)."""
    cache = cache_root / "tether" / f"{__version__}-{source_hash()}"
    found = sorted(cache.glob("tether-*.whl"))
    if found:
        return found[0]
    root = source_tree()
    if root is None:  # an installed tether: its files are the wheel's files
        wheel = distwheels.repack(md.distribution("tether"), cache)
        if wheel is None:
            raise LaunchError("cannot make a wheel of the installed tether (it has no RECORD or WHEEL "
                              "file): reinstall it with pip")
        return wheel
    return _from_source(root, cache)


def _from_source(root: Path, cache: Path) -> Path:
    wanted, have = _setuptools_needed(root), _installed_version("setuptools")
    if have is not None and (wanted is None or wanted.contains(have, prereleases=True)):
        return _build(root, cache, isolated=False)
    wheel = _from_editable_install(root, cache)
    if wheel is not None:
        return wheel
    return _build(root, cache, isolated=True, why=(
        f"this environment's setuptools ({have or 'none'}) does not meet tether's build requirement "
        f"(setuptools{wanted or ''}) and tether {__version__} is not installed from {root} (editable)"))


def _setuptools_needed(root: Path):
    """The SpecifierSet ``[build-system] requires`` puts on setuptools (None: any)."""
    import tomllib

    from packaging.requirements import Requirement

    try:
        requires = tomllib.loads((root / "pyproject.toml").read_text())["build-system"]["requires"]
    except (OSError, KeyError, ValueError):
        return None
    for text in requires:
        req = Requirement(text)
        if req.name.lower() == "setuptools":
            return req.specifier
    return None


def _installed_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _from_editable_install(root: Path, cache: Path) -> Path | None:
    """The wheel of the editable install of ``root`` in this environment, if that is where this
    tether comes from and its metadata is of this version."""
    try:
        dist = md.distribution("tether")
    except md.PackageNotFoundError:
        return None
    where = distwheels.editable_root(dist)
    if where is None or where.resolve() != root.resolve() or dist.version != __version__:
        return None
    return distwheels.repack_editable(dist, package_dir(), cache)


def _build(root: Path, cache: Path, isolated: bool, why: str = "") -> Path:
    with tempfile.TemporaryDirectory(prefix="tether-build-") as tmp:
        # A copy, so the build leaves no build/ or egg-info in the checkout and races nothing.
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).exists():
                shutil.copy2(root / name, Path(tmp) / name)
        shutil.copytree(package_dir(), Path(tmp, "src", "tether"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        out = Path(tmp, "dist")
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
               "--quiet", "-w", str(out), tmp]
        if not isolated:
            cmd.insert(4, "--no-build-isolation")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=ISOLATED_BUILD_SECONDS if isolated else None)
        except subprocess.TimeoutExpired:
            output = f"pip did not finish within {ISOLATED_BUILD_SECONDS} s"
        else:
            output = "" if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()
        if output:
            if not isolated:
                raise LaunchError(f"building tether's wheel from {root} failed:\n{output}")
            tail = "\n".join(output.splitlines()[-12:])
            raise LaunchError(
                f"cannot make tether's wheel for the nodes from {root}: {why}, and pip could not build "
                f"it with build isolation either (it fetches setuptools from the package index):\n"
                f"{tail}\nFix either: upgrade setuptools here (`{sys.executable} -m pip install "
                f"'setuptools>=77'`), or let pip reach a package index that has setuptools>=77 (pip's "
                f"index-url / find-links settings). Or install tether normally (`pip install {root}`, "
                f"not editable): its installed files are then shipped as they are.")
        built = next(out.glob("tether-*.whl"))
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / built.name
        shutil.copy2(built, target.with_suffix(".tmp"))
        os.replace(target.with_suffix(".tmp"), target)
        return target
