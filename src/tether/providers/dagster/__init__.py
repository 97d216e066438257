"""Dagster 1.x integration for tether: resources for a named cluster and a named service, ``call``
for ops and assets that retry out-of-memory on a bigger rung, and Dagster Pipes on a cluster.

A complete pipeline (``dagster job execute -f defs.py -j __ASSET_JOB``, with ``trainer.py`` of
``examples/dags/`` next to it)::

    import dagster as dg
    from tether.providers.dagster import TetherClusterResource, TetherServiceResource, call

    LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 2}]

    @dg.asset
    def model(context: dg.AssetExecutionContext, trainer: TetherServiceResource) -> dg.MaterializeResult:
        # try 1 runs out of memory on 256 MiB: RetryRequested; try 2 runs on 1 GiB
        trained = call(context, trainer, "train", data_mib=400, ladder=LADDER)
        return dg.MaterializeResult(metadata=trained)  # names and numbers, never data

    @dg.asset(deps=[model])
    def evaluation(context: dg.AssetExecutionContext, trainer: TetherServiceResource) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=call(context, trainer, "evaluate"))  # the same live instance

    cluster = TetherClusterResource(cluster_name="train", ladder=LADDER, teardown="always")
    defs = dg.Definitions(assets=[model, evaluation], resources={
        "trainer": TetherServiceResource(service_name="trainer", cluster=cluster, target="trainer:Trainer"),
    })

The cluster is brought up by the first step that uses it (or found up, on whatever rung it climbed
to) and torn down by its policy once, when the run's last step is over, with any executor.
``call`` raises ``RetryRequested`` (with the retries the ladder allows, no wait) on an
out-of-memory failure while a rung is left, and ``Failure(allow_retries=False)`` for anything
else; the remote output goes to ``context.log``. ``PipesTetherClient`` runs a function on the
cluster in a Pipes session (``tether.providers.dagster.pipes``).
"""

from tether.providers.dagster.ops import call
from tether.providers.dagster.pipes import PipesTetherClient, PipesTetherMessageReader
from tether.providers.dagster.resources import TetherClusterResource, TetherServiceResource

__all__ = ["PipesTetherClient", "PipesTetherMessageReader", "TetherClusterResource", "TetherServiceResource",
           "call"]
