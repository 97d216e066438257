"""A call task's timeout in a real flow run is Prefect's own ``timeout_seconds``: tether's fires a
little before it, cancels the remote call, and the run fails with CallTimeoutError, without a
retry and without climbing the ladder. The service block takes ``call_timeout=``."""

from __future__ import annotations

import pytest
import timeout_code  # noqa: F401 - importable by path for the deploys below
from prefect import flow

import tether as rh
from tether.providers.prefect import (
    TetherCluster,
    TetherService,
    bring_up_cluster,
    call_service,
    deploy_service,
)

pytestmark = pytest.mark.timeout(300)
LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}]


def test_timeout_seconds_cancels_the_call_and_fails_without_a_climb(prefect_harness, tag, task_runs):
    @flow
    def timed():
        bring_up_cluster(TetherCluster(cluster_name=f"pf-{tag}", ladder=LADDER))
        service = TetherService(service_name=f"spin-{tag}", cluster_name=f"pf-{tag}", target="timeout_code:spin")
        deploy_service(service)
        assert call_service.with_options(timeout_seconds=60)(f"spin-{tag}", args=[0.1]) == "spun"
        with pytest.raises(rh.CallTimeoutError):
            service.call(None, 120, call_timeout=0.5)  # the block, with tether's own timeout
        return call_service.with_options(timeout_seconds=5)(f"spin-{tag}", args=[120], ladder=LADDER)

    state = timed(return_state=True)
    assert state.is_failed()
    with pytest.raises(rh.CallTimeoutError, match=f"the call to spin-{tag} on cluster 'pf-{tag}'") as info:
        state.result()
    assert info.value.cancelled is True
    calls = [r for r in task_runs(state) if r.name.startswith("tether-call")]
    assert sorted(r.run_count for r in calls) == [1, 1]  # not retried
    assert rh.cluster(f"pf-{tag}").spec["memory"] == "256Mi"  # no rung climbed
