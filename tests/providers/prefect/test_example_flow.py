"""``examples/dags/prefect_pipeline.py``, run as it is under the Prefect test harness on a real local
cluster: the train task is OOM-killed at the 256 MiB cgroup limit and retried on 2 GiB, the same live
instance evaluates, and the cluster is down at the end."""

from __future__ import annotations

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
    assert rh.cluster("train").spec == {"memory": "256Mi", "cpus": 1}  # a local climb grows the env, not the cluster
    assert not rh.cluster("train").is_up()
    logged = "\n".join(run_logs(state))
    assert "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in logged
    assert "env 'default' of cluster 'train' goes from memory=256Mi cpus=1 to memory=2Gi cpus=2" in logged
    assert "tearing down cluster 'train'" in logged


def test_the_example_flow_tears_down_when_even_the_last_rung_is_too_small(prefect_harness, examples):
    state = examples.load("prefect_pipeline").train_and_evaluate(data_mib=4096, return_state=True)
    assert state.is_failed()
    with pytest.raises(rh.OutOfMemoryError, match=r"every rung of the ladder: tried memory=256Mi cpus=1 "
                                                  r"\(attempt 1\), memory=2Gi cpus=2 \(attempt 2\)"):
        state.result()
    assert not rh.cluster("train").is_up()  # the flow's `finally` ran
