"""``examples/dags/dagster_pipeline.py``, its job run as it is (``execute_in_process``) on a real
local cluster: the model step is OOM-killed at the 256 MiB cgroup limit and retried on 2 GiB, the
same live instance evaluates, and the resource's teardown policy takes the cluster down."""

from __future__ import annotations

import dagster as dg

import tether as rh


def test_the_example_job_trains_on_the_next_rung_after_an_oom_and_tears_down(examples):
    defs = examples.load("dagster_pipeline").defs
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("train_and_evaluate").execute_in_process(instance=instance)
    assert result.success
    assert result.output_for_node("model") == {"weight": 1.0, "data_mib": 512.0}
    # evaluate() of the instance that trained: found by name after the climb
    assert result.output_for_node("evaluation") == {"score": 1.0, "weight": 1.0, "data_mib": 512.0}
    retries = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == ["model"]  # one OOM on 256 MiB, then 2 GiB
    assert rh.cluster("train").spec == {"memory": "256Mi", "cpus": 1}  # a local climb grows the env, not the cluster
    assert not rh.cluster("train").is_up()
    logged = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    assert "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in logged
    assert "env 'default' of cluster 'train' goes from memory=256Mi cpus=1 to memory=2Gi cpus=2" in logged
    assert "tearing down cluster 'train'" in logged
