"""``examples/dags/prefect_task_runner.py`` as a user runs it, ``python prefect_task_runner.py``
against a Prefect server (the harness's), on real local clusters: the 400 MiB shard is OOM-killed at
the 256 MiB cgroup limit and retried alone on the rung's cluster, the others run once, and both
clusters are down at the end."""

from __future__ import annotations

import pytest

import tether as rh

pytestmark = pytest.mark.timeout(300)


def _why_runs(measured: dict, runs: dict, logs: dict) -> str:
    """Each measure task run's count and log lines (the kernel's OOM log is added to any failure's
    report by tests/conftest.py)."""
    return "\n".join(f"{n} (runs: {count}):\n  " + "\n  ".join(logs.get(runs[n].id, []))
                     for n, count in measured.items())


@pytest.fixture
def shards_clusters():
    yield
    for name in ("shards", "shards-rung2"):
        try:
            rh.cluster(name).teardown()
        except rh.NotFoundError:
            pass


def test_the_task_runner_example_climbs_the_shard_that_ran_out_of_memory(
        examples, prefect_api, task_runs, task_run_logs, shards_clusters):
    done, [run] = prefect_api.run(examples.folder / "prefect_task_runner.py", flow="measure-shards")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("{'shards': 3, 'mib': 496}")
    assert run.state.is_completed()
    runs = {r.name: r for r in task_runs(run.state)}
    measured = {n: r.run_count for n, r in runs.items() if n.startswith("measure")}
    logs = task_run_logs(run.state, expect=("on cluster 'shards-rung2', after running out of memory",
                                            "tearing down cluster 'shards-rung2'"))
    # The big shard ran again on the rung, after the kernel killed it at the 256 MiB limit.
    big = runs[next(n for n in measured if "shard 2: loading 400 MiB" in "\n".join(logs[runs[n].id]))]
    assert big.run_count == 2, _why_runs(measured, runs, logs)
    # Any other shard ran again only if the kernel killed it too, and then it says so. Usually it
    # does not, but a memory cgroup can kill twice: while the big shard's last thread frees its
    # memory, the cgroup's task walk already skips it (css_task_iter skips dying leaders), so a
    # small shard that faults in those milliseconds is the next victim. tether must then say
    # "out of memory" and move that shard up too, and never re-run a shard that was not killed.
    for n, count in measured.items():
        said = "\n".join(logs[runs[n].id])
        killed = "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in said
        assert count == (2 if killed else 1), _why_runs(measured, runs, logs)
        assert killed == ("on cluster 'shards-rung2', after running out of memory" in said), said
    flow_logs = "\n".join(logs[None])
    assert "bringing up cluster 'shards' (local, memory=256Mi cpus=1)" in flow_logs
    assert "bringing up cluster 'shards-rung2' (rung 2 of 2, memory=1Gi cpus=1)" in flow_logs
    assert flow_logs.count("tearing down cluster") == 2  # each once, when the flow run ended
    assert not rh.cluster("shards").is_up() and not rh.cluster("shards-rung2").is_up()
