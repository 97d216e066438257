"""On-demand clusters end to end, on ``testcloud`` (``ondemand_support.py``).

No cloud exists here: the provisioner is the one fake, and says so. Its instances are real test
hosts (network namespaces with their own sshd), each inside a cgroup with its instance type's
memory; the on-demand launcher brings tether up on them through the SSH launcher's own path, and
every daemon, worker, tunnel and call below is real.
"""

from __future__ import annotations

import base64
import uuid

import pytest
from installer_support import build_wheel
from ondemand_support import BACKEND, host_gone, provide_testcloud
from placed_code import importable
from process_helpers import wait_until

import tether as rh
from tether.testing.launcher_contract import LauncherContract

pytestmark = pytest.mark.timeout(600)

CODE = '''
import os

def where(tag):
    return {"tag": tag, "uid": os.getuid(), "home": os.path.expanduser("~")}

def from_image(module, var):
    import importlib
    return importlib.import_module(module).VALUE, os.environ.get(var)
'''


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    with importable(tmp_path_factory.mktemp("ondemand"), "ondemand_code", CODE) as module:
        yield module


@pytest.fixture(scope="module")
def testcloud(test_hosts):
    yield from provide_testcloud(test_hosts)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _instances(name: str):
    return list(BACKEND.clusters.get(name) or [])


def test_two_nodes_come_up_serve_calls_and_teardown_deletes_them(testcloud, code, capfd):
    name = _name("od2")
    cluster = rh.ondemand_cluster(name, instance_type="small", provider="testcloud", num_nodes=2)
    assert cluster.launcher_name == "ondemand"
    assert cluster.autostop_mins == 60  # on-demand clusters get a default autostop
    assert not _instances(name)  # defining launches nothing
    try:
        where = rh.function(code.where).to(cluster)
        made = _instances(name)
        assert [i.type for i in made] == ["small", "small"]
        assert where("head")["home"] == made[0].host.home  # ran on the head instance
        on_node = rh.function(code.where).to(cluster, env=rh.env(name="node1", compute={"node_idx": 1}),
                                            name="where-node1")
        assert on_node("node")["home"] == made[1].host.home
        err = capfd.readouterr().err
        assert "2 machine(s) made (small, $0.02/h)" in err
        assert "autostop after 60 min idle deletes its machines" in err

        status = cluster.status()
        assert status["instance_type"] == "small"
        assert status["price_per_hour"] == pytest.approx(0.02)
        assert [m["id"] for m in status["machines"]] == [i.id for i in made]
        assert cluster.ips == [i.host.ip for i in made]

        again = rh.cluster(name, instance_type="small", provider="testcloud", num_nodes=2)
        again.up_if_not()
        again.up_if_not()
        assert BACKEND.launches[name] == 1  # up_if_not of a running cluster launches nothing

        cluster.restart_server()  # the daemons restart; the machines stay
        assert where("again")["home"] == made[0].host.home
        assert BACKEND.launches[name] == 1 and _instances(name) == made
        assert cluster.ssh(node=1, command="true") == 0
    finally:
        cluster.teardown()
    assert not _instances(name)
    assert all(host_gone(i.host) for i in made)
    assert [i.id for i in made] == BACKEND.terminated[-2:]
    assert cluster.status()["machines"] == []
    cluster.teardown()  # twice is fine


def test_autostop_deletes_an_idle_cluster(testcloud, code):
    name = _name("odstop")
    cluster = rh.cluster(name, instance_type="small", provider="testcloud", autostop_mins=0.05)  # 3 s
    try:
        where = rh.function(code.where).to(cluster)
        assert where("before")["tag"] == "before"
        (instance,) = _instances(name)
        wait_until(lambda: name in BACKEND.autostopped, timeout=120, what="the testcloud autostop")
        assert host_gone(instance.host)
        wait_until(lambda: not cluster.is_up(), timeout=30, what="the tunnel to end with its machine")
        assert cluster.status()["status"] == "down" and cluster.status()["machines"] == []

        # the handle still holds its connection: its next call says what happened and what to do
        with pytest.raises(rh.ConnectionError, match=rf"machines of cluster '{name}' were deleted "
                           rf"\({instance.id}; by its autostop after 0.05 min idle, or by hand\): "
                           r"cluster.up_if_not\(\) makes new ones"):
            where("after")
        with pytest.raises(rh.ConnectionError, match=r"were deleted .*up_if_not"):
            cluster.run_bash(["true"], stream_logs=False)

        # deleted behind the caller's back: up_if_not() makes new machines (as on SSH after an
        # autostop, a handle reconnects through up_if_not)
        cluster.autostop_mins = -1
        cluster.up_if_not()
        assert rh.function(code.where).to(cluster)("back")["home"] != instance.host.home
        assert BACKEND.launches[name] == 2
        (again,) = _instances(name)
        cluster.autostop_mins = 0.05  # set on a running cluster: the provisioner's autostop too
        wait_until(lambda: host_gone(again.host), timeout=120, what="the new autostop")
    finally:
        cluster.teardown()


