"""A local cluster of a given size really runs out of memory: ``memory=`` and ``cpus=`` are enforced
on its workers (cgroups, else the RSS watchdog), the daemon survives outside them and reports the
kill as ``tether.OutOfMemoryError`` with the limit and the peak, and a bigger cluster just works.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import memory_code
import pytest
from limits_support import require_cgroups

import tether as rh
from tether import state as paths

MiB = 1 << 20


def test_a_bad_size_is_refused_when_the_cluster_is_defined():
    with pytest.raises(rh.ConfigError, match="size"):
        rh.cluster(name=f"bad-{uuid.uuid4().hex[:6]}", launcher="local", memory="lots")
    with pytest.raises(rh.ConfigError, match="CPUs"):
        rh.cluster(name=f"bad-{uuid.uuid4().hex[:6]}", launcher="local", cpus=0)


class TestCgroups:
    @pytest.fixture(autouse=True)
    def _need_cgroups(self, monkeypatch):
        require_cgroups()
        monkeypatch.setenv("TETHER_LIMITS", "cgroup")  # the daemon refuses to start without them

    def test_a_gib_on_256_mib_is_an_oom_with_the_limit_and_the_daemon_keeps_serving(self, make_cluster):
        cluster = make_cluster(memory="256Mi", cpus=1)
        limits = cluster.status()["limits"]
        assert limits["enforced_by"].startswith("cgroup v")
        hog = rh.function(memory_code.hog).to(cluster)
        pid = rh.function(memory_code.my_cgroups).to(cluster)  # same env, same worker
        with pytest.raises(rh.OutOfMemoryError) as info:
            hog(1024)
        err = info.value
        assert err.limit == 256 * MiB
        assert 0 < err.peak <= 256 * MiB + MiB
        assert err.signal == "SIGKILL" and err.remote_type == "OOMKilled"
        assert "256 MiB" in str(err) and "ran out of memory" in str(err)
        assert isinstance(err, MemoryError)  # `except MemoryError` catches it too
        assert hog(10) == 10  # a fresh worker, same daemon
        assert "tether-" in pid() or "/tether/" in pid()

    def test_the_same_gib_fits_on_a_2_gib_cluster(self, make_cluster):
        cluster = make_cluster(memory="2Gi")
        assert rh.function(memory_code.hog).to(cluster)(1024) == 1024

    def test_workers_run_in_the_clusters_cgroup_and_the_daemon_does_not(self, make_cluster):
        cluster = make_cluster(memory="512Mi", cpus=1)
        status = cluster.status()
        group = Path(status["limits"]["cgroup"])
        worker_cgroups = rh.function(memory_code.my_cgroups).to(cluster)()
        daemon_cgroups = Path(f"/proc/{status['pid']}/cgroup").read_text()
        assert group.name in worker_cgroups
        assert str(group.name) not in daemon_cgroups
        if (group / "memory.memsw.limit_in_bytes").exists():  # v1 with swap accounting
            assert int((group / "memory.memsw.limit_in_bytes").read_text()) == 512 * MiB
        if (group / "memory.swap.max").exists():  # v2
            assert (group / "memory.swap.max").read_text().strip() == "0"
        limit_file = group / ("memory.max" if (group / "memory.max").exists() else "memory.limit_in_bytes")
        assert int(limit_file.read_text()) == 512 * MiB
        if status["limits"].get("cpu_cgroup"):  # v1: the quota is in the cpu hierarchy
            cpu = Path(status["limits"]["cpu_cgroup"])
            period = int((cpu / "cpu.cfs_period_us").read_text())
            assert int((cpu / "cpu.cfs_quota_us").read_text()) == period
        elif (group / "cpu.max").exists():
            quota, period = (group / "cpu.max").read_text().split()
            assert int(quota) == int(period)

    def test_teardown_removes_the_clusters_cgroup(self, make_cluster):
        cluster = make_cluster(memory="256Mi")
        rh.function(memory_code.hog).to(cluster)(1)
        group = Path(cluster.status()["limits"]["cgroup"])
        assert group.is_dir()
        cluster.teardown()
        assert not group.exists()

    def test_a_new_size_restarts_the_daemon_with_the_new_limit(self, make_cluster):
        small = make_cluster(memory="256Mi")
        hog = rh.function(memory_code.hog).to(small)
        with pytest.raises(rh.OutOfMemoryError):
            hog(512)
        big = rh.cluster(name=small.name, launcher="local", memory="1Gi")
        assert big.up_if_not().status()["limits"]["memory"] == 1 << 30
        assert rh.function(memory_code.hog).to(big)(512) == 512
        big.teardown()


class TestWatchdog:
    """Without cgroups (forced here, as for a user without root) the daemon watches RSS itself."""

    @pytest.fixture(autouse=True)
    def _watchdog(self, monkeypatch):
        monkeypatch.setenv("TETHER_LIMITS", "watchdog")

    def test_a_gib_on_256_mib_is_killed_by_the_watchdog_and_reported_as_oom(self, make_cluster):
        cluster = make_cluster(memory="256Mi", cpus=1)
        assert cluster.status()["limits"]["enforced_by"] == "rss watchdog"
        hog = rh.function(memory_code.hog).to(cluster)
        with pytest.raises(rh.OutOfMemoryError) as info:
            hog(1024)
        assert info.value.limit == 256 * MiB
        assert info.value.peak > 256 * MiB  # it was caught over the limit
        assert "watchdog" in str(info.value)
        assert hog(10) == 10

    def test_cpus_pin_the_workers_and_a_big_cluster_is_left_alone(self, make_cluster):
        cluster = make_cluster(memory="2Gi", cpus=1)
        assert len(rh.function(memory_code.my_cpus).to(cluster)()) == 1
        assert rh.function(memory_code.hog).to(cluster)(1024) == 1024


def test_a_cluster_without_limits_has_none(make_cluster):
    cluster = make_cluster()
    assert cluster.status()["limits"] == {"memory": None, "cpus": None, "enforced_by": None}
    assert json.loads((paths.cluster_dir(cluster.name) / "limits.json").read_text()) == \
        {"memory": None, "cpus": None}


def test_memory_error_raised_by_the_code_keeps_its_own_type(make_cluster):
    cluster = make_cluster(memory="1Gi")
    with pytest.raises(MemoryError, match="could not allocate") as info:
        rh.function(memory_code.raise_memory_error).to(cluster)()
    assert not isinstance(info.value, rh.OutOfMemoryError)  # classifying it is the steps' job
