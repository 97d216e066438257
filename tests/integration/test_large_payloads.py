"""Large arrays travel as raw out-of-band frames, and the daemon never holds two copies of one.

The daemon's peak resident memory (VmHWM, read from /proc) is the evidence: forwarding a 1 GB
argument or result must raise it by well under twice the payload.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import remote_code as rc

import tether as rh

SIZE = 1024 * 1024 * 1024  # the 1 GB of the issue


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def cluster(make_cluster):
    return make_cluster()


def _daemon_pid(cluster) -> int:
    return cluster.status()["pid"]


def test_round_trip_of_a_100mb_array(session_cluster):
    echo = rh.function(rc.echo).to(session_cluster, name=f"echo-{uuid.uuid4().hex[:6]}")
    array = np.random.default_rng(0).random(100 * 1024 * 1024 // 8)
    (back,), _ = echo(array)
    assert np.array_equal(back, array)


def test_daemon_holds_one_copy_of_a_big_argument(cluster):
    nbytes = rh.function(rc.nbytes).to(cluster)
    nbytes(np.zeros(10, dtype=np.uint8))  # warm up: worker started, code imported
    pid = _daemon_pid(cluster)
    before = _peak_rss(pid)
    assert nbytes(np.ones(SIZE, dtype=np.uint8)) == SIZE
    grew = _peak_rss(pid) - before
    assert grew < 1.5 * SIZE, f"the daemon's peak memory grew by {grew / SIZE:.2f}x the argument"


def test_daemon_holds_one_copy_of_a_big_result(cluster):
    zeros = rh.function(rc.zeros).to(cluster)
    zeros(10)
    pid = _daemon_pid(cluster)
    before = _peak_rss(pid)
    assert zeros(SIZE).nbytes == SIZE
    grew = _peak_rss(pid) - before
    assert grew < 1.5 * SIZE, f"the daemon's peak memory grew by {grew / SIZE:.2f}x the result"
