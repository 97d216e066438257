"""tether.Image on an SSH cluster of two test hosts: the steps run once on each node, recorded in
each node's cluster state dir; a new handle's ``up_if_not()`` skips them; the image's env vars
reach the workers; ``install_packages`` and env builds use the uv shipped with tether's wheels.

The test hosts have no package index: the package installed is a wheel the test writes and
copies there.
"""

from __future__ import annotations

import importlib
import subprocess
import uuid

import pytest
from installer_support import build_wheel

import tether as rh

pytestmark = pytest.mark.timeout(400)

CODE = """
import importlib, os, sys

def env_var(name):
    return os.environ.get(name)

def module_file(module):
    return importlib.import_module(module).__file__, sys.executable
"""


def copy_to(host, path) -> str:
    """scp ``path`` into the host's own /tmp (each host has its own); its path there."""
    subprocess.run(["scp", "-q", "-i", str(host.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", str(path),
                    f"{host.user}@{host.ip}:/tmp/"], check=True, timeout=60)
    return f"/tmp/{path.name}"


def test_image_steps_run_once_per_node_and_env_builds_use_uv(ssh_hosts, ssh_cluster, project, tmp_path, capfd):
    mod = project.module_name("imgcode")
    project.write(f"{mod}.py", CODE)
    code = importlib.import_module(mod)
    package = f"tether_sshimg_{uuid.uuid4().hex[:6]}"
    wheel = build_wheel(tmp_path, package, "1.0", {f"{package}/__init__.py": "VALUE = 1\n"})
    paths = {copy_to(h, wheel) for h in ssh_hosts}
    (remote_wheel,) = paths

    image = (rh.Image("nodes")
             .run_bash(["echo ran >> ~/image-runs"])
             .install_packages([remote_wheel])
             .set_env_vars({"IMAGE_VALUE": "on-the-nodes"}))
    cluster = ssh_cluster(ssh_hosts, image=image).up_if_not()
    err = capfd.readouterr().err
    for index in (0, 1):
        assert f"node {index} ({ssh_hosts[index].ip}): image 'nodes' step 2/3 install_packages" in err
    assert err.count("(with uv 0.") == 2  # the uv shipped with tether's wheels did it, on each node
    for host in ssh_hosts:
        assert host.ssh("cat ~/image-runs").stdout.split() == ["ran"]
        listing = host.ssh(f"ls ~/.tether/clusters/{cluster.name}/image").stdout.split()
        assert len(listing) == 3 and all(n.endswith(".json") for n in listing)
        assert host.ssh("test -x ~/.tether/venv/bin/uv", check=False).returncode == 0

    on_node = rh.env(name="node1", compute={"node_idx": 1})
    assert rh.function(code.env_var).to(cluster, name="head-var")("IMAGE_VALUE") == "on-the-nodes"
    assert rh.function(code.env_var).to(cluster, name="node-var", env=on_node)("IMAGE_VALUE") == "on-the-nodes"
    where, python = rh.function(code.module_file).to(cluster, name="where")(package)
    assert python == f"{ssh_hosts[0].home}/.tether/venv/bin/python" and "/.tether/venv/" in where

    fresh = rh.Cluster(cluster.name, ips=cluster.spec["ips"], ssh_creds=cluster.spec["ssh_creds"], image=image)
    fresh.up_if_not()  # another handle, as a later process: every step was done on both nodes
    assert capfd.readouterr().err.count("image 'nodes': all 3 step(s) done before, skipped") == 2
    for host in ssh_hosts:
        assert host.ssh("cat ~/image-runs").stdout.split() == ["ran"]
    shown = fresh.status()["image"]  # each node's own records: every step done on both
    assert [(n["node"], n["done"]) for n in shown["nodes"]] == [
        (f"node {i} ({h.ip})", 3) for i, h in enumerate(ssh_hosts)]
    assert shown["nodes"][1]["steps"][1]["installer"].startswith("uv ")

    # an env with reqs on the node: its venv is built with uv too
    env = rh.env(reqs=[remote_wheel], name="withwheel")
    where, _ = rh.function(code.module_file).to(cluster, name="in-env", env=env)(package)
    assert "/envs/withwheel-" in where
    assert "ready (built with uv" in capfd.readouterr().err
