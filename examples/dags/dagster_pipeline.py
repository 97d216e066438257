"""The example pipeline as Dagster definitions: train a model on a cluster that grows when it runs out
of memory.

Run it from this folder (Dagster imports ``trainer.py`` from the working directory), with Dagster's
default executor (each step in a process of its own):
``dagster job execute -f dagster_pipeline.py -j train_and_evaluate``, or ``dagster dev -f dagster_pipeline.py``.

1. ``model`` is the first step that uses the service: it brings up a local cluster named "train"
   on the ladder's first rung (256 MiB, 1 CPU) and deploys a live ``Trainer`` on it named "trainer";
2. it loads 512 MiB of data: try 1 is killed by the 256 MiB limit (a real OOM kill), so the step
   asks Dagster for a retry, and try 2 (another process) runs on the next rung (2 GiB, 2 CPUs:
   on a local cluster, the trainer's env grows to it; the cluster keeps its size);
3. ``evaluation`` (another process again) finds the cluster up, as the climb left it, and the same
   live instance by its name, which still holds the model;
4. ``teardown="always"``: once the run's last step is over the cluster goes down, once, even if a
   step failed.

The assets pass names, never data: each returns a ``MaterializeResult`` with what the step did as
metadata, so no IO manager stores anything; the model stays in the live instance on the cluster.
"""

import dagster as dg
from trainer import Trainer  # your own class, in trainer.py next to this file

from tether.providers.dagster import TetherClusterResource, TetherServiceResource, call

# The compute to try, smallest first. Only an out-of-memory failure climbs to the next rung.
LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "2Gi", "cpus": 2}]


@dg.asset
def model(context: dg.AssetExecutionContext, trainer: TetherServiceResource) -> dg.MaterializeResult:
    # Retried on the next rung on out-of-memory only; any other error fails at once.
    trained = call(context, trainer, "train", data_mib=512, ladder=LADDER)
    return dg.MaterializeResult(metadata={"service": trainer.service_name, **trained})


@dg.asset(deps=[model])
def evaluation(context: dg.AssetExecutionContext, trainer: TetherServiceResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=call(context, trainer, "evaluate"))


cluster = TetherClusterResource(cluster_name="train", ladder=LADDER, teardown="always")

defs = dg.Definitions(
    assets=[model, evaluation],
    jobs=[dg.define_asset_job("train_and_evaluate")],
    resources={
        # Deployed by its import path ("trainer:Trainer"): the cluster imports it from your project.
        "trainer": TetherServiceResource(service_name="trainer", cluster=cluster, target=Trainer,
                                         init_kwargs={"learning_rate": 0.5}),
    },
)
