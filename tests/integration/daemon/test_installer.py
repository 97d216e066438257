"""Env builds with uv where the daemon has it, pip where it has not (``tether.daemon.installer``).

Real installs of a small real package (``toolz``, from the package index this machine reaches, or
the installers' caches) into the venv of an env, on local clusters whose daemon runs an
interpreter of its own (``installer_support.layered_python``), with uv next to it or nowhere.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import image_code
import pytest
from installer_support import layered_python, path_without_uv

import tether as rh

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

PACKAGE = "toolz"


@pytest.fixture
def local(tmp_path):
    made = []

    def make(uv: bool):
        python = layered_python(tmp_path / f"python-{'uv' if uv else 'plain'}", uv=uv)
        cluster = rh.cluster(name=f"inst-{uuid.uuid4().hex[:6]}", launcher="local", python=python)
        made.append(cluster)
        return cluster.up_if_not()

    yield make
    for cluster in made:
        cluster.teardown()


def build(cluster, capfd) -> tuple[dict, str]:
    """Deploy into an env with ``toolz``: (the venv's ready record, what the caller was shown)."""
    name = f"withtoolz-{uuid.uuid4().hex[:4]}"
    where, _ = rh.function(image_code.module_file).to(cluster, env=rh.env(reqs=[PACKAGE], name=name))(PACKAGE)
    (venv,) = (Path(cluster.status()["state_dir"]) / "envs").glob(f"{name}-*")
    assert Path(where).is_relative_to(venv)  # imported from the env's own venv
    return json.loads((venv / ".tether-ready").read_text()), capfd.readouterr().err


def test_an_env_is_built_with_uv_where_the_daemon_has_it(local, capfd):
    ready, said = build(local(uv=True), capfd)
    assert ready["installer"] == "uv"
    assert "installing into env 'withtoolz-" in said and "with uv 0." in said
    assert "ready (built with uv" in said


def test_an_env_is_built_with_pip_where_the_daemon_has_no_uv(local, capfd, monkeypatch):
    monkeypatch.setenv("PATH", path_without_uv())  # the daemon inherits it: uv is nowhere
    ready, said = build(local(uv=False), capfd)
    assert ready["installer"] == "pip"
    assert "ready (built with pip)" in said


def test_the_installer_can_be_chosen(local, capfd, monkeypatch):
    monkeypatch.setenv("TETHER_ENV_INSTALLER", "pip")  # pip, although uv is there
    ready, _ = build(local(uv=True), capfd)
    assert ready["installer"] == "pip"
    monkeypatch.setenv("PATH", path_without_uv())
    monkeypatch.setenv("TETHER_ENV_INSTALLER", "uv")  # uv asked for, and there is none: said so
    cluster = local(uv=False)
    with pytest.raises(rh.TetherError, match="TETHER_ENV_INSTALLER=uv, and this node has no uv"):
        rh.function(image_code.module_file).to(cluster, env=rh.env(reqs=[PACKAGE], name="wantsuv"))
