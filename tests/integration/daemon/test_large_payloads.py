"""Large arrays: through shared memory when caller and cluster share a machine, else as raw
out-of-band frames over HTTP, where the daemon never holds two copies of one (it writes a big
argument into shared memory for the worker as it arrives, and sends a big result from there).

Each test runs both ways: "shared-memory" (the local cluster's default) and "socket"
(``TETHER_SHM=0``, the path of a remote cluster). The daemon's peak resident memory (VmHWM, read
from /proc) is the evidence for the copies it holds.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import remote_code as rc

import tether as rh

SIZE = 1024 * 1024 * 1024  # the 1 GB of the issue

PATHS = {"shared-memory": "1", "socket": "0"}


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(params=PATHS.values(), ids=PATHS.keys())
def path(request, monkeypatch):
    monkeypatch.setenv("TETHER_SHM", request.param)
    return request.param == "1"


@pytest.fixture
def cluster(make_cluster, path):
    cluster = make_cluster()
    assert (cluster.client.shm is not None) == path
    return cluster


def _daemon_pid(cluster) -> int:
    return cluster.status()["pid"]


def test_round_trip_of_a_100mb_array(cluster, path):
    echo = rh.function(rc.echo).to(cluster, name=f"echo-{uuid.uuid4().hex[:6]}")
    array = np.random.default_rng(0).random(100 * 1024 * 1024 // 8)
    (back,), _ = echo(array)
    assert np.array_equal(back, array)
    back[0] = -1.0  # an ordinary, writable array
    owner = rh.function(rc.buffer_owner).to(cluster)
    # the worker maps the argument, no copy: from the caller's file, or (socket) from the file
    # the daemon wrote the body into as it arrived (daemon/spool.py)
    assert owner(array) == "mmap"


def test_daemon_holds_one_copy_of_a_big_argument(cluster, path):
    nbytes = rh.function(rc.nbytes).to(cluster)
    nbytes(np.zeros(10, dtype=np.uint8))  # warm up: worker started, code imported
    pid = _daemon_pid(cluster)
    before = _peak_rss(pid)
    assert nbytes(np.ones(SIZE, dtype=np.uint8)) == SIZE
    grew = _peak_rss(pid) - before
    assert grew < (0.1 if path else 1.5) * SIZE, f"the daemon's peak memory grew by {grew / SIZE:.2f}x the argument"


def test_daemon_holds_one_copy_of_a_big_result(cluster, path):
    zeros = rh.function(rc.zeros).to(cluster)
    zeros(10)
    pid = _daemon_pid(cluster)
    before = _peak_rss(pid)
    assert zeros(SIZE).nbytes == SIZE
    grew = _peak_rss(pid) - before
    assert grew < (0.1 if path else 1.5) * SIZE, f"the daemon's peak memory grew by {grew / SIZE:.2f}x the result"


def test_a_kept_result_is_not_changed_by_writing_to_the_one_received(cluster):
    fill = rh.function(rc.fill).to(cluster)
    handle = fill.submit(4 * 1024 * 1024, 7)
    got = handle.result(60)
    got[:] = 1
    again = cluster.result(handle.call_id)  # the daemon's kept copy, fetched by id
    assert again.min() == again.max() == 7


def test_shared_memory_files_are_removed(make_cluster, monkeypatch):
    monkeypatch.setenv("TETHER_RESULTS_MAX_COUNT", "1")
    cluster = make_cluster()
    folder = Path(cluster.client.shm)
    echo = rh.function(rc.echo).to(cluster)
    for value in range(3):
        (back,), _ = echo(np.full(1 << 20, value, dtype=np.uint8))
        assert back[0] == value
    # arguments: taken by the worker; results: all but the one kept for fetching by id
    from process_helpers import wait_until

    wait_until(lambda: len([p for p in os.listdir(folder) if p != "probe"]) <= 1, 10,
               "evicted results' shared memory to be removed")
    cluster.teardown()
    assert not folder.exists()
