"""Dagster ops have no timeout of their own: the service resource's ``timeout`` field (or
``call_timeout=`` on ``call``) bounds its calls; past it the remote call is cancelled and the step
fails with CallTimeoutError, without a retry and without climbing the ladder."""


import dagster as dg
import pytest
import timeout_code  # noqa: F401 - importable by path for the deploys below

import tether as rh
from tether.providers.dagster import TetherClusterResource, TetherServiceResource, call

pytestmark = pytest.mark.timeout(300)
LADDER = [{"memory": "256Mi", "cpus": "1"}, {"memory": "1Gi", "cpus": "1"}]


def test_the_resources_timeout_cancels_the_call_and_fails_without_a_climb(tag):
    cluster = TetherClusterResource(cluster_name=f"dg-{tag}", ladder=LADDER)

    @dg.op
    def timed(context: dg.OpExecutionContext, spin: TetherServiceResource, tc: TetherClusterResource):
        assert call(context, spin, None, 0.1) == "spun"
        assert call(context, spin, None, 2, call_timeout=60) == "spun"  # call_timeout= wins
        return call(context, spin, None, 120, ladder=LADDER, cluster=tc)

    @dg.job
    def job():
        timed()

    spin = TetherServiceResource(service_name=f"spin-{tag}", cluster=cluster, target="timeout_code:spin",
                                 timeout=1)
    result = job.execute_in_process(resources={"spin": spin, "tc": cluster}, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = str([e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
                  .event_specific_data.error)
    assert "CallTimeoutError" in failure and f"the call to spin-{tag} on cluster 'dg-{tag}'" in failure
    assert "not retried" in failure
    assert rh.cluster(f"dg-{tag}").spec["memory"] == "256Mi"  # no rung climbed


def test_a_bad_timeout_field_is_refused_by_the_resource(tag):
    with pytest.raises(Exception, match="greater than 0"):
        TetherServiceResource(service_name=f"spin-{tag}", target="timeout_code:spin", timeout=0,
                              cluster=TetherClusterResource(cluster_name=f"dg-{tag}"))
