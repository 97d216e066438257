"""Prefect 3 integration for tether: blocks for a named cluster and a named service, tasks that
bring up, deploy, call (retrying out-of-memory on a bigger rung) and tear down, and
``TetherTaskRunner``, which runs a flow's submitted tasks in the workers of a tether cluster (see
``tether.providers.prefect.task_runners``; the guide is docs/prefect.md).

Registered through the ``prefect.collections`` entry point, so Prefect knows the blocks.

Example:
    A flow that brings up a cluster, deploys a trainer as a live instance, trains it (the first
    run of the task runs out of memory on 256 MiB; Prefect retries it on 1 GiB, the next rung,
    chosen from the task run's ``run_count``), evaluates the same live instance, and tears the
    cluster down even if a step failed::

        from prefect import flow
        from tether.providers.prefect import (
            TetherCluster, TetherService, bring_up_cluster, call_service, deploy_service,
            teardown_cluster)

        LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 2}]

        @flow
        def train_and_evaluate() -> dict:
            cluster = TetherCluster(cluster_name="train", ladder=LADDER)
            service = TetherService(service_name="trainer", cluster_name="train",
                                    target="trainer:Trainer", init_kwargs={"learning_rate": 0.5})
            try:
                bring_up_cluster(cluster)
                deploy_service(service)
                call_service("trainer", "train", kwargs={"data_mib": 400}, ladder=LADDER)
                return call_service("trainer", "evaluate")
            finally:
                teardown_cluster(cluster)

    Blocks save and load like any Prefect block, so another flow finds the same names::

        TetherCluster(cluster_name="train", ladder=LADDER).save("train-cluster")
        ...
        cluster = TetherCluster.load("train-cluster")   # in another flow, another process
        cluster.teardown()

Only out-of-memory failures are retried (``retry_on_oom``), and only while the ladder has a rung
left; any other failure fails the task run at once. The remote output of every call goes to the
Prefect run logger.
"""

from typing import Any

from tether.providers.prefect.blocks import TetherCluster, TetherService
from tether.providers.prefect.tasks import (
    bring_up_cluster,
    call_service,
    deploy_service,
    retry_on_oom,
    teardown_cluster,
)

__all__ = ["PrefectTetherFuture", "TetherCluster", "TetherService", "TetherTaskRunner", "bring_up_cluster",
           "call_service", "deploy_service", "retry_on_oom", "teardown_cluster"]

#: imported when first named: the task runner brings tether's call machinery, and Prefect imports
#: this package (its ``prefect.collections`` entry point) in every process, flows or not
_LAZY = {"TetherTaskRunner": "task_runners", "PrefectTetherFuture": "task_runners"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
