"""A deferred tether call under a real ``airflow triggerer`` process, and a user's "mark failed".

The task runs in this process up to its deferral, as a worker runs it (Airflow's own task runner,
through its in-process execution API: the trigger row and the task's DEFERRED state are Airflow's).
Then a real ``airflow triggerer`` (its own process, the test Airflow home) picks the trigger up,
starts the call, and writes the call's remote output into the task's log. Marking the task failed
(what the UI does: the task instance's state) makes the triggerer cancel the trigger as a user
action, and the trigger's ``on_kill`` cancels the remote call, which the cluster's daemon records
as cancelled."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import tether as rh

pytestmark = pytest.mark.timeout(240)

CODE = '''
import os
import time


def talk_then_spin(seconds: float, marker: str) -> str:
    print("talking from the cluster, then spinning", flush=True)
    open(marker, "w").close()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)
    os.replace(marker, marker + ".done")
    return "spun"
'''

DAG_FILE = '''
from datetime import datetime
from airflow.sdk import DAG
from tether.providers.airflow.operators.tether import TetherCallOperator

with DAG("triggerer_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    TetherCallOperator(task_id="call", service_name="{service}", op_args=[90, "{marker}"],
                       deferrable=True)
'''


def _until(check, what: str, seconds: float = 90, proc: subprocess.Popen | None = None):
    end = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the triggerer exited ({proc.returncode}) before {what}")
        assert time.monotonic() < end, f"no {what} within {seconds} s"
        time.sleep(0.25)


def _defer(dag, session):
    """Run the DAG's only task up to its deferral, as ``dag.test()`` starts a run and a worker runs
    a task (without running the trigger: a triggerer does)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagrun import DagRun, get_or_create_dagrun
    from airflow.sdk import timezone
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    manager = DagBundlesManager()
    manager.sync_bundles_to_db(session=session)
    session.commit()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        sync_bag_to_db(BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path,
                                    bundle_name=bundle.name), bundle.name, bundle.version)
    now = timezone.utcnow()
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    run = get_or_create_dagrun(
        dag=scheduler_dag, start_date=now, logical_date=now, data_interval=None, run_after=now,
        run_id=DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=now, run_after=now),
        session=session, conf=None, triggered_by=DagRunTriggeredByType.TEST, triggering_user_name="test")
    (ti,) = run.get_task_instances(session=session)
    ti.try_number += 1
    ti.state = TaskInstanceState.SCHEDULED
    session.commit()
    _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=False)
    session.expire_all()
    (ti,) = run.get_task_instances(session=session)
    assert ti.state == TaskInstanceState.DEFERRED and ti.trigger_id is not None, ti.state
    return ti


def test_a_real_triggerer_runs_the_call_logs_it_and_marking_the_task_failed_cancels_it(airflow_home, tmp_path):
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    DAGS = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])  # set by conftest (not imported: "conftest" is another folder's in a full run)

    from tether.steps import actions

    tag = uuid.uuid4().hex[:6]
    code = DAGS / f"trig_code_{tag}.py"
    code.write_text(CODE)
    cluster = actions.bring_up(f"aftg-{tag}", launcher="local")
    service = actions.deploy(f"{code.stem}:talk_then_spin", f"talk-{tag}", cluster.name).name
    marker = tmp_path / "spin"
    dag_path = DAGS / f"dag_triggerer_{tag}.py"
    dag_path.write_text(DAG_FILE.replace("{tag}", tag).replace("{service}", service)
                        .replace("{marker}", str(marker)))
    triggerer = None
    try:
        spec = importlib.util.spec_from_file_location(dag_path.stem, dag_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with create_session() as session:
            ti = _defer(module.dag, session)
            url = session.query(XComModel).filter(
                XComModel.dag_id == ti.dag_id, XComModel.run_id == ti.run_id,
                XComModel.key == "_link_TetherCallLink").one().value
        call_id, trigger_id = url.rsplit("/", 1)[1], ti.trigger_id
        assert not marker.exists()  # deferred: nothing ran the call yet

        log = open(tmp_path / "triggerer.log", "w")
        triggerer = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "triggerer",
                                      "--skip-serve-logs"], env={**os.environ}, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _until(marker.exists, "remote call started by the triggerer", proc=triggerer)

        logs = Path(airflow_home) / "logs" / f"dag_id=triggerer_{tag}"
        _until(lambda: "talking from the cluster, then spinning" in _task_log(logs),
               "remote output in the task's log", seconds=30, proc=triggerer)

        with create_session() as session:  # the UI's "mark failed": the task instance's state
            ti = session.merge(ti)
            ti.set_state(TaskInstanceState.FAILED, session=session)
        with pytest.raises(rh.CallCancelledError):  # the daemon's own record: cancelled
            cluster.result(call_id, timeout=60)  # (it would spin for 90 s)
        assert not (tmp_path / "spin.done").exists()
        _until(lambda: f"[tether] cancelled remote call {call_id}" in _task_log(logs),
               "word of the cancel in the task's log", seconds=30, proc=triggerer)
        assert "Trigger cancelled by user action, invoking on_kill" in _task_log(logs)
        with create_session() as session:
            assert not session.query(Trigger).filter(Trigger.id == trigger_id).count()  # cleaned up
    finally:
        if triggerer is not None:
            triggerer.terminate()
            try:
                triggerer.wait(30)
            except subprocess.TimeoutExpired:
                triggerer.kill()
        dag_path.unlink(missing_ok=True)
        code.unlink(missing_ok=True)
        cluster.teardown()


def _task_log(folder: Path) -> str:
    """The task's log files (the triggerer writes the trigger's part next to the worker's)."""
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*.log*") if p.is_file())
