"""``examples/dags/prefect_pipeline.py``, run as it is under the Prefect test harness on a real local
cluster: the train task is OOM-killed at the 256 MiB cgroup limit and retried on 2 GiB, the same live
instance evaluates, and the cluster is down at the end; and run as a user runs it,
``python prefect_pipeline.py``, against a Prefect server (the harness's)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tether as rh


def test_the_example_flow_trains_on_the_next_rung_after_an_oom_and_tears_down(
        prefect_harness, examples, task_runs, run_logs):
    state = examples.load("prefect_pipeline").train_and_evaluate(return_state=True)
    assert state.is_completed()
    # evaluate() of the instance that trained: found by name after the climb
    assert state.result() == {"score": 1.0, "weight": 1.0, "data_mib": 512.0}
    calls = sorted(r.run_count for r in task_runs(state) if r.name.startswith("tether-call"))
    assert calls == [1, 2]  # evaluate ran once; train twice: 256 MiB, then 2 GiB
    assert rh.cluster("train").spec == {"memory": "2Gi", "cpus": 2}  # the rung it ended on
    assert not rh.cluster("train").is_up()
    logged = "\n".join(run_logs(state))
    assert "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in logged
    assert "goes from memory=256Mi cpus=1 to memory=2Gi cpus=2" in logged
    assert "tearing down cluster 'train'" in logged


def test_the_example_flow_tears_down_when_even_the_last_rung_is_too_small(prefect_harness, examples):
    state = examples.load("prefect_pipeline").train_and_evaluate(data_mib=4096, return_state=True)
    assert state.is_failed()
    with pytest.raises(rh.OutOfMemoryError, match=r"every rung of the ladder: tried memory=256Mi cpus=1 "
                                                  r"\(attempt 1\), memory=2Gi cpus=2 \(attempt 2\)"):
        state.result()
    assert not rh.cluster("train").is_up()  # the flow's `finally` ran


def test_the_example_runs_as_a_script_against_a_prefect_server(prefect_harness, examples, prefect_api):
    before = prefect_api.flow_runs("train-and-evaluate")
    done = subprocess.run([sys.executable, "prefect_pipeline.py"], cwd=examples.folder, timeout=240,
                          env=prefect_api.env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("{'score': 1.0, 'weight': 1.0, 'data_mib': 512.0}")
    assert "Starting temporary server" not in done.stdout + done.stderr  # it used the server
    runs = [r for r in prefect_api.flow_runs("train-and-evaluate") if r.id not in {b.id for b in before}]
    assert [r.state.type.value for r in runs] == ["COMPLETED"]
    assert not rh.cluster("train").is_up()
