"""Definitions that ``test_default_executor.py`` runs with the real CLI (``dagster job execute -f
cli_defs.py -j JOB``): Dagster's default executor, a process per step and per retry. The test
names its cluster and the teardown policy through ``DG_TAG`` and ``DG_TEARDOWN``."""

import os

import dagster as dg
import pipes_code

from tether.providers.dagster import (
    PipesTetherClient,
    TetherClusterResource,
    TetherServiceResource,
    call,
)

TAG = os.environ["DG_TAG"]
LADDER = [{"memory": "256Mi", "cpus": "1"}, {"memory": "1Gi", "cpus": "1"}]

cluster = TetherClusterResource(cluster_name=f"dg-{TAG}", ladder=LADDER,
                                teardown=os.environ.get("DG_TEARDOWN", "always"))
model = TetherServiceResource(service_name=f"model-{TAG}", cluster=cluster, target="memory_code:Model",
                              init_kwargs={"tag": "d"})


@dg.asset
def fitted(context: dg.AssetExecutionContext, model: TetherServiceResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"fitted": call(context, model, "fit", mib=400, ladder=LADDER)})


@dg.asset(deps=[fitted])
def score_a(context: dg.AssetExecutionContext, model: TetherServiceResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"score": call(context, model, "score")})


@dg.asset(deps=[fitted])
def score_b(context: dg.AssetExecutionContext, model: TetherServiceResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"score": call(context, model, "score")})


@dg.asset(deps=[fitted])
def broken(context: dg.AssetExecutionContext, model: TetherServiceResource) -> None:
    call(context, model, "no_such_method")


@dg.asset(deps=[broken])
def after_broken(context: dg.AssetExecutionContext, model: TetherServiceResource) -> None:
    call(context, model, "score")


@dg.asset(deps=[fitted])
def report(context: dg.AssetExecutionContext) -> None:
    """The run's last step uses no tether resource: the teardown comes after it."""
    context.log.info("reporting")


@dg.asset(deps=[fitted])
def piped(context: dg.AssetExecutionContext, pipes: PipesTetherClient) -> dg.MaterializeResult:
    """Dagster Pipes on the cluster ``fitted`` climbed, in a step process of its own."""
    return pipes.run(context=context, function=pipes_code.build, args=(7,),
                     extras={"table": "t"}).get_materialize_result()


@dg.asset
def spun(context: dg.AssetExecutionContext, spin: TetherServiceResource) -> None:
    """A long call, for a run that is interrupted while it runs (the marker: when it started)."""
    call(context, spin, None, 8, marker=os.environ["DG_MARKER"])


@dg.asset
def piped_long(context: dg.AssetExecutionContext, pipes: PipesTetherClient) -> dg.MaterializeResult:
    """A long Pipes run, for a run that is interrupted while it runs."""
    return pipes.run(context=context, function=pipes_code.slow, args=(8, os.environ["DG_MARKER"])
                     ).get_materialize_result()


@dg.asset
def rescored(context: dg.AssetExecutionContext, model: TetherServiceResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"score": call(context, model, "score", ladder=LADDER)})


@dg.op(out=dg.DynamicOut(int))
def shards():
    for i in range(3):
        yield dg.DynamicOutput(i, mapping_key=f"shard_{i}")


@dg.op
def scored_shard(context: dg.OpExecutionContext, model: TetherServiceResource, shard: int) -> str:
    """One mapped copy per shard, each in a process of its own, on the same live instance."""
    call(context, model, "fit", mib=1)
    return call(context, model, "score")


@dg.op
def gathered(context: dg.OpExecutionContext, scores: list) -> None:
    context.log.info(f"gathered {sorted(scores)}")


@dg.job
def mapped():
    gathered(shards().map(scored_shard).collect())


defs = dg.Definitions(
    assets=[fitted, score_a, score_b, broken, after_broken, report, piped, spun, piped_long, rescored],
    jobs=[mapped,
          dg.define_asset_job("fit_and_score", selection=["fitted", "score_a", "score_b"]),
          dg.define_asset_job("fit_then_fail", selection=["fitted", "broken", "after_broken"]),
          dg.define_asset_job("fit_and_report", selection=["fitted", "report"]),
          dg.define_asset_job("fit_then_pipe", selection=["fitted", "piped"]),
          dg.define_asset_job("spin", selection=["spun"]),
          dg.define_asset_job("pipe_long", selection=["piped_long"]),
          dg.define_asset_job("rescore", selection=["rescored"])],
    resources={"model": model, "pipes": PipesTetherClient(cluster=cluster),
               "spin": TetherServiceResource(service_name=f"spin-{TAG}", cluster=cluster,
                                             target="timeout_code:spin")},
)
