"""A call task's timeout in a real DAG run is Airflow's own ``execution_timeout``: tether's fires a
little before it, cancels the remote call, and the task fails with CallTimeoutError, without a
retry and without climbing the ladder (a timeout is not an out-of-memory error)."""

from __future__ import annotations

import pytest

import tether as rh

pytestmark = pytest.mark.timeout(300)

TIMED = '''
from datetime import datetime, timedelta
from airflow.sdk import DAG
from tether.providers.airflow.operators.tether import (
    TetherCallOperator, TetherClusterOperator, TetherDeployOperator, TetherTeardownOperator)

LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}]

with DAG("timed_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="af-{tag}", ladder=LADDER)
    deploy = TetherDeployOperator(task_id="deploy", target="timeout_code:spin",
                                  service_name="spin-{tag}", cluster_name=up.output)
    call = TetherCallOperator(task_id="call", service_name=deploy.output, op_args=[120],
                              ladder=LADDER, execution_timeout=timedelta(seconds=5))
    quick = TetherCallOperator(task_id="quick", service_name=deploy.output, op_args=[0.1],
                               execution_timeout=timedelta(seconds=60))
    down = TetherTeardownOperator(task_id="down", cluster_name=up.output).as_teardown(setups=up)
    up >> deploy >> quick >> call >> down
'''


def test_execution_timeout_cancels_the_call_and_fails_without_a_climb(run_dag, capfd):
    run, tag = run_dag(TIMED)
    assert run.state == "failed"
    assert run.tasks["call"] == ("failed", 1), run.tasks  # retries=1 from the ladder, unused
    assert run.tasks["quick"] == ("success", 1)  # a call within its execution_timeout is untouched
    assert run.xcom["quick"] == "spun"
    assert run.tasks["down"] == ("success", 1)
    assert not rh.cluster(f"af-{tag}").is_up()
    out = capfd.readouterr()
    log = out.out + out.err
    assert "CallTimeoutError" in log and f"the call to spin-{tag} on cluster 'af-{tag}'" in log
    assert "tether asked the cluster to cancel it" in log
    assert "not an out-of-memory error: not retried" in log
    assert "AirflowTaskTimeout" not in log  # tether's timeout fired first, not Airflow's
    assert "goes from memory=256Mi" not in log  # no rung was climbed
