"""A SkyPilot cluster's handle as tether ``Machine``s, with SkyPilot's real handle class.

No cloud exists here: the handles are built the way SkyPilot's provisioner fills them after a
launch (``CloudVmRayResourceHandle`` with its ``ClusterInfo``), then pickled and unpickled as they
travel from SkyPilot's API server to its client, and the credentials are the dict
``sky.status(..., _include_credentials=True)`` returns beside them.
"""

from __future__ import annotations

import os
import shlex
import stat

import pytest

from tether import state
from tether.launchers.sky import machines

KEY = {"ssh_user": "ubuntu", "ssh_private_key": "~/.sky/clients/0a1b2c3d/ssh/sky-key"}


def test_vm_nodes_head_first_with_their_endpoint_key_and_price(make_handle):
    record = {"handle": make_handle("aws/us-east-1", "g5.xlarge",
                               [("10.0.0.5", "3.80.1.5"), ("10.0.0.6", "3.80.1.6")],
                               instance_ids=["i-0head", "i-0work"]),
              "credentials": dict(KEY)}
    head, worker = machines.machines_of(record)
    assert (head.id, head.host, head.internal_ip, head.user, head.port) == (
        "i-0head", "3.80.1.5", "10.0.0.5", "ubuntu", 22)
    assert (worker.id, worker.host, worker.internal_ip) == ("i-0work", "3.80.1.6", "10.0.0.6")
    assert head.key_path == os.path.expanduser("~/.sky/clients/0a1b2c3d/ssh/sky-key")
    assert head.proxy_command is None
    assert head.instance_type == "g5.xlarge"
    assert head.price_per_hour == pytest.approx(1.006)  # the fixture catalog's on-demand price


def test_a_key_sent_as_text_is_written_private_next_to_the_clusters_state(make_handle):
    record = {"handle": make_handle("gcp/us-central1", "n2-standard-8", [("10.1.0.2", "34.1.2.3")]),
              "credentials": {"ssh_user": "gcpuser",
                              "ssh_private_key_content": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"}}
    (machine,) = machines.machines_of(record)
    assert machine.key_path == str(state.cluster_dir("trainer") / "sky-key")
    assert stat.S_IMODE(os.stat(machine.key_path).st_mode) == 0o600
    assert open(machine.key_path).read().endswith("abc\n")
    assert machine.user == "ubuntu"  # the handle's user (its ClusterInfo) wins over the record's


def test_a_docker_image_on_a_vm_is_reached_through_the_vm(make_handle):
    record = {"handle": make_handle("aws/us-east-1", "g5.xlarge", [("10.0.0.5", "3.80.1.5")],
                               ports=[2222], docker_user="root"),
              "credentials": dict(KEY)}
    (machine,) = machines.machines_of(record)
    assert (machine.host, machine.port, machine.user) == ("3.80.1.5", 10022, "root")
    proxy = shlex.split(machine.proxy_command)
    assert proxy[0] == "ssh" and proxy[-1] == "ubuntu@%h"
    assert proxy[proxy.index("-p") + 1] == "2222"  # the VM's own SSH port
    assert proxy[proxy.index("-W") + 1] == "localhost:%p"
    assert proxy[proxy.index("-i") + 1] == machine.key_path


def test_kubernetes_pods_are_reached_through_skypilots_proxy(make_handle):
    from sky.server import common as server_common

    record = {"handle": make_handle("k8s/lab-ctx", "4CPU--16GB",
                               [("10.244.0.7", "10.244.0.7"), ("10.244.1.9", "10.244.1.9")],
                               ssh_user="sky", instance_ids=["trainer-2ea4-head",
                                                             "trainer-2ea4-worker1"]),
              "credentials": {"ssh_user": "sky", "ssh_private_key": "~/.ssh/sky-key"}}
    head, worker = machines.machines_of(record)
    assert (head.id, worker.id) == ("trainer-2ea4-head", "trainer-2ea4-worker1")
    assert (worker.host, worker.port, worker.user) == ("10.244.1.9", 22, "sky")
    proxy = shlex.split(worker.proxy_command)
    assert proxy[:2] == ["ssh", "-tt"] and "[%h]:%p" in proxy and "sky@127.0.0.1" in proxy
    inner = shlex.split(proxy[-1].split("=", 1)[1])
    assert inner[1].endswith("sky/templates/websocket_proxy.py") and os.path.exists(inner[1])
    assert inner[2:] == [server_common.get_server_url(), "trainer", "kubernetes-pod-ssh-proxy"]
    assert worker.price_per_hour is None or worker.price_per_hour >= 0


def test_a_cluster_without_ips_has_no_machines_yet():
    import sky
    from sky.backends import cloud_vm_ray_backend

    made = cloud_vm_ray_backend.CloudVmRayResourceHandle(
        cluster_name="trainer", cluster_name_on_cloud="trainer-2ea4", cluster_yaml=None,
        launched_nodes=1, launched_resources=sky.Resources(infra="aws", instance_type="m6i.large"))
    assert machines.machines_of({"handle": made, "credentials": KEY}) == []
    assert machines.machines_of({"handle": None}) == []
