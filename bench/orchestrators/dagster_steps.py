"""Dagster's step-overhead row: a job of N ops calling tether vs a job of N no-op ops.

Both jobs run with ``execute_in_process()`` (its in-process executor and ephemeral instance, the
same for both). A tether op takes the service as a ``TetherServiceResource`` (its cluster a
``TetherClusterResource``) and calls it with ``tether.providers.dagster.call``, as the provider's
docs show; the resources are set up once per run (the cluster and the service, already deployed,
are found by name), a cost spread over the N ops like the run's own.

No ``from __future__ import annotations`` here: Dagster reads the ops' annotations (the resource
parameter) at definition time, and they name ``dagster``, imported inside ``pipelines``.
"""

import contextlib
from collections.abc import Iterator
from importlib import metadata

from bench.orchestrators.child import CLUSTER, SERVICE, TARGET, Pair, exit_now, failed, main


@contextlib.contextmanager
def pipelines(n: int) -> Iterator[list[Pair]]:
    import dagster as dg

    from tether.providers.dagster import TetherClusterResource, TetherServiceResource, call

    def native_op(i: int):
        @dg.op(name=f"noop_{i}")
        def op() -> None:
            return None

        return op

    def tether_op(i: int):
        @dg.op(name=f"call_{i}")
        def op(context: dg.OpExecutionContext, noop: TetherServiceResource) -> None:
            return call(context, noop)

        return op

    native_ops, tether_ops = [native_op(i) for i in range(n)], [tether_op(i) for i in range(n)]

    @dg.job(name="bench_native")
    def native():
        for op in native_ops:
            op()

    @dg.job(name="bench_tether")
    def tether():
        for op in tether_ops:
            op()

    resources = {"noop": TetherServiceResource(service_name=SERVICE, target=TARGET,
                                               cluster=TetherClusterResource(cluster_name=CLUSTER))}

    def run(job, **kwargs) -> None:
        result = job.execute_in_process(raise_on_error=False, **kwargs)
        if not result.success:
            errors = [str(e.event_specific_data.error) for e in result.all_events
                      if e.event_type_value == "STEP_FAILURE"]
            raise failed(f"job {job.name}", errors[:1] or "failure")

    yield [Pair("dagster", "Dagster: op calling tether vs plain op", lambda: run(native),
                lambda: run(tether, resources=resources),
                "execute_in_process() of a job of N no-op ops",
                "execute_in_process() of a job of N ops each calling call(context, TetherServiceResource)")]


def versions() -> dict[str, str]:
    return {"dagster": metadata.version("dagster")}


if __name__ == "__main__":
    exit_now(main("dagster", pipelines, versions))
