"""The Airflow provider in real DAG runs (``dag.test()`` on SQLite, DAG files in the dags folder,
real local clusters): the OOM climb through try_number, teardown after a failure, ``@task.tether``,
connections, and what a wrong name says."""

from __future__ import annotations

import json

import pytest

import tether as rh

HEADER = '''
from datetime import datetime
from airflow.sdk import DAG, task
from tether.providers.airflow.operators.tether import (
    TetherCallOperator, TetherClusterOperator, TetherDeployOperator, TetherTeardownOperator)

LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}]
'''

CLIMB = HEADER + '''
with DAG("climb_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="af-{tag}", ladder=LADDER)
    deploy = TetherDeployOperator(task_id="deploy", target="tether_test_code:Model",
                                  service_name="model-{tag}", cluster_name=up.output,
                                  init_kwargs={"tag": "t"})
    fit = TetherCallOperator(task_id="fit", service_name=deploy.output, method="fit",
                             op_kwargs={"mib": 400}, ladder=LADDER)
    score = TetherCallOperator(task_id="score", service_name=deploy.output, method="score")
    down = TetherTeardownOperator(task_id="down", cluster_name=up.output).as_teardown(setups=up)
    up >> deploy >> fit >> score >> down
'''


def test_an_oom_on_the_small_rung_succeeds_on_the_next_try_and_the_cluster_goes_down(run_dag, capfd):
    run, tag = run_dag(CLIMB)
    assert run.state == "success", run.tasks
    assert run.tasks["fit"] == ("success", 2)  # try 1: OOM on 256Mi; try 2: 1Gi
    assert run.xcom["fit"] == 400
    assert run.xcom["score"] == "t:400"  # the same live instance, found by name
    assert run.xcom["up"] == f"af-{tag}" and run.xcom["deploy"] == f"model-{tag}"
    assert not rh.cluster(f"af-{tag}").is_up()
    out = capfd.readouterr()
    log = out.out + out.err
    assert "fitting on 400 MiB" in log  # remote output, in the task log
    assert "ran out of memory on cluster" in log and "The next attempt runs on memory=1Gi" in log


FAILING = HEADER + '''
with DAG("failing_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="af-{tag}", ladder=LADDER)
    deploy = TetherDeployOperator(task_id="deploy", target="tether_test_code:fail",
                                  service_name="fail-{tag}", cluster_name=up.output)
    call = TetherCallOperator(task_id="call", service_name=deploy.output, op_args=["bad batch"],
                              ladder=LADDER)
    down = TetherTeardownOperator(task_id="down", cluster_name=up.output).as_teardown(setups=up)
    up >> deploy >> call >> down
'''


def test_a_non_oom_failure_is_not_retried_and_teardown_still_runs(run_dag, capfd):
    run, tag = run_dag(FAILING)
    assert run.state == "failed"
    assert run.tasks["call"] == ("failed", 1)  # retries=1 from the ladder, yet no second try
    assert run.tasks["down"] == ("success", 1)
    assert not rh.cluster(f"af-{tag}").is_up()
    out = capfd.readouterr()
    assert "not an out-of-memory error: not retried" in out.out + out.err


EXHAUSTED = HEADER + '''
with DAG("exhausted_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="af-{tag}", ladder=LADDER)
    deploy = TetherDeployOperator(task_id="deploy", target="tether_test_code:hog",
                                  service_name="hog-{tag}", cluster_name=up.output)
    call = TetherCallOperator(task_id="call", service_name=deploy.output, op_args=[2048],
                              ladder=LADDER, retries=3)
    down = TetherTeardownOperator(task_id="down", cluster_name=up.output).as_teardown(setups=up)
    up >> deploy >> call >> down
'''


def test_an_exhausted_ladder_fails_listing_every_rung_without_using_spare_retries(run_dag, capfd):
    run, _ = run_dag(EXHAUSTED)
    assert run.state == "failed"
    assert run.tasks["call"] == ("failed", 2)  # retries=3, but no rung above the second
    out = capfd.readouterr()
    assert ("ran out of memory on every rung of the ladder: tried memory=256Mi cpus=1 (attempt 1), "
            "memory=1Gi cpus=1 (attempt 2)") in out.out + out.err