def test_a_failed_bring_up_leaves_no_instance(testcloud):
    name = _name("odfail")
    cluster = rh.ondemand_cluster(name, instance_type="small", provider="testcloud", num_nodes=2)
    BACKEND.fail["sshd_refuses"] = 1  # the 2nd machine is made, its sshd refuses connections
    try:
        with pytest.raises(rh.LaunchError) as caught:
            cluster.up_if_not()
    finally:
        BACKEND.fail.clear()
    terminated = BACKEND.terminated[-2:]
    message = str(caught.value)
    assert "refused the SSH connection" in message
    assert "cleaned up: " in message and all(t in message for t in terminated)
    assert caught.value.cleaned_up and len(caught.value.cleaned_up) == 2
    assert not _instances(name)
    assert not cluster.is_up()


def test_no_capacity_half_way_leaves_no_instance(testcloud):
    name = _name("odcap")
    cluster = rh.ondemand_cluster(name, instance_type="small", provider="testcloud", num_nodes=2)
    BACKEND.fail["capacity_at"] = 1
    try:
        with pytest.raises(rh.LaunchError, match=r"no capacity .*cleaned up: tc-") as caught:
            cluster.up_if_not()
    finally:
        BACKEND.fail.clear()
    assert caught.value.cleaned_up == BACKEND.terminated[-1:]
    assert not _instances(name)


def test_bad_input_is_refused_before_anything_is_launched(testcloud):
    with pytest.raises(rh.ConfigError, match="num_nodes is a number of machines"):
        rh.ondemand_cluster(_name("bad"), instance_type="small", provider="testcloud", num_nodes=0)
    with pytest.raises(rh.ConfigError, match="go with provider='kubernetes'"):
        rh.ondemand_cluster(_name("bad"), provider="testcloud", namespace="ml")
    with pytest.raises(rh.ConfigError, match="no provisioner serves provider='nocloud'"):
        rh.cluster(_name("bad"), instance_type="small", provider="nocloud")
    name = _name("bad")
    cluster = rh.ondemand_cluster(name, instance_type="smal", provider="testcloud")
    launches = dict(BACKEND.launches)
    with pytest.raises(rh.LaunchError, match="no instance type 'smal'; close matches: small"):
        cluster.up_if_not()
    assert BACKEND.launches == launches and not _instances(name)


def test_an_image_asks_for_its_docker_base_and_its_steps_run_once(testcloud, code, tmp_path, capfd):
    """``image=`` a ``tether.Image``: the provisioner is asked for its docker base (testcloud
    records it: a test host is no container), and its steps run for real on the machine at
    bring-up, once: a new handle's ``up_if_not()`` skips them. The machine has no package index:
    the package installed is a wheel the first step writes there."""
    package = f"tether_odimg_{uuid.uuid4().hex[:6]}"
    wheel = build_wheel(tmp_path, package, "1.0", {f"{package}/__init__.py": "VALUE = 'in-the-image'\n"})
    remote = f"/tmp/{wheel.name}"
    blob = base64.b64encode(wheel.read_bytes()).decode()

    image = (rh.Image("odimg").from_docker("python:3.11-slim")
             .run_bash([f"echo {blob} | base64 -d > {remote}", "echo ran >> ~/image-runs"])
             .install_packages([remote])
             .set_env_vars({"ODIMG_VALUE": "on-demand"}))
    name = _name("odimg")
    cluster = rh.ondemand_cluster(name, instance_type="small", provider="testcloud", image=image)
    try:
        cluster.up_if_not()
        assert BACKEND.images[name] == "docker:python:3.11-slim"
        (instance,) = _instances(name)
        assert instance.host.ssh("cat ~/image-runs").stdout.split() == ["ran"]
        value = rh.function(code.from_image).to(cluster, name="from-image")
        assert value(package, "ODIMG_VALUE") == ("in-the-image", "on-demand")
        capfd.readouterr()
        # a new handle, as a later process has (rh.ondemand_cluster would return this one)
        rh.Cluster(name, "ondemand", image=image, **cluster.spec).up_if_not()
        assert "image 'odimg': all 3 step(s) done before, skipped" in capfd.readouterr().err
        assert instance.host.ssh("cat ~/image-runs").stdout.split() == ["ran"]
        assert BACKEND.launches[name] == 1
    finally:
        cluster.teardown()
    assert not _instances(name)


class TestOnDemandLauncher(LauncherContract):
    """The suite every launcher passes, on a one-machine testcloud cluster per test."""

    @pytest.fixture
    def contract_cluster(self, testcloud):
        cluster = rh.ondemand_cluster(_name("contract-od"), instance_type="small", provider="testcloud")
        yield cluster
        cluster.teardown()
        assert not _instances(cluster.name)
