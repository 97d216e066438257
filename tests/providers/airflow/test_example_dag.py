"""``examples/dags/airflow_pipeline.py``, copied with ``trainer.py`` into the dags folder and run as
it is (DagBag, ``dag.test()``) on a real local cluster: the train task is OOM-killed at the 256 MiB
cgroup limit and retried on 2 GiB, the same live instance evaluates, and the teardown task takes the
cluster down."""

from __future__ import annotations

import tether as rh


def test_the_example_dag_trains_on_the_next_rung_after_an_oom_and_tears_down(run_dag_files, examples, capfd):
    run = run_dag_files("tether_train", examples.folder / "airflow_pipeline.py", examples.folder / "trainer.py")
    assert run.state == "success", run.tasks
    assert run.tasks["train"] == ("success", 2)  # try 1: OOM on 256 MiB; try 2: 2 GiB
    assert run.xcom["train"] == {"weight": 1.0, "data_mib": 512.0}
    # evaluate() of the instance that trained: found by name after the climb
    assert run.xcom["evaluate"] == {"score": 1.0, "weight": 1.0, "data_mib": 512.0}
    assert run.tasks["down"] == ("success", 1)
    assert rh.cluster("train").spec == {"memory": "256Mi", "cpus": 1}  # a local climb grows the env, not the cluster
    assert not rh.cluster("train").is_up()
    out = capfd.readouterr()
    log = out.out + out.err
    assert "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in log
    assert "env 'default' of cluster 'train' goes from memory=256Mi cpus=1 to memory=2Gi cpus=2" in log