DECORATED = HEADER + '''
with DAG("decorated_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="af-{tag}", ladder=LADDER)

    @task.tether(cluster="af-{tag}", ladder=LADDER)
    def hog(mib: int) -> int:
        print(f"holding {mib} MiB", flush=True)
        chunks = [bytearray(b"x" * (1 << 20)) for _ in range(mib)]
        return len(chunks)

    down = TetherTeardownOperator(task_id="down", cluster_name="af-{tag}").as_teardown(setups=up)
    up >> hog(400) >> down
'''


def test_task_tether_runs_the_function_remotely_and_climbs_on_oom(run_dag, capfd):
    run, _ = run_dag(DECORATED)
    assert run.state == "success", run.tasks
    assert run.tasks["hog"] == ("success", 2)
    assert run.xcom["hog"] == 400
    out = capfd.readouterr()
    assert "holding 400 MiB" in out.out + out.err


CLUSTERS = HEADER + '''
with DAG("clusters_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    @task.tether(cluster="afu-{tag}", ladder=LADDER)
    def unsaved() -> int:
        return 1

    @task.tether(cluster="{saved}")
    def saved_but_down() -> int:
        return 2

    @task.tether(cluster="afn-{tag}")
    def unsaved_without_a_ladder() -> int:
        return 3

    unsaved() >> saved_but_down() >> unsaved_without_a_ladder()
'''


def test_task_tether_brings_its_cluster_up_or_says_how(run_dag, capfd):
    """No cluster-up task: an unsaved cluster comes up on the ladder's first rung, a saved one that
    is down comes up as saved, and an unsaved one without a ladder fails saying what to do."""
    import uuid

    saved = rh.cluster(name=f"afs-{uuid.uuid4().hex[:6]}", launcher="local", memory="512Mi").save()
    run, tag = run_dag(CLUSTERS.replace("{saved}", saved.name))
    try:
        assert run.tasks["unsaved"] == ("success", 1) and run.xcom["unsaved"] == 1
        assert rh.cluster(f"afu-{tag}").spec == {"memory": "256Mi", "cpus": 1}  # the first rung
        assert run.tasks["saved_but_down"] == ("success", 1) and run.xcom["saved_but_down"] == 2
        assert run.tasks["unsaved_without_a_ladder"] == ("failed", 1)
        out = capfd.readouterr()
        log = out.out + out.err
        assert (f"function 'unsaved_without_a_ladder' runs on cluster 'afn-{tag}', which no step brought "
                "up and which is not saved. Bring it up upstream: TetherClusterOperator(task_id='up', "
                f"cluster_name='afn-{tag}', spec={{'memory': '2Gi'}}) >> this task; or give @task.tether "
                "a ladder=[...], and it brings the cluster up on the first rung.") in log
    finally:
        for name in (f"afu-{tag}", saved.name):
            rh.cluster(name).teardown()


WRONG_NAMES = HEADER + '''
with DAG("wrong_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    no_cluster = TetherDeployOperator(task_id="no_cluster", target="tether_test_code:hog",
                                      service_name="x-{tag}", cluster_name="no-such-cluster-{tag}")
    no_service = TetherCallOperator(task_id="no_service", service_name="no-such-service-{tag}",
                                    ladder=LADDER)
    no_conn = TetherClusterOperator(task_id="no_conn", cluster_name="c-{tag}",
                                    tether_conn_id="no_such_conn_{tag}")
'''


