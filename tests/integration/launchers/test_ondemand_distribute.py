"""``distribute("pytorch", ...)`` across the two machines of an on-demand cluster (issue 12).

No cloud exists here: ``testcloud`` (``ondemand_support.py``) is the one fake. Its "large"
instances (2 GiB each: torch's CPU build and a gloo process group fit; a "small" one's 256 MiB do
not) are real test hosts; the machines' addresses, and so torch's ``MASTER_ADDR``, come from the
provisioner's ``Machine.internal_ip`` (``OnDemandLauncher.node_address``). As in
``test_distribute.py``, the nodes have no package index: torch is fetched here and sent over SSH,
once, for every test of this module (one cluster, up for the whole module).
"""

from __future__ import annotations

import uuid

import pytest
from ondemand_support import BACKEND, provide_testcloud
from placed_code import importable

import tether as rh

pytestmark = pytest.mark.timeout(600)

TORCH = "torch==2.13.0+cpu"  # the CPU build only (test_distribute.py's pin)

CODE = '''
import os


def all_reduce(value):
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        t = torch.tensor([float(value) * (int(os.environ["RANK"]) + 1)])
        dist.all_reduce(t)
        return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": t.item(),
                "home": os.path.expanduser("~"), "master": os.environ["MASTER_ADDR"]}
    finally:
        dist.destroy_process_group()
'''


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    with importable(tmp_path_factory.mktemp("oddist"), "oddist_code", CODE) as module:
        yield module


@pytest.fixture(scope="module")
def testcloud(test_hosts):
    yield from provide_testcloud(test_hosts)


@pytest.fixture(scope="module")
def pair(testcloud):
    """Two "large" testcloud machines with torch, up for the whole module."""
    cluster = rh.ondemand_cluster(f"oddist-{uuid.uuid4().hex[:6]}", instance_type="large",
                                  provider="testcloud", num_nodes=2, autostop_mins=-1)
    try:
        cluster.up_if_not()
        cluster.install_packages([TORCH], node="all", from_local=True)
        yield cluster
    finally:
        cluster.teardown()


def test_torch_all_reduce_across_two_ondemand_machines(pair, code):
    machines = list(BACKEND.clusters[pair.name])
    train = rh.function(code.all_reduce).to(pair).distribute("pytorch", num_nodes=2, procs_per_node=1)
    results = train(2)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world"] == 2 and r["sum"] == 2 * (1 + 2) for r in results)
    # rank 0 on the head machine, rank 1 on the other one
    assert [r["home"] for r in results] == [m.host.home for m in machines]
    head = pair.status()["machines"][0]
    assert {r["master"] for r in results} == {head["internal_ip"]}  # the provisioner's internal address
    assert train(5)[1]["sum"] == 5 * 3  # a second call: the same workers, a new process group


def test_two_processes_on_each_machine(pair, code):
    train = rh.function(code.all_reduce).to(pair, name="all-reduce-4").distribute("pytorch", procs_per_node=2)
    results = train(1)
    assert [r["rank"] for r in results] == [0, 1, 2, 3]
    assert all(r["world"] == 4 and r["sum"] == 1 + 2 + 3 + 4 for r in results)
