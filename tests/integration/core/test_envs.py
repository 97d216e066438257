"""Envs with ``reqs``: a venv built on the cluster with the packages installed, reused while the spec
is unchanged; a bad requirement, interpreter or working dir is a clear error and the daemon keeps
serving.

No network: the package installed is a wheel this module writes itself (a zip with METADATA, WHEEL
and RECORD), and the daemon runs pip with PIP_NO_INDEX so nothing is looked up on an index.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

import installer_support
import pytest
import remote_code

import tether as rh

build_wheel = installer_support.build_wheel  # a pure-Python wheel made by hand


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A wheel of a package nobody has installed, in two versions."""
    module = f"tether_testpkg_{uuid.uuid4().hex[:8]}"
    dest = tmp_path_factory.mktemp("wheels")
    wheels = {
        version: build_wheel(dest, module, version, {f"{module}/__init__.py": f"VALUE = {version!r}\n"})
        for version in ("1.0", "2.0")
    }
    assert importlib.util.find_spec(module) is None  # not importable here: only in the env's venv
    return module, wheels


@pytest.fixture(scope="module")
def cluster():
    saved = os.environ.get("PIP_NO_INDEX")
    os.environ["PIP_NO_INDEX"] = "1"  # inherited by the daemon and its pip: never the network
    try:
        c = rh.cluster(name=f"envs-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    finally:
        if saved is None:
            del os.environ["PIP_NO_INDEX"]
        else:
            os.environ["PIP_NO_INDEX"] = saved
    yield c
    c.teardown()


def venvs(cluster, env_name: str) -> list[Path]:
    return sorted((Path(cluster.status()["state_dir"]) / "envs").glob(f"{env_name}-*"))


def assert_still_serving(cluster) -> None:
    assert rh.function(remote_code.add).to(cluster, name="still-serving")(1, 2) == 3
    assert cluster.client.health()["status"] == "ok"


@pytest.mark.slow
def test_reqs_are_installed_into_a_venv_the_worker_imports_from(cluster, package, capfd):
    module, wheels = package
    env = rh.env(reqs=[str(wheels["1.0"])], name="withreqs")
    value, where, executable = rh.function(remote_code.import_value).to(cluster, env=env)(module)
    assert value == "1.0"
    [venv] = venvs(cluster, "withreqs")
    assert Path(where).is_relative_to(venv)
    assert Path(executable).parent == venv / "bin"
    assert (venv / ".tether-ready").exists()
    err = capfd.readouterr().err
    assert "creating env 'withreqs'" in err  # the build streams its progress to the caller
    assert "Successfully installed" in err or "Installed 1 package" in err  # pip's or uv's output
    assert "ready (built with " in err  # ...saying which of them built it
    # the project's own code is still importable in the env (it runs remote_code)
    assert rh.function(remote_code.add).to(cluster, env=env)(2, 3) == 5


@pytest.mark.slow
def test_commands_run_in_the_envs_venv(cluster, package):
    """``cluster.run(..., env=...)`` (Runhouse's): the env's venv first on PATH, so ``python``
    imports its reqs; ``run_python`` runs with that interpreter too."""
    module, wheels = package
    env = rh.env(reqs=[str(wheels["1.0"])], name="withreqs")
    code = f"import {module}; print({module}.VALUE)"
    results = cluster.run([f"python -c '{code}'", "echo $VIRTUAL_ENV"], env=env)
    [venv] = venvs(cluster, "withreqs")
    assert results == [(0, "1.0\n", ""), (0, f"{venv}\n", "")]
    assert cluster.run_python([code], env=env) == [(0, "1.0\n", "")]
    assert cluster.run([f"python -c '{code}'"], require_outputs=False)[0] != 0  # not without the env


@pytest.mark.slow
def test_same_spec_reuses_the_venv(cluster, package, capfd):
    module, wheels = package
    env = rh.env(reqs=[str(wheels["1.0"])], name="withreqs")
    fn = rh.function(remote_code.import_value).to(cluster, env=env)
    fn(module)
    [venv] = venvs(cluster, "withreqs")
    marker = venv / ".tether-ready"
    stamp = (marker.stat().st_mtime_ns, venv.stat().st_ino, (venv / "bin" / "python").stat().st_ino)
    capfd.readouterr()

    # redeploy with the same spec
    assert rh.function(remote_code.import_value).to(cluster, env=env)(module)[0] == "1.0"
    # a new worker for the env (the old one stopped)
    old_worker = rh.function(remote_code.pid).to(cluster, env=env)()
    cluster.delete("withreqs")
    fn = rh.function(remote_code.import_value).to(cluster, env=env)
    assert fn(module)[0] == "1.0"
    assert rh.function(remote_code.pid).to(cluster, env=env)() != old_worker
    # a new daemon
    cluster.restart_server()
    assert rh.function(remote_code.import_value).to(cluster, env=env)(module)[0] == "1.0"

    assert venvs(cluster, "withreqs") == [venv]
    assert (marker.stat().st_mtime_ns, venv.stat().st_ino, (venv / "bin" / "python").stat().st_ino) == stamp
    assert "creating env" not in capfd.readouterr().err


@pytest.mark.slow
def test_changed_reqs_build_another_venv(cluster, package):
    module, wheels = package
    one = rh.function(remote_code.import_value).to(cluster, env=rh.env(reqs=[str(wheels["1.0"])], name="withreqs"))
    assert one(module)[0] == "1.0"
    two = rh.function(remote_code.import_value).to(cluster, env=rh.env(reqs=[str(wheels["2.0"])], name="withreqs"))
    assert two(module)[0] == "2.0"
    assert len(venvs(cluster, "withreqs")) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("req", "pip_says", "uv_says", "retry"),
    [
        ("tether-no-such-package-{tag}==1.0", "No matching distribution found for tether-no-such-package-{tag}",
         "tether-no-such-package-{tag} was not found", True),
        ("not a valid requirement !! {tag}", "Invalid requirement", "Failed to parse", False),
        ("/no/such/dir/pkg_{tag}-1.0-py3-none-any.whl", "No such file or directory: '/no/such/dir/pkg_{tag}",
         "Distribution not found at:", False),
    ],
    ids=["unknown-package", "invalid-requirement", "missing-wheel"],
)
def test_bad_requirement_is_a_clear_error_with_pips_message(cluster, req, pip_says, uv_says, retry):
    """The installer's own message (uv's where the daemon has uv, as this test environment does)."""
    tag = uuid.uuid4().hex[:6]
    uv = installer_support.UV is not None
    req, pip_says = req.format(tag=tag), (uv_says if uv else pip_says).format(tag=tag)
    name = f"badreqs-{tag}"
    env = rh.env(reqs=[req], name=name)
    with pytest.raises(rh.LaunchError) as info:
        rh.function(remote_code.pid).to(cluster, env=env, name=name, stream_logs=False)
    message = str(info.value)
    assert pip_says in message
    assert "pip install" in message and "exit code" in message
    keys = cluster.keys()
    assert name not in keys
    assert_still_serving(cluster)
    if retry:  # nothing half-built is taken for ready: a second try fails the same way
        with pytest.raises(rh.LaunchError, match=pip_says):
            rh.function(remote_code.pid).to(cluster, env=env, name=name, stream_logs=False)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"python": "/no/such/python"}, "/no/such/python"),
        ({"working_dir": "/no/such/working/dir"}, "/no/such/working/dir"),
        ({"python": "/bin/false"}, "/bin/false"),
    ],
    ids=["missing-interpreter", "missing-working-dir", "interpreter-that-exits"],
)
def test_env_whose_worker_cannot_start_is_a_clear_error(cluster, spec, named):
    name = f"nostart-{uuid.uuid4().hex[:6]}"
    with pytest.raises(rh.LaunchError) as info:
        rh.function(remote_code.pid).to(cluster, env=rh.env(name=name, **spec), name=name)
    assert named in str(info.value)
    assert repr(name) in str(info.value)
    keys = cluster.keys()
    assert name not in keys
    assert_still_serving(cluster)
    # the env can be fixed in place: the same name with a good spec works
    assert rh.function(remote_code.pid).to(cluster, env=rh.env(name=name), name=name)() > 0
