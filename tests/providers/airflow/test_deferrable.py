"""Deferrable calls in real DAG runs: ``dag.test()`` runs each trigger in line, as the triggerer
would, on real local clusters with real memory limits. The call is prepared in the task, started
and followed by ``TetherCallTrigger``, and the task resumes with the result fetched by id; an OOM
climbs the ladder on the retry; a timeout cancels the remote call."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import tether as rh

pytestmark = pytest.mark.timeout(300)

HEADER = '''
from datetime import datetime, timedelta
from airflow.sdk import DAG, task
from tether.providers.airflow.operators.tether import (
    TetherCallOperator, TetherClusterOperator, TetherDeployOperator, TetherTeardownOperator)

LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}]
'''

CLIMB = HEADER + '''
with DAG("deferred_climb_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="afd-{tag}", ladder=LADDER)
    deploy = TetherDeployOperator(task_id="deploy", target="tether_test_code:Model",
                                  service_name="model-{tag}", cluster_name=up.output,
                                  init_kwargs={"tag": "t"})
    fit = TetherCallOperator(task_id="fit", service_name=deploy.output, method="fit",
                             op_kwargs={"mib": 400}, ladder=LADDER, deferrable=True)
    score = TetherCallOperator(task_id="score", service_name=deploy.output, method="score",
                               deferrable=True)
    down = TetherTeardownOperator(task_id="down", cluster_name=up.output).as_teardown(setups=up)
    up >> deploy >> fit >> score >> down
'''


def test_a_deferred_call_climbs_on_oom_and_resumes_with_the_result_of_the_same_instance(run_dag, capfd):
    run, tag = run_dag(CLIMB)
    assert run.state == "success", run.tasks
    assert run.tasks["fit"] == ("success", 2)  # try 1: OOM on 256Mi, raised on resume; try 2: 1Gi
    assert run.xcom["fit"] == 400
    assert run.xcom["score"] == "t:400"  # the same live instance, after the climb
    assert not rh.cluster(f"afd-{tag}").is_up()
    link = run.xcoms[("fit", "_link_TetherCallLink")]
    assert link.startswith("http://127.0.0.1:") and "/_tether/calls/" in link
    out = capfd.readouterr()
    log = out.out + out.err
    assert "[tether] deferred: the triggerer runs call" in log
    assert "fitting on 400 MiB" in log  # the remote output, read by the trigger into its log
    assert "ran out of memory on cluster" in log and "The next attempt runs on memory=1Gi" in log
    # the climb's warning, from the worker that prepared the deferred call, names the reset instance
    assert f"[tether] the climb reset the state of instance 'model-{tag}'" in log


DECORATED = HEADER + '''
with DAG("deferred_decorated_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    @task.tether(cluster="afd-{tag}", ladder=LADDER, deferrable=True)
    def hog(mib: int) -> dict:
        print(f"holding {mib} MiB", flush=True)
        chunks = [bytearray(b"x" * (1 << 20)) for _ in range(mib)]
        return {"held": len(chunks)}

    down = TetherTeardownOperator(task_id="down", cluster_name="afd-{tag}")
    hog(400) >> down
'''


def test_task_tether_deferred_brings_its_cluster_up_and_climbs_on_oom(run_dag, capfd):
    run, tag = run_dag(DECORATED)  # no up task: the task brings the unsaved cluster up itself
    assert run.state == "success", run.tasks
    assert run.tasks["hog"] == ("success", 2)
    assert run.xcom["hog"] == {"held": 400}
    assert rh.cluster(f"afd-{tag}").spec["memory"] == "256Mi"  # the first rung: the env climbed
    out = capfd.readouterr()
    log = out.out + out.err
    assert "holding 400 MiB" in log
    assert f"cluster 'afd-{tag}' is not saved: bringing it up on the ladder's first rung" in log
    assert f"attempt 2: env 'default' of cluster 'afd-{tag}' goes from memory=256Mi cpus=1 to memory=1Gi" in log


TIMED = HEADER + '''
with DAG("deferred_timed_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="afd-{tag}", ladder=LADDER)
    deploy = TetherDeployOperator(task_id="deploy", target="timeout_code:spin",
                                  service_name="spin-{tag}", cluster_name=up.output)
    call = TetherCallOperator(task_id="call", service_name=deploy.output, op_args=[120, "{marker}"],
                              ladder=LADDER, deferrable=True, execution_timeout=timedelta(seconds=6))
    up >> deploy >> call
'''


def test_a_deferred_call_past_its_timeout_is_cancelled_and_fails_without_a_climb(run_dag, capfd, tmp_path):
    marker = tmp_path / "spin"
    run, tag = run_dag(TIMED.replace("{marker}", str(marker)))
    try:
        assert run.state == "failed"
        assert run.tasks["call"] == ("failed", 1), run.tasks  # retries=1 from the ladder, unused
        assert marker.exists() and not (tmp_path / "spin.done").exists()  # it started, never ended
        call_id = run.xcoms[("call", "_link_TetherCallLink")].rsplit("/", 1)[1]
        with pytest.raises(rh.CallCancelledError):  # the daemon's own record: cancelled
            rh.cluster(f"afd-{tag}").result(call_id, timeout=30)
        out = capfd.readouterr()
        log = out.out + out.err
        assert "CallTimeoutError" in log and "tether asked the cluster to cancel it (cancelled)" in log
        assert "not an out-of-memory error: not retried" in log
        assert "goes from memory=256Mi" not in log
    finally:
        rh.cluster(f"afd-{tag}").teardown()


MISSING = HEADER + '''
with DAG("deferred_missing_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    call = TetherCallOperator(task_id="call", service_name="no-such-service-{tag}", deferrable=True)
    big = TetherCallOperator(task_id="big", service_name="no-such-service-{tag}", deferrable=True,
                             op_args=["x" * (2 << 20)])
'''


def test_a_deferred_call_of_a_missing_service_fails_in_the_worker_naming_the_airflow_fix(run_dag, capfd):
    run, tag = run_dag(MISSING)
    assert run.tasks["call"] == ("failed", 1)
    out = capfd.readouterr()
    log = out.out + out.err
    assert (f"no service named 'no-such-service-{tag}' was deployed through tether's pipeline steps"
            in log)
    assert (f"Deploy it upstream of this task: TetherDeployOperator(task_id='deploy', "
            f"target='package.module:Name', service_name='no-such-service-{tag}'") in log
    assert run.tasks["big"] == ("failed", 1)
    assert "the arguments of this deferred call pickle to" in log
    assert "Keep the data on the cluster and pass names" in log
    assert "deferred: the triggerer runs call" not in log  # neither deferred


def test_the_trigger_serializes_to_what_rebuilds_it():
    from tether.providers.airflow.triggers.tether import TetherCallTrigger

    call = {"cluster": "c", "service": "s", "method": "m", "call_id": "1", "what": "s.m",
            "deadline": None, "timeout": None, "url": "http://127.0.0.1:1/_tether/calls/1"}
    path, kwargs = TetherCallTrigger(call=call, arguments="YQ==", home="/r").serialize()
    assert path == "tether.providers.airflow.triggers.tether.TetherCallTrigger"
    json.dumps(kwargs)  # plain JSON: Airflow stores it
    module, _, name = path.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)


REBUILT = HEADER + '''
with DAG("deferred_rebuilt_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="afd-{tag}", ladder=LADDER)
    deploy = TetherDeployOperator(task_id="deploy", target="rebuild_code:Checkpointed",
                                  service_name="ckpt-{tag}", cluster_name=up.output,
                                  init_kwargs={"folder": "{folder}", "tag": "a"})
    sibling = TetherDeployOperator(task_id="sibling", target="rebuild_code:Checkpointed",
                                   service_name="sib-{tag}", cluster_name=up.output,
                                   init_args=["{folder}"], init_kwargs={"tag": "b"})
    warm = TetherCallOperator(task_id="warm", service_name=sibling.output, method="warm", op_args=[7],
                              deferrable=True)
    fit = TetherCallOperator(task_id="fit", service_name=deploy.output, method="fit",
                             op_kwargs={"mib": 400}, ladder=LADDER, deferrable=True)
    rebuilds = TetherCallOperator(task_id="rebuilds", service_name=deploy.output, method="rebuilds",
                                  deferrable=True)
    score = TetherCallOperator(task_id="score", service_name=sibling.output, method="score",
                               deferrable=True)
    down = TetherTeardownOperator(task_id="down", cluster_name=up.output).as_teardown(setups=up)
    up >> [deploy, sibling]
    sibling >> warm >> fit
    deploy >> fit >> rebuilds >> score >> down
'''


def test_a_deferred_climb_names_the_reset_instances_and_rebuilds_them_with_the_tasks_inputs(run_dag, capfd, tmp_path):
    import shutil

    DAGS = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])  # set by conftest (not imported: "conftest" is another folder's in a full run)

    code = Path(shutil.copy(Path(__file__).parents[2] / "integration" / "steps" / "rebuild_code.py",
                            DAGS / "rebuild_code.py"))
    try:
        run, tag = run_dag(REBUILT.replace("{folder}", str(tmp_path)))
    finally:
        code.unlink()
    assert run.state == "success", run.tasks
    assert run.tasks["fit"] == ("success", 2) and run.xcom["fit"] == 400
    (context,) = run.xcom["rebuilds"]  # __tether_rebuild__, once, before the retried fit
    assert context["kwargs"] == {"folder": str(tmp_path), "tag": "a"}  # the constructor's
    assert (context["method"], context["call_kwargs"], context["attempt"]) == ("fit", {"mib": 400}, 2)
    assert run.xcom["score"] == "b:7"  # the sibling in the same env: reset, and back from its checkpoint
    out = capfd.readouterr()
    log = out.out + out.err
    assert f"[tether] the climb reset the state of 2 instances, 'ckpt-{tag}', 'sib-{tag}'" in log \
        or f"[tether] the climb reset the state of 2 instances, 'sib-{tag}', 'ckpt-{tag}'" in log
    assert f"[tether] rebuilt instance 'ckpt-{tag}' with __tether_rebuild__" in log
    assert "rebuilt a from its checkpoint (400)" in log  # the rebuild's output, in the task log
