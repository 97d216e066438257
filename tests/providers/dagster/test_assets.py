"""The Dagster provider in real runs (``materialize``, real local clusters): the OOM climb through
``RetryRequested``, no retry for other failures, teardown policies."""



import dagster as dg
import memory_code

import tether as rh
from tether.providers.dagster import TetherClusterResource, TetherServiceResource, call

LADDER = [{"memory": "256Mi", "cpus": "1"}, {"memory": "1Gi", "cpus": "1"}]


def test_an_oom_on_the_small_rung_is_retried_on_the_next_and_teardown_follows(tag):
    @dg.asset
    def fitted(context: dg.AssetExecutionContext, model: TetherServiceResource) -> int:
        return call(context, model, "fit", mib=400, ladder=LADDER)

    @dg.asset(deps=[fitted])
    def score(context: dg.AssetExecutionContext, model: TetherServiceResource) -> str:
        return call(context, model, "score")

    cluster = TetherClusterResource(cluster_name=f"dg-{tag}", ladder=LADDER, teardown="always")
    model = TetherServiceResource(service_name=f"model-{tag}", cluster=cluster,
                                  target="memory_code:Model", init_kwargs={"tag": "d"})
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([fitted, score], resources={"model": model}, instance=instance)
    assert result.success
    assert result.output_for_node("fitted") == 400
    assert result.output_for_node("score") == "d:400"
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1  # one OOM on 256Mi, then 1Gi
    assert not rh.cluster(f"dg-{tag}").is_up()
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert sum("fitting on 400 MiB" in m for m in messages) == 2  # remote output, in context.log


def test_other_failures_fail_without_retry_and_on_failure_tears_down(tag):
    cluster = TetherClusterResource(cluster_name=f"dg-{tag}", ladder=LADDER, teardown="on_failure")

    @dg.op
    def failing(context: dg.OpExecutionContext, fn: TetherServiceResource, tc: TetherClusterResource):
        return call(context, fn, None, "bad batch", ladder=LADDER, cluster=tc)

    @dg.job
    def job():
        failing()

    fn = TetherServiceResource(service_name=f"fail-{tag}", cluster=cluster, target="memory_code:fail")
    result = job.execute_in_process(resources={"fn": fn, "tc": cluster}, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "bad batch" in str(failure.event_specific_data.error)
    assert "not retried" in str(failure.event_specific_data.error)


def test_an_exhausted_ladder_and_a_wrong_name_fail_saying_so(tag):
    cluster = TetherClusterResource(cluster_name=f"dg-{tag}", ladder=LADDER, teardown="always")

    @dg.op
    def too_big(context: dg.OpExecutionContext, hog: TetherServiceResource):
        return call(context, hog, None, 2048, ladder=LADDER)

    @dg.op
    def ghost(context: dg.OpExecutionContext):
        return call(context, f"no-such-service-{tag}", "fit")

    @dg.job
    def job():
        too_big()
        ghost()

    hog = TetherServiceResource(service_name=f"hog-{tag}", cluster=cluster, target="memory_code:hog")
    result = job.execute_in_process(resources={"hog": hog}, raise_on_error=False)
    errors = {e.step_key: str(e.event_specific_data.error) for e in result.all_events
              if e.event_type_value == "STEP_FAILURE"}
    assert "every rung of the ladder: tried memory=256Mi cpus=1 (attempt 1), memory=1Gi cpus=1 (attempt 2)" in errors["too_big"]
    assert f"no service named 'no-such-service-{tag}'" in errors["ghost"]
    # the hint names Dagster's way to fix it, not another orchestrator's
    assert f"give the step a TetherServiceResource(service_name='no-such-service-{tag}'" in errors["ghost"]
    assert "Operator" not in errors["ghost"] and "@task" not in errors["ghost"]


def test_a_service_is_reattached_while_its_definition_holds_and_deployed_afresh_after(tag):
    cluster = TetherClusterResource(cluster_name=f"dg-{tag}", launcher="local", memory="512Mi")

    def run(model_tag: str, fit: bool) -> str:
        @dg.asset
        def scored(context: dg.AssetExecutionContext, model: TetherServiceResource) -> str:
            if fit:
                call(context, model, "fit", mib=1)
            return call(context, model, "score")

        model = TetherServiceResource(service_name=f"model-{tag}", cluster=cluster,
                                      target=memory_code.Model, init_kwargs={"tag": model_tag})
        assert model.target == "memory_code:Model"  # a class given in Python: its import path
        return dg.materialize([scored], resources={"model": model}).output_for_node("scored")

    assert run("a", fit=True) == "a:1"
    assert run("a", fit=False) == "a:1"  # reattached: the same live instance, fitted in run 1
    assert run("b", fit=True) == "b:1"  # other arguments: deployed afresh


def test_tags_copied_from_a_parent_run_are_not_this_runs(tag):
    """A re-execution or a run retry starts with its parent's tags: a failure recorded there, or a
    cluster it tore down, must not decide this run's teardown."""
    cluster = TetherClusterResource(cluster_name=f"dg-{tag}", launcher="local", memory="256Mi",
                                    teardown="on_failure")

    @dg.asset
    def scored(context: dg.AssetExecutionContext, model: TetherServiceResource) -> str:
        call(context, model, "fit", mib=1)
        return call(context, model, "score")

    model = TetherServiceResource(service_name=f"model-{tag}", cluster=cluster, target="memory_code:Model")
    parent = {"tether/run": "the-parent-run", "tether/step-failed": "true",
              f"tether/cluster/dg-{tag}": "torn down", f"tether/service/model-{tag}": "deployed"}
    result = dg.materialize([scored], resources={"model": model}, tags=parent)
    assert result.success
    assert rh.cluster(f"dg-{tag}").is_up()  # nothing failed in this run: on_failure keeps it
    assert result.dagster_run.tags[f"tether/cluster/dg-{tag}"] == "kept"
    assert result.dagster_run.tags["tether/step-failed"] == ""  # the parent's, blanked