def test_wrong_names_fail_at_once_naming_what_is_missing(run_dag, capfd):
    run, tag = run_dag(WRONG_NAMES)
    assert run.state == "failed"
    assert all(state == ("failed", 1) for state in run.tasks.values()), run.tasks
    out = capfd.readouterr()
    log = out.out + out.err
    assert f"no cluster named 'no-such-cluster-{tag}'" in log
    assert ("Bring it up upstream of this task: TetherClusterOperator(task_id='up', "
            f"cluster_name='no-such-cluster-{tag}'") in log  # what to do, in Airflow's terms
    assert f"no service named 'no-such-service-{tag}'" in log
    assert ("Deploy it upstream of this task: TetherDeployOperator(task_id='deploy', "
            f"target='package.module:Name', service_name='no-such-service-{tag}'") in log
    assert f"no Airflow connection 'no_such_conn_{tag}': create it with type 'tether'" in log


CONNECTION = HEADER + '''
with DAG("conn_{tag}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="af-{tag}", spec={"memory": "512Mi"},
                               tether_conn_id="tether_{tag}")
    down = TetherTeardownOperator(task_id="down", cluster_name=up.output,
                                  tether_conn_id="tether_{tag}")
    up >> down
'''


def test_a_connection_points_the_steps_at_its_registry_folder(run_dag, tmp_path, monkeypatch):
    registry = tmp_path / "registry"
    tag = "conn"
    monkeypatch.setenv(f"AIRFLOW_CONN_TETHER_{tag.upper()}",
                       f'{{"conn_type": "tether", "host": "{registry}", "extra": {{"launcher": "local"}}}}')
    run, _ = run_dag(CONNECTION.replace("{tag}", tag))
    assert run.state == "success", run.tasks
    assert (registry / "resources" / f"af-{tag}.json").exists()  # saved there, not in $TETHER_HOME
    assert (registry / "clusters" / f"af-{tag}").is_dir()


def test_the_provider_registers_its_connection_type_and_decorator(airflow_home):
    import warnings

    from airflow.providers_manager import ProvidersManager

    from tether.providers.airflow import get_provider_info

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manager = ProvidersManager()
        info = manager.providers["tether"].data
        assert info["connection-types"] == get_provider_info()["connection-types"]
        assert manager.hooks["tether"].hook_class_name.endswith("TetherHook")
        assert "tether" in manager.taskflow_decorators


def test_a_connection_to_a_team_registry_applies_its_url_and_token(airflow_home, sqlite_registry, monkeypatch):
    """Host: the registry's URL, password: the token; the steps run with them as TETHER_REGISTRY
    and TETHER_TOKEN, restored after; the UI's connection test asks the registry who it is."""
    from tether.core.registry import remote
    from tether.core.registry.names import resolve
    from tether.providers.airflow.hooks.tether import TetherHook

    monkeypatch.delenv("TETHER_REGISTRY", raising=False)
    monkeypatch.delenv("TETHER_TOKEN", raising=False)
    token = sqlite_registry.tokens["alice"]
    monkeypatch.setenv("AIRFLOW_CONN_TETHER_TEAM", json.dumps(
        {"conn_type": "tether", "host": sqlite_registry.url, "password": token}))
    hook = TetherHook("tether_team")
    settings = hook.get_conn()
    assert (settings.registry_url, settings.home) == (sqlite_registry.url, None)
    assert token not in repr(settings)
    with hook.activated():
        assert remote.configured() == remote.Login(sqlite_registry.url, token)
        assert resolve("train").path == "/alice/train"
    assert remote.configured() is None
    assert hook.test_connection() == (True, f"team registry {sqlite_registry.url} as alice, launcher local")
    monkeypatch.setenv("AIRFLOW_CONN_TETHER_BAD", json.dumps(
        {"conn_type": "tether", "host": sqlite_registry.url, "password": "trt_wrong"}))
    ok, why = TetherHook("tether_bad").test_connection()
    assert not ok and "unknown or revoked" in why
    monkeypatch.setenv("AIRFLOW_CONN_TETHER_FTP", '{"conn_type": "tether", "host": "ftp://x"}')
    with pytest.raises(rh.ConfigError, match="neither a folder nor a team registry"):
        TetherHook("tether_ftp").get_conn()
