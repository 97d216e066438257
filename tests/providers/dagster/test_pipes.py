"""Dagster Pipes on a tether cluster (``PipesTetherClient``), in real runs (``materialize``, a
real local cluster): the remote function's ``dagster_pipes`` logs, metadata and materializations
reach the asset; an out-of-memory kill retries on the next rung; a remote error fails the step."""


import dagster as dg
import pipes_code
import pytest

import tether as rh
from tether.providers.dagster import PipesTetherClient, TetherClusterResource

pytestmark = pytest.mark.timeout(300)
LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}]


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def test_the_remote_functions_reports_come_back_through_pipes_and_an_oom_climbs(tag):
    @dg.asset
    def table(context: dg.AssetExecutionContext, pipes: PipesTetherClient) -> dg.MaterializeResult:
        # 300 MiB: killed on 256 MiB, then run again on 1 GiB (a new Pipes session)
        done = pipes.run(context=context, function=pipes_code.build, args=(1200,), kwargs={"mib": 300},
                         extras={"table": "raw.events"})
        assert done.return_value == "built 1200"
        return done.get_materialize_result()

    cluster = TetherClusterResource(cluster_name=f"dg-{tag}", ladder=LADDER, teardown="always")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([table], resources={"pipes": PipesTetherClient(cluster=cluster)},
                            instance=instance)
    assert result.success
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 1
    [materialization] = result.asset_materializations_for_node("table")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata == {"rows": 1200, "table": "raw.events", "held_mib": 300, "tether cluster": f"dg-{tag}"}
    messages = _messages(instance, result.run_id)
    assert sum("building 1200 rows for table" in m for m in messages) == 2  # pipes.log, once per try
    assert any("a plain line from the cluster" in m for m in messages)  # stdout, in context.log
    assert not any("__dagster_pipes_version" in m for m in messages)  # messages were not logged as text
    assert not [e for e in result.all_events if e.event_type_value == "HANDLED_OUTPUT"]  # no IO manager
    assert not rh.cluster(f"dg-{tag}").is_up()


def test_a_remote_error_fails_the_step_without_a_retry(tag):
    @dg.asset
    def table(context: dg.AssetExecutionContext, pipes: PipesTetherClient) -> dg.MaterializeResult:
        return pipes.run(context=context, function=pipes_code.broken).get_materialize_result()

    cluster = TetherClusterResource(cluster_name=f"dg-{tag}", launcher="local", memory="512Mi",
                                    teardown="on_failure")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([table], resources={"pipes": PipesTetherClient(cluster=cluster)},
                            instance=instance, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "the source table is empty" in str(failure.event_specific_data.error)
    assert any("about to fail" in m for m in _messages(instance, result.run_id))  # pipes.log.warning
    assert not rh.cluster(f"dg-{tag}").is_up()  # on_failure
