"""Distributed engines across two test hosts: torch.distributed (gloo, CPU) and Ray.

The nodes have no package index: torch (the CPU wheel on this machine's disk) and ray are fetched
here and sent over SSH (``install_packages(..., from_local=True)``).
"""

from __future__ import annotations

import pytest
from placed_code import cluster_of, importable

import tether as rh

pytestmark = pytest.mark.timeout(600)

TORCH = "torch==2.13.0+cpu"  # the CPU build only: a plain 2.13.0 could pull the CUDA one
RAY = "ray==2.60.0"

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
                "uid": os.getuid(), "local_rank": int(os.environ["LOCAL_RANK"])}
    finally:
        dist.destroy_process_group()


def fail_on_rank_1():
    import time

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    if dist.get_rank() == 1:
        raise ValueError("rank 1 fails")
    t = torch.zeros(1)
    work = dist.all_reduce(t, async_op=True)  # rank 1 never joins: this would wait forever
    while not work.is_completed():
        time.sleep(0.01)  # short sleeps: the stop reaches this thread between two


def ray_spread(tasks):
    import ray

    ray.init()

    @ray.remote(num_cpus=1)
    def where(i):
        import time
        time.sleep(1.0)
        return ray.get_runtime_context().get_node_id()

    used = set(ray.get([where.remote(i) for i in range(tasks)]))
    return {"alive": sum(1 for n in ray.nodes() if n["Alive"]), "used": len(used)}
'''


@pytest.fixture(scope="module")
def dist_module(tmp_path_factory):
    with importable(tmp_path_factory.mktemp("dist"), "dist", CODE) as module:
        yield module


@pytest.fixture(scope="module")
def rack(test_hosts):
    hosts = test_hosts.create(2)
    cluster = cluster_of(hosts, "dist")
    cluster.install_packages([TORCH, RAY], node="all", from_local=True)
    yield cluster, hosts
    cluster.teardown()


def test_torch_all_reduce_across_two_hosts(rack, dist_module):
    cluster, hosts = rack
    train = rh.function(dist_module.all_reduce).to(cluster).distribute("pytorch", num_nodes=2, procs_per_node=1)
    results = train(2)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world"] == 2 and r["sum"] == 2 * (1 + 2) for r in results)
    uids = [int(h.ssh("id -u").stdout) for h in hosts]
    assert [r["uid"] for r in results] == uids  # rank 0 on the head, rank 1 on the other host
    assert train(5)[1]["sum"] == 5 * 3  # a second call: the same workers, a new process group


def test_two_processes_per_node(rack, dist_module):
    cluster, _ = rack
    train = rh.function(dist_module.all_reduce).to(cluster, name="all-reduce-4").distribute(
        "pytorch", procs_per_node=2)
    results = train(1)
    assert [(r["rank"], r["local_rank"]) for r in results] == [(0, 0), (1, 1), (2, 0), (3, 1)]
    assert all(r["world"] == 4 and r["sum"] == 1 + 2 + 3 + 4 for r in results)


def test_a_failing_rank_stops_the_others_and_is_named(rack, dist_module):
    cluster, _ = rack
    job = rh.function(dist_module.fail_on_rank_1).to(cluster).distribute("pytorch")
    with pytest.raises(ValueError, match="rank 1 fails") as info:
        job()
    assert info.value.rank == 1
    assert any("other ranks were stopped" in note for note in info.value.__notes__)


def test_ray_across_two_hosts(rack, dist_module):
    cluster, _ = rack
    job = rh.function(dist_module.ray_spread).to(cluster).distribute(
        "ray", ray_start_args=["--num-cpus=1", "--object-store-memory=80000000"])
    try:
        got = job(4)
        assert got == {"alive": 2, "used": 2}  # both hosts joined, and the tasks ran on both
    finally:
        job.shutdown()


def test_bad_distribute_arguments(rack, dist_module):
    cluster, _ = rack
    fn = rh.function(dist_module.all_reduce).to(cluster, name="bad-args")
    with pytest.raises(rh.ConfigError, match="has 2 node"):
        fn.distribute("pytorch", num_nodes=3)
    with pytest.raises(rh.ConfigError, match="'pytorch' or 'ray'"):
        fn.distribute("mpi")
    with pytest.raises(rh.ConfigError, match="not deployed"):
        rh.function(dist_module.all_reduce).distribute("pytorch")
