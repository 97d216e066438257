"""The Prefect provider in real flow runs (``prefect_test_harness``, real local clusters): the OOM
climb through ``retry_condition_fn`` and ``run_count``, no retry for other failures, blocks saved in
one flow and loaded in another, and what a wrong name says."""

from __future__ import annotations

import memory_code  # noqa: F401 - importable by path for the deploys below
import pytest
from prefect import flow

import tether as rh
from tether.providers.prefect import (
    TetherCluster,
    TetherService,
    bring_up_cluster,
    call_service,
    deploy_service,
    teardown_cluster,
)

LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}]


def test_an_oom_on_the_small_rung_is_retried_on_the_next_and_teardown_follows(
        prefect_harness, tag, task_runs, run_logs):
    @flow
    def climb():
        cluster = TetherCluster(cluster_name=f"pf-{tag}", ladder=LADDER)
        service = TetherService(service_name=f"model-{tag}", cluster_name=f"pf-{tag}",
                                target="memory_code:Model", init_kwargs={"tag": "p"})
        try:
            bring_up_cluster(cluster)
            deploy_service(service)
            fitted = call_service(f"model-{tag}", "fit", kwargs={"mib": 400}, ladder=LADDER)
            return fitted, call_service(service, "score")
        finally:
            teardown_cluster(cluster)

    state = climb(return_state=True)
    assert state.is_completed()
    assert state.result() == (400, "p:400")
    fit = [r for r in task_runs(state) if r.name.startswith("tether-call") and r.run_count > 1]
    assert len(fit) == 1 and fit[0].run_count == 2  # run 1: OOM on 256Mi, run 2 on 1Gi
    assert not rh.cluster(f"pf-{tag}").is_up()
    logged = run_logs(state)
    assert logged.count("fitting on 400 MiB") == 2  # the remote output, in the run logger, each run
    assert any("goes from memory=256Mi cpus=1 to memory=1Gi cpus=1" in line for line in logged)


def test_other_failures_are_not_retried(prefect_harness, tag, task_runs):
    @flow
    def failing():
        bring_up_cluster(TetherCluster(cluster_name=f"pf-{tag}", ladder=LADDER))
        deploy_service(TetherService(service_name=f"fail-{tag}", cluster_name=f"pf-{tag}",
                                     target="memory_code:fail"))
        return call_service(f"fail-{tag}", args=["bad batch"], ladder=LADDER)

    state = failing(return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="bad batch"):
        state.result()
    calls = [r for r in task_runs(state) if r.name.startswith("tether-call")]
    assert [r.run_count for r in calls] == [1]


def test_an_exhausted_ladder_fails_with_every_rung_tried(prefect_harness, tag):
    @flow
    def exhausted():
        bring_up_cluster(TetherCluster(cluster_name=f"pf-{tag}", ladder=LADDER))
        deploy_service(TetherService(service_name=f"hog-{tag}", cluster_name=f"pf-{tag}",
                                     target="memory_code:hog"))
        return call_service(f"hog-{tag}", args=[2048], ladder=LADDER)

    state = exhausted(return_state=True)
    with pytest.raises(rh.OutOfMemoryError, match=r"every rung of the ladder: tried memory=256Mi cpus=1 "
                                                  r"\(attempt 1\), memory=1Gi cpus=1 \(attempt 2\)"):
        state.result()


def test_blocks_saved_in_one_flow_are_loaded_in_another(prefect_harness, tag):
    @flow
    def first():
        cluster = TetherCluster(cluster_name=f"pf-{tag}", spec={"memory": "512Mi"}, launcher="local")
        cluster.save(f"cluster-{tag}")
        TetherService(service_name=f"model-{tag}", cluster_name=f"pf-{tag}",
                      target="memory_code:Model", init_args=["b"]).save(f"service-{tag}")
        bring_up_cluster(cluster)

    @flow
    def second():
        cluster = TetherCluster.load(f"cluster-{tag}")
        service = TetherService.load(f"service-{tag}")
        deploy_service(service)
        service.call("fit", 3)
        score = service.call("score")
        teardown_cluster(cluster)
        return cluster.spec, score

    first()
    assert second() == ({"memory": "512Mi"}, "b:3")
    assert not rh.cluster(f"pf-{tag}").is_up()


def test_wrong_names_fail_the_task_naming_them(prefect_harness, tag):
    @flow
    def wrong():
        return call_service(f"no-such-service-{tag}", "fit", ladder=LADDER)

    state = wrong(return_state=True)
    with pytest.raises(rh.NotFoundError, match=f"no service named 'no-such-service-{tag}'"):
        state.result()

    @flow
    def no_cluster():
        return bring_up_cluster(f"no-such-cluster-{tag}")

    with pytest.raises(rh.NotFoundError, match=f"no cluster named 'no-such-cluster-{tag}'"):
        no_cluster()


def test_a_missing_service_says_how_to_deploy_it_in_prefect(prefect_harness, tag):
    @flow
    def undeployed():
        return call_service(f"never-deployed-{tag}", "fit")

    with pytest.raises(rh.NotFoundError, match=r"deploy_service\(TetherService\(service_name=") as info:
        undeployed()
    assert "TetherDeployOperator" not in str(info.value)  # Airflow's name, not Prefect's
    with pytest.raises(rh.NotFoundError, match=r"deploy_service\(TetherService\("):
        TetherService(service_name=f"never-deployed-{tag}", cluster_name="c", target="m:f").call()


def test_the_readmes_ladder_and_named_rungs_in_a_saved_cluster_block(prefect_harness, tag):
    readme = [{"memory": "256Mi", "cpus": 1}, {"memory": "2Gi", "cpus": 2}]
    TetherCluster(cluster_name=f"pf-{tag}", ladder=[*readme, "gpu-cluster"]).save(f"ladder-{tag}")
    loaded = TetherCluster.load(f"ladder-{tag}")
    assert loaded.ladder == [*readme, {"cluster": "gpu-cluster"}]  # a name is a rung, as in tether.Ladder
    assert TetherCluster(cluster_name="x", ladder=rh.Ladder(readme)).ladder == readme
    with pytest.raises(ValueError, match="memory='lots' is not a size: use bytes or e.g. '512Mi'"):
        TetherCluster(cluster_name="x", ladder=[{"memory": "lots"}])
