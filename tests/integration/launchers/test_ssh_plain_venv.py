"""SSH bring-up from a plain ``python -m venv`` with tether installed from this source tree.

A fresh venv on Python 3.11 comes with setuptools 65.5 (ensurepip's), too old to build tether's
wheel (its SPDX ``license`` field needs setuptools >= 77): the wheel for the nodes then comes from
the editable install's files, or a build with isolation, or an error naming both fixes. A normal
(non-editable) install ships its installed files. Each venv brings up an SSH cluster on a test host
from its own interpreter (a child process) and calls a function there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[3]  # this source tree
INSTALL_SECONDS = 300


def _run(argv: list, timeout: float = INSTALL_SECONDS, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, **kwargs)
    assert proc.returncode == 0, f"{argv}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _plain_venv(folder: Path, *install: str) -> Path:
    """``python -m venv`` (ensurepip's pip and setuptools, nothing else), then tether into it."""
    _run([sys.executable, "-m", "venv", folder])
    python = folder / "bin" / "python"
    _run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", ROOT / "constraints.txt",
          *install])
    return python


@pytest.fixture(scope="session")
def venvs(tmp_path_factory) -> dict[str, Path]:
    """Two fresh venvs: tether installed editable from this tree, and installed normally."""
    base = tmp_path_factory.mktemp("plain-venvs")
    return {"editable": _plain_venv(base / "editable", "-e", str(ROOT)),
            "installed": _plain_venv(base / "installed", str(ROOT))}


def _setuptools(python: Path) -> str:
    return _run([python, "-c", "import importlib.metadata as md; print(md.version('setuptools'))"],
                timeout=60).stdout.strip()


CHILD = textwrap.dedent("""
    import json, sys
    import tether as rh
    from tether.launchers.ssh import wheelhouse
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, spec["project"])
    import venv_code
    cluster = rh.cluster(name=spec["name"], ips=[spec["ip"]], ssh_creds=spec["creds"])
    try:
        cluster.up_if_not()
        where = rh.function(venv_code.where).to(cluster)
        print(json.dumps({"result": where(21), "wheel": str(wheelhouse.tether_wheel())}))
    finally:
        cluster.teardown()
""")


@pytest.mark.parametrize("kind", ["editable", "installed"])
def test_a_plain_venv_brings_up_an_ssh_cluster_and_calls(kind, venvs, ssh_hosts, tmp_path):
    python = venvs[kind]
    assert _setuptools(python).split(".")[0] == "65"  # the finding's setuptools (Python 3.11's ensurepip)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'proj'\n")
    (project / "venv_code.py").write_text(textwrap.dedent("""
        import os, sys

        def where(x):
            import tether
            return {"double": 2 * x, "python": sys.executable, "tether": os.path.realpath(tether.__file__)}
    """))
    host = ssh_hosts[0] if kind == "editable" else ssh_hosts[1]
    spec = {"name": f"venv-{kind}-{uuid.uuid4().hex[:6]}", "ip": host.ip, "creds": host.ssh_creds(),
            "project": str(project)}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TETHER_HOME"] = str(tmp_path / "home")
    proc = subprocess.run([str(python), "-c", CHILD, json.dumps(spec)], capture_output=True, text=True,
                          timeout=420, env=env, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["result"]["double"] == 42
    assert out["result"]["python"] == f"{host.home}/.tether/venv/bin/python"
    assert out["result"]["tether"].startswith(f"{host.home}/.tether/venv/")
    assert Path(out["wheel"]).name.endswith("-py3-none-any.whl")  # the wheel the node installed


WHEEL = textwrap.dedent("""
    from tether.errors import LaunchError
    from tether.launchers.ssh import wheelhouse
    try:
        print("wheel", wheelhouse.tether_wheel())
    except LaunchError as exc:
        print("error", exc)
""")


def test_without_editable_metadata_the_wheel_is_built_isolated_or_the_error_names_both_fixes(venvs, tmp_path):
    """tether run from a copy of the source tree (PYTHONPATH, no install of it) in a venv whose
    setuptools is too old: with an index, pip builds the wheel with isolation; without one, the
    error says what to do."""
    python = venvs["editable"]
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "src" / "tether", copy / "src" / "tether",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, copy / name)
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "TETHER_HOME": str(tmp_path / "home")}
    built = _run([python, "-c", WHEEL], env=env).stdout
    assert built.startswith("wheel ") and built.strip().endswith(".whl"), built

    # no package index at all: nothing can build it; the error names both fixes and the third way
    offline = {**env, "TETHER_HOME": str(tmp_path / "home2"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "",
               "PIP_CONFIG_FILE": os.devnull}
    said = _run([python, "-c", WHEEL], env=offline).stdout
    assert said.startswith("error cannot make tether's wheel for the nodes from"), said
    assert "setuptools (65.5.0) does not meet tether's build requirement (setuptools>=77)" in said
    assert "pip install 'setuptools>=77'" in said and "package index that has setuptools>=77" in said
    assert "not editable" in said
