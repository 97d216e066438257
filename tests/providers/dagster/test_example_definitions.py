"""``examples/dags/dagster_pipeline.py`` as a user runs it: ``dagster job execute -f
dagster_pipeline.py -j train_and_evaluate`` (the real CLI, Dagster's default multiprocess executor:
every step and every retry in a process of its own) on a real local cluster. The model step is
OOM-killed at the 256 MiB cgroup limit and retried on 2 GiB, the evaluation step (another process)
finds the same live instance, which holds the model, and the cluster goes down once, after the run's
last step."""

from __future__ import annotations

import pytest

from tether.core.registry import local

pytestmark = pytest.mark.timeout(400)


def test_the_example_job_climbs_keeps_the_instance_and_tears_down_once_under_the_cli(examples, dagster_cli):
    import tether as rh

    done = dagster_cli(examples.folder / "dagster_pipeline.py", "train_and_evaluate")
    assert done.returncode == 0, done.output[-4000:]
    assert [e.step_key for e in done.of_type("STEP_UP_FOR_RETRY")] == ["model"]  # one OOM on 256 MiB
    assert done.metadata("model") == {"service": "trainer", "weight": 1.0, "data_mib": 512.0}
    # evaluate() of the instance that trained, from another process, after the climb
    assert done.metadata("evaluation") == {"score": 1.0, "weight": 1.0, "data_mib": 512.0}
    assert local.load("train")["spec"] == {"memory": "256Mi", "cpus": 1}  # a local climb grows the env, not the cluster
    assert not rh.cluster("train").is_up()
    messages = done.messages()
    assert any("the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in m for m in messages)
    assert sum("env 'default' of cluster 'train' goes from" in m and "to memory=2Gi cpus=2 (rung 2 of 2)" in m
               for m in messages) == 1
    assert sum("bringing up cluster 'train'" in m for m in messages) == 1  # once: later steps reuse it
    assert sum("tearing down cluster 'train'" in m for m in messages) == 1  # once, at the run's end
    down = next(e for e in done.events if "tearing down cluster 'train'" in e.user_message)
    assert down.step_key == "evaluation"  # the last step, after its own work
    assert not done.of_type("HANDLED_OUTPUT")  # names, never data: no IO manager stored anything

    # run it again: the cluster is down, the service's record stays. The first step brings the
    # cluster up and deploys the service afresh (no "made again" warning), and the run trains again
    again = dagster_cli(examples.folder / "dagster_pipeline.py", "train_and_evaluate")
    assert again.returncode == 0, again.output[-4000:]
    assert again.metadata("evaluation") == {"score": 1.0, "weight": 1.0, "data_mib": 512.0}
    messages = again.messages()
    assert sum("deploying trainer:Trainer as service 'trainer'" in m for m in messages) == 1
    assert not any("was made again on cluster 'train' from its constructor arguments" in m for m in messages)
