"""The cgroup files a cluster group writes, on a stand-in for the kernel's cgroup filesystems.

The real kernel is exercised by tests/integration/daemon/test_memory_limits.py (v1 or v2, whichever the
machine has); these check both interfaces' file protocol on any machine, v2 included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.daemon import cgroups


def _mountinfo(tmp_path: Path, lines: list[str], own: list[str]) -> tuple[str, str]:
    (tmp_path / "mountinfo").write_text("\n".join(lines) + "\n")
    (tmp_path / "cgroup").write_text("\n".join(own) + "\n")
    return str(tmp_path / "mountinfo"), str(tmp_path / "cgroup")


def test_mounts_of_a_v2_machine(tmp_path):
    root = tmp_path / "fs"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    info, own = _mountinfo(tmp_path, [f"30 23 0:26 / {root} rw - cgroup2 cgroup2 rw"], ["0::/user.slice/x"])
    mounts = cgroups.find_mounts(info, own)
    assert (mounts.v2, mounts.v2_own, mounts.v1_memory) == (root, "/user.slice/x", None)


def test_mounts_of_a_v1_machine_with_an_empty_unified_mount(tmp_path):
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("\n")
    info, own = _mountinfo(tmp_path, [
        f"32 31 0:29 / {tmp_path}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
        f"35 31 0:32 / {tmp_path}/memory rw - cgroup cgroup rw,memory",
        f"41 31 0:38 / {unified} rw - cgroup2 cgroup2 rw",
    ], ["4:memory:/job/42", "1:cpu,cpuacct:/", "0::/"])
    mounts = cgroups.find_mounts(info, own)
    assert mounts.v2 is None
    assert (mounts.v1_memory, mounts.v1_memory_own) == (tmp_path / "memory", "/job/42")
    assert (mounts.v1_cpu, mounts.v1_cpu_own) == (tmp_path / "cpu,cpuacct", "/")


def _v2_tree(tmp_path: Path) -> cgroups.Mounts:
    root = tmp_path / "v2"
    root.mkdir()
    (root / "cgroup.subtree_control").write_text("")
    return cgroups.Mounts(root, "/", None, "/", None, "/")


class FakeKernel:
    """Makes the files the kernel would put in a new group, as directories appear."""

    @staticmethod
    def populate(group: Path, names: list[str]) -> None:
        for name in names:
            if not (group / name).exists():
                (group / name).write_text("")


def test_a_v2_group_gets_the_limit_no_swap_and_a_cpu_quota(tmp_path, monkeypatch):
    mounts = _v2_tree(tmp_path)
    real_mkdir = cgroups._mkdir

    def mkdir(path: Path) -> None:
        real_mkdir(path)
        FakeKernel.populate(path, ["cgroup.subtree_control", "memory.max", "memory.swap.max", "cpu.max",
                                   "cgroup.procs", "memory.events", "memory.peak"])

    monkeypatch.setattr(cgroups, "_mkdir", mkdir)
    group = cgroups.ClusterGroup("small-abc", 256 << 20, 1.5, mounts)
    base = mounts.v2 / "tether" / "small-abc"
    assert (group.version, group.group) == ("v2", base)
    assert (mounts.v2 / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (mounts.v2 / "tether" / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (base / "memory.max").read_text() == str(256 << 20)
    assert (base / "memory.swap.max").read_text() == "0"
    assert (base / "cpu.max").read_text() == "150000 100000"
    assert (base / "cgroup.subtree_control").read_text() == "+memory"

    worker = group.child("default")
    assert worker.path.parent == base
    prefix = worker.prefix()
    assert prefix[:2] == [cgroups.SH, "-c"] and prefix[-2:] == [str(worker.path / "cgroup.procs"), "--"]
    (worker.path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (worker.path / "memory.peak").write_text(f"{255 << 20}\n")
    assert (worker.oom_kills(), worker.peak()) == (1, 255 << 20)


def _v1_tree(tmp_path: Path, memsw: bool = True) -> cgroups.Mounts:
    mem, cpu = tmp_path / "memory", tmp_path / "cpu"
    (mem / "job").mkdir(parents=True)
    cpu.mkdir()
    return cgroups.Mounts(None, "/", mem, "/job", cpu, "/")


@pytest.mark.parametrize("memsw", [True, False], ids=["swap-accounted", "no-swap-accounting"])
def test_a_v1_group_caps_memory_and_swap_under_the_daemons_own_group(tmp_path, monkeypatch, memsw):
    mounts = _v1_tree(tmp_path)
    real_mkdir = cgroups._mkdir

    def mkdir(path: Path) -> None:
        real_mkdir(path)
        names = ["memory.limit_in_bytes", "memory.swappiness", "cgroup.procs", "memory.oom_control",
                 "memory.max_usage_in_bytes", "cpu.cfs_quota_us", "cpu.cfs_period_us"]
        FakeKernel.populate(path, names + (["memory.memsw.limit_in_bytes"] if memsw else []))
        if path.name.startswith("tether-") and path.parent == mounts.v1_cpu:
            (path / "cpu.cfs_period_us").write_text("100000\n")

    monkeypatch.setattr(cgroups, "_mkdir", mkdir)
    group = cgroups.ClusterGroup("small-abc", 256 << 20, 2, mounts)
    base = mounts.v1_memory / "job" / "tether-small-abc"
    assert (group.version, group.group) == ("v1", base)
    assert (base / "memory.limit_in_bytes").read_text() == str(256 << 20)
    assert (base / "memory.swappiness").read_text() == "0"
    if memsw:
        assert (base / "memory.memsw.limit_in_bytes").read_text() == str(256 << 20)
    assert (mounts.v1_cpu / "tether-small-abc" / "cpu.cfs_quota_us").read_text() == "200000"
    worker = group.child("train env")
    assert worker.path.name == "w1-train_env"
    assert worker.prefix()[-3:] == [str(worker.path / "cgroup.procs"),
                                    str(mounts.v1_cpu / "tether-small-abc" / "cgroup.procs"), "--"]
    (worker.path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (worker.path / "memory.max_usage_in_bytes").write_text("268423168\n")
    assert (worker.oom_kills(), worker.peak()) == (2, 268423168)


def test_no_memory_controller_is_said_plainly(tmp_path):
    with pytest.raises(cgroups.CgroupUnavailable, match="no memory cgroup controller"):
        cgroups.ClusterGroup("x", 1 << 30, None, cgroups.Mounts(None, "/", None, "/", None, "/"))

