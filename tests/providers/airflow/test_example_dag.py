"""``examples/dags/airflow_pipeline.py`` (with ``trainer.py``) on a real local cluster: the train task
is OOM-killed at the 256 MiB cgroup limit and retried on 2 GiB, the same live instance evaluates,
and the teardown task takes the cluster down, once.

Run as it is in a DagBag (``dag.test()``), and as a user runs it: Airflow's own CLI, ``airflow dags
test tether_train`` in a subprocess, in the test Airflow home that ``airflow db migrate`` made,
with Airflow's ``[operators] default_deferrable`` on (the calls defer, the CLI runs their triggers),
and with a bad run parameter, which fails the train task natively on resuming (the remote error,
fetched by id), saying what to pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tether as rh

pytestmark = pytest.mark.timeout(400)


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
    link = run.xcoms[("train", "_link_TetherCallLink")]  # the call each call task made
    assert link.startswith("http://127.0.0.1:") and "/_tether/calls/" in link
    out = capfd.readouterr()
    log = out.out + out.err
    assert "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in log
    assert "env 'default' of cluster 'train' goes from " in log and " to memory=2Gi cpus=2" in log
    assert "XCom not found" not in log  # Airflow asks each link as the task ends: nothing missing


@pytest.fixture
def airflow_cli(airflow_home, examples):
    """``airflow dags test tether_train [-c CONF]`` as a user runs it: the example's two files in the
    dags folder, the real CLI in its own process; returns its exit code and its output."""
    DAGS = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])  # set by conftest (not imported: "conftest" is another folder's in a full run)

    copied = [Path(shutil.copy(examples.folder / name, DAGS / name))
              for name in ("airflow_pipeline.py", "trainer.py")]

    def dags_test(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "test", "tether_train", *args],
                              env={**os.environ, **(env or {})}, capture_output=True, text=True,
                              timeout=300, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    yield dags_test
    for path in copied:
        path.unlink()


def test_airflow_dags_test_climbs_keeps_the_instance_and_tears_down_once(airflow_cli):
    code, out = airflow_cli(env={"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"})
    assert code == 0, out[-6000:]
    assert out.count("[tether] deferred: the triggerer runs call") == 3  # train twice, evaluate once
    assert out.count("[DAG TEST] Trigger completed") == 3
    assert "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in out
    climbs = [line for line in out.splitlines() if "env 'default' of cluster 'train' goes from" in line]
    assert len(climbs) == 1 and "to memory=2Gi cpus=2 (rung 2 of 2)" in climbs[0], climbs  # once
    assert "[tether] the climb reset the state of instance 'trainer'" in out  # named in the log
    assert "loading 512 MiB of training data" in out  # the remote output, in the task log
    assert "score 1.00 for a model trained on 512 MiB" in out  # the instance that trained
    assert out.count("tearing down cluster 'train'") == 1  # the teardown task, once
    assert rh.cluster("train").spec == {"memory": "256Mi", "cpus": 1}  # the env grew, not the cluster
    assert not rh.cluster("train").is_up()


def test_airflow_dags_test_with_a_bad_parameter_fails_the_task_saying_what_to_pass(airflow_cli):
    code, out = airflow_cli("-c", '{"data_mib": "lots"}', env={"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"})
    assert "[tether] deferred: the triggerer runs call" in out  # the remote error, on resuming
    assert "data_mib must be a whole number of MiB, at least 1 (got 'lots'): pass e.g. data_mib=512" in out
    assert "not an out-of-memory error: not retried on a bigger machine" in out
    assert "goes from memory=256Mi" not in out  # no climb for a bad input
    assert out.count("tearing down cluster 'train'") == 1  # the teardown task still runs
    assert not rh.cluster("train").is_up()
    assert code != 0 and "DagRun failed" in out, out[-4000:]  # the CLI says the run failed
