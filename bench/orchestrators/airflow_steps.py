"""Airflow's step-overhead rows: ``dag.test()`` of N no-op tasks, tether's and Airflow's own.

Two rows, each a pair of DAGs of N independent tasks (``dag.test()`` runs them one after the
other, in this process, through Airflow's in-process execution API, as ``airflow dags test`` does):

- ``TetherCallOperator(service_name=...)`` calling the deployed no-op service, vs
  ``PythonOperator(python_callable=noop)``;
- ``@task.tether(cluster=...)`` (the function is sent by value and run on the cluster at every
  task) vs ``@task``.

The DAGs live in one file of the throwaway dags folder, loaded as Airflow loads a DAG file. The
metadata database is SQLite in ``$AIRFLOW_HOME``, created by ``airflow db migrate``'s own code
(in this process: the CLI's start-up would add seconds to the run, not to the figures).
``operators.default_deferrable`` is set to False: a row times a task that waits for its call in
its worker slot.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from bench.orchestrators.child import CLUSTER, SERVICE, Pair, exit_now, failed, main

DAGS = '''
from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task

from tether.providers.airflow.operators.tether import TetherCallOperator

N, SERVICE, CLUSTER = {n}, {service!r}, {cluster!r}
ARGS = dict(schedule=None, start_date=datetime(2026, 1, 1), catchup=False)


def noop():
    return None


with DAG("bench_python_operator", **ARGS) as python_operator:
    for i in range(N):
        PythonOperator(task_id=f"noop_{{i}}", python_callable=noop)

with DAG("bench_tether_call_operator", **ARGS) as tether_call_operator:
    for i in range(N):
        TetherCallOperator(task_id=f"call_{{i}}", service_name=SERVICE)


@task
def noop_task():
    return None


@task.tether(cluster=CLUSTER)
def noop_remote():
    return None


with DAG("bench_task", **ARGS) as taskflow:
    for i in range(N):
        noop_task.override(task_id=f"noop_{{i}}")()

with DAG("bench_task_tether", **ARGS) as taskflow_tether:
    for i in range(N):
        noop_remote.override(task_id=f"remote_{{i}}")()
'''


def configure() -> Path:
    """Airflow's settings for this throwaway home, before Airflow is imported (it reads them then)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    os.environ.update({
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False",
    })
    return dags


def run(dag) -> None:
    dag_run = dag.test()
    if str(dag_run.state) != "success":
        raise failed(f"dag.test() of {dag.dag_id}", dag_run.state)


@contextlib.contextmanager
def pipelines(n: int) -> Iterator[list[Pair]]:
    dags = configure()
    from airflow.utils import db

    db.upgradedb()  # what `airflow db migrate` does: an empty database is created at the head revision
    path = dags / "bench_steps.py"
    path.write_text(DAGS.format(n=n, service=SERVICE, cluster=CLUSTER))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield [
        Pair("airflow_operator", "Airflow: TetherCallOperator vs PythonOperator",
             lambda: run(module.python_operator), lambda: run(module.tether_call_operator),
             "dag.test() of N PythonOperator(python_callable=noop)",
             "dag.test() of N TetherCallOperator(service_name=<deployed no-op>)"),
        Pair("airflow_taskflow", "Airflow: @task.tether vs @task",
             lambda: run(module.taskflow), lambda: run(module.taskflow_tether),
             "dag.test() of N @task no-ops",
             "dag.test() of N @task.tether(cluster=...) no-ops (sent by value, run on the cluster)"),
    ]


def versions() -> dict[str, str]:
    return {d: metadata.version(d) for d in ("apache-airflow", "apache-airflow-task-sdk")}


if __name__ == "__main__":
    exit_now(main("airflow", pipelines, versions))
