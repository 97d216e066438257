"""Dagster 1.x integration for tether: resources for a named cluster and a named service, and
helpers for ops and assets that retry out-of-memory on a bigger rung.

    import dagster as dg
    from tether.providers.dagster import TetherClusterResource, TetherServiceResource, call

    LADDER = [{"memory": "256Mi", "cpus": "1"}, {"memory": "1Gi", "cpus": "2"}]

    @dg.asset
    def model(context: dg.AssetExecutionContext, trainer: TetherServiceResource) -> dict:
        # run 1 runs out of memory on 256 MiB: RetryRequested; run 2 runs on 1 GiB
        return call(context, trainer, "train", data_mib=400, ladder=LADDER)

    defs = dg.Definitions(assets=[model], resources={
        "cluster": TetherClusterResource(cluster_name="train", ladder=LADDER, teardown="always"),
        "trainer": TetherServiceResource(service_name="trainer", cluster_name="train",
                                         target="trainer:Trainer"),
    })

``call`` raises ``RetryRequested`` (with the retries the ladder allows, no wait) on an
out-of-memory failure while a rung is left, and ``Failure(allow_retries=False)`` for anything
else; the remote output goes to ``context.log``.
"""

from tether.providers.dagster.ops import call
from tether.providers.dagster.resources import TetherClusterResource, TetherServiceResource

__all__ = ["TetherClusterResource", "TetherServiceResource", "call"]
