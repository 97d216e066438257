"""``examples/dags/prefect_task_runner.py`` as a user runs it, ``python prefect_task_runner.py``
against a Prefect server (the harness's), on real local clusters: the 400 MiB shard is OOM-killed at
the 256 MiB cgroup limit and retried alone on the rung's cluster, the others run once, and both
clusters are down at the end."""

from __future__ import annotations

import subprocess

import pytest

import tether as rh

pytestmark = pytest.mark.timeout(300)


def _why_runs(measured: dict, runs: dict, logs: dict) -> str:
    """Each measure task run's count and log lines, and the kernel's last OOM kills."""
    return "\n".join(f"{n} (runs: {count}):\n  " + "\n  ".join(logs.get(runs[n].id, []))
                     for n, count in measured.items()) + _kernel_oom_kills()


def _kernel_oom_kills() -> str:
    """The kernel's OOM-kill lines (root only), to tell a real second kill from a misreport."""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    kills = [line for line in out.splitlines() if "oom-kill:" in line or "Killed process" in line]
    return "\nkernel (last OOM kills):\n  " + "\n  ".join(kills[-12:])


@pytest.fixture
def shards_clusters():
    yield
    for name in ("shards", "shards-rung2"):
        try:
            rh.cluster(name).teardown()
        except rh.NotFoundError:
            pass


def test_the_task_runner_example_climbs_one_shard_alone(examples, prefect_api, task_runs, task_run_logs,
                                                        shards_clusters):
    done, [run] = prefect_api.run(examples.folder / "prefect_task_runner.py", flow="measure-shards")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("{'shards': 3, 'mib': 496}")
    assert run.state.is_completed()
    runs = {r.name: r for r in task_runs(run.state)}
    measured = {n: r.run_count for n, r in runs.items() if n.startswith("measure")}
    logs = task_run_logs(run.state, expect=("on cluster 'shards-rung2', after running out of memory",
                                            "tearing down cluster 'shards-rung2'"))
    # only the big shard ran again (the message, made only on a failure, says why another did)
    assert sorted(measured.values()) == [1, 1, 2], _why_runs(measured, runs, logs)
    big = next(runs[n] for n, count in measured.items() if count == 2)
    climbed = "\n".join(logs[big.id])
    assert "shard 2: loading 400 MiB" in climbed
    assert "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in climbed
    assert "on cluster 'shards-rung2', after running out of memory" in climbed
    flow_logs = "\n".join(logs[None])
    assert "bringing up cluster 'shards' (local, memory=256Mi cpus=1)" in flow_logs
    assert "bringing up cluster 'shards-rung2' (rung 2 of 2, memory=1Gi cpus=1)" in flow_logs
    assert flow_logs.count("tearing down cluster") == 2  # each once, when the flow run ended
    assert not rh.cluster("shards").is_up() and not rh.cluster("shards-rung2").is_up()
