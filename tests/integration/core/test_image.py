"""tether.Image on a local cluster: steps run once at bring-up, in order, each recorded on the
node; a second ``up_if_not()`` skips them, a changed step re-runs with every step after it; env
vars reach the workers and commands; ``reset_image()`` runs them all again; ``from_docker`` on a
launcher whose machine already runs is a ConfigError naming the launchers that can.

The daemon runs with an interpreter of its own (``installer_support.layered_python``), so that
``install_packages`` installs into it and never into the test environment. The package installed
is a wheel the test writes (no network).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import image_code
import pytest
from installer_support import build_wheel, layered_python, site_packages

import tether as rh
from tether.errors import ConfigError, LaunchError

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def python(tmp_path_factory):
    return layered_python(tmp_path_factory.mktemp("img-python") / "venv", uv=True)


@pytest.fixture
def made(python):
    """Factory of local clusters with an image (one name per test), torn down after it."""
    name = f"img-{uuid.uuid4().hex[:6]}"
    handles = []

    def make(image):  # a new handle each time: as another process would see the cluster
        handle = rh.Cluster(name, "local", python=python, image=image)
        handles.append(handle)
        return handle

    yield make
    if handles:
        handles[-1].teardown()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def records(cluster) -> list[dict]:
    folder = Path(cluster.status()["state_dir"]) / "image"
    return sorted((json.loads(p.read_text()) for p in folder.glob("*.json")), key=lambda r: r["index"])


def test_steps_run_once_in_order_and_a_changed_step_reruns_with_the_steps_after_it(made, tmp_path, capfd):
    first, second = tmp_path / "first.log", tmp_path / "second.log"

    def image(value: str):
        return (rh.Image("trainer")
                .run_bash([f"echo ran >> {first}"])
                .set_env_vars({"IMAGE_VALUE": value})
                .run_bash([f'echo "$IMAGE_VALUE" >> {second}']))

    cluster = made(image("one")).up_if_not()
    assert lines(first) == ["ran"] and lines(second) == ["one"]  # in order: the var was set before
    err = capfd.readouterr().err
    assert "image 'trainer' step 1/3 run_bash" in err and "step 3/3" in err
    assert [r["kind"] for r in records(cluster)] == ["run_bash", "set_env_vars", "run_bash"]
    get = rh.function(image_code.env_var).to(cluster, name="env-var")
    assert get("IMAGE_VALUE") == "one"  # the worker has the image's env vars
    assert cluster.run_bash(["echo $IMAGE_VALUE"], stream_logs=False)[0][1] == "one\n"  # commands too

    again = made(image("one")).up_if_not()  # another handle, as a later process: all done before
    assert lines(first) == ["ran"] and lines(second) == ["one"]
    assert "image 'trainer': all 3 step(s) done before, skipped" in capfd.readouterr().err

    changed = made(image("two")).up_if_not()  # the 2nd step changed: it and the 3rd run again
    err = capfd.readouterr().err
    assert err.count("done before, skipped") == 1  # the 1st step: skipped, said per step now
    assert lines(first) == ["ran"] and lines(second) == ["one", "two"]
    assert len(records(changed)) == 5  # the old chain's records stay (a change back is done)
    assert rh.function(image_code.env_var).to(changed, name="env-var")("IMAGE_VALUE") == "two"
    assert again.get("env-var")("IMAGE_VALUE") == "two"  # running workers restarted with it

    back = made(image("one")).up_if_not()  # changed back: that chain's steps are all recorded
    assert lines(first) == ["ran"] and lines(second) == ["one", "two"]
    assert back.get("env-var")("IMAGE_VALUE") == "one"  # ...and the env vars follow the image

    changed.reset_image()
    made(image("two")).up_if_not()  # forgotten: every step runs again
    assert lines(first) == ["ran", "ran"] and lines(second) == ["one", "two", "two"]


def test_install_packages_installs_into_the_clusters_interpreter_with_uv(made, python, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the daemon and its installer inherit it: no network
    module = f"tether_imgpkg_{uuid.uuid4().hex[:8]}"
    wheel = build_wheel(tmp_path, module, "1.0", {f"{module}/__init__.py": "VALUE = '1.0'\n"})
    cluster = made(rh.Image().install_packages([str(wheel)])).up_if_not()
    (record,) = records(cluster)
    assert record["installer"].startswith("uv ")
    where, interpreter = rh.function(image_code.module_file).to(cluster, name="where")(module)
    assert interpreter == python and where.startswith(site_packages(python))


def test_a_failing_step_names_itself_and_the_next_bring_up_goes_on_from_there(made, tmp_path):
    marker = tmp_path / "ok.log"
    broken = rh.Image("broken").run_bash([f"echo ok >> {marker}"]).run_bash(["echo oops >&2; exit 3"])
    with pytest.raises(LaunchError, match=r"(?s)step 2/2 run_bash echo oops.*exit code 3.*oops"):
        made(broken).up_if_not()
    fixed = rh.Image("broken").run_bash([f"echo ok >> {marker}"]).run_bash(["true"])
    made(fixed).up_if_not()
    assert lines(marker) == ["ok"]  # the first step was recorded: not run again


def test_env_vars_of_an_env_win_over_the_images(made):
    cluster = made(rh.Image().set_env_vars({"WHO": "image", "ONLY_IMAGE": "yes"})).up_if_not()
    get = rh.function(image_code.env_var).to(cluster, name="who", env=rh.env(name="own", env_vars={"WHO": "env"}))
    assert get("WHO") == "env" and get("ONLY_IMAGE") == "yes"


def test_an_image_is_saved_with_its_cluster_and_loaded_by_name(python):
    name = f"img-saved-{uuid.uuid4().hex[:6]}"
    image = rh.Image("base").install_packages(["numpy"]).run_bash("nproc").set_env_vars({"A": "1"})
    rh.cluster(name=name, launcher="local", python=python, image=image).save()
    loaded = rh.load(name)
    assert loaded.image == image and loaded.image.keyed_steps() == image.keyed_steps()
    image.save("base-image")
    assert rh.load("base-image") == image
    assert rh.Cluster("other", "local", image="base-image").image == image  # by its saved name


def test_from_docker_on_a_machine_that_already_runs_is_a_config_error():
    image = rh.Image("gpu").from_docker("nvcr.io/nvidia/pytorch:24.01-py3")
    assert image.image_id == "docker:nvcr.io/nvidia/pytorch:24.01-py3"
    for spec in ({"launcher": "local"}, {"ips": ["10.1.2.3"], "ssh_creds": {"ssh_user": "me"}}):
        with pytest.raises(ConfigError, match=r"(?s)cannot start it from the docker image "
                                              r"'nvcr.io/nvidia/pytorch:24.01-py3'.*(Launchers that can|None of)"):
            rh.cluster(name=f"docker-{uuid.uuid4().hex[:6]}", image=image, **spec)
    with pytest.raises(ConfigError, match="docker image id"):
        rh.cluster(name="bad-image", launcher="local", image=42)


def test_bad_steps_are_config_errors():
    with pytest.raises(ConfigError, match="at least one requirement"):
        rh.Image().install_packages([])
    with pytest.raises(ConfigError, match="run_bash"):
        rh.Image().run_bash([""])
    with pytest.raises(ConfigError, match="env_vars"):
        rh.Image().set_env_vars({"A": object()})



def test_status_shows_which_steps_each_node_has_done(made, tmp_path):
    def image(value: str):
        return rh.Image("trainer").run_bash([f"echo {value} >> {tmp_path / 'ran.log'}"]).set_env_vars({"V": value})

    made(image("one")).up_if_not()
    shown = made(image("one")).status()["image"]  # another handle, as a later process sees it
    assert (shown["name"], shown["steps"]) == ("trainer", 2)
    (node,) = shown["nodes"]
    assert node["done"] == 2 and node["env_vars"] == ["V"]
    assert [(s["number"], s["kind"], s["done"]) for s in node["steps"]] == [
        (1, "run_bash", True), (2, "set_env_vars", True)]
    assert all(s["at"] and s["seconds"] is not None for s in node["steps"])

    changed = made(image("two"))  # not brought up with it: status() says what is left to run
    (node,) = changed.status()["image"]["nodes"]
    assert [s["done"] for s in node["steps"]] == [False, False] and node["recorded"] == 2
    assert lines(tmp_path / "ran.log") == ["one"]  # status() ran nothing
