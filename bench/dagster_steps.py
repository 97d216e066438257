"""What a tether call adds to a Dagster step: N no-op assets that each call a tether service (a
no-op method of a live ``bench_code.Target``, through ``tether.providers.dagster.call``) against N no-op native
assets, and N native assets that take the resource without calling it, in one run each (``materialize``, in-process executor: the step's own cost, not the
executor's process start). Prints ms per step for both, and the difference.

Run: ``.venv/bin/python bench/dagster_steps.py [N]`` (a local cluster "bench-dagster" is brought up
and torn down). No ``from __future__ import annotations`` here: Dagster checks the context's
annotation.
"""

import sys
import time
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).parent))  # bench_code, deployed by import path

from tether.providers.dagster import TetherClusterResource, TetherServiceResource, call


def _assets(n: int, with_tether: bool | None) -> list:
    made = []
    for i in range(n):
        if with_tether:
            @dg.asset(name=f"tether_{i}")
            def step(context: dg.AssetExecutionContext, svc: TetherServiceResource) -> dg.MaterializeResult:
                call(context, svc, "noop")
                return dg.MaterializeResult(metadata={"pong": 1})
        elif with_tether is None:  # native, with the same resource (Dagster's cost of one)
            @dg.asset(name=f"resourced_{i}")
            def step(context: dg.AssetExecutionContext, svc: TetherServiceResource) -> dg.MaterializeResult:
                return dg.MaterializeResult(metadata={"pong": 1})
        else:
            @dg.asset(name=f"native_{i}")
            def step(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
                return dg.MaterializeResult(metadata={"pong": 1})
        made.append(step)
    return made


def _per_step(n: int, resources: dict, with_tether: bool | None) -> float:
    assets = _assets(n, with_tether)
    start = time.perf_counter()
    result = dg.materialize(assets, resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return (time.perf_counter() - start) * 1000 / n


def main(n: int = 50) -> None:
    cluster = TetherClusterResource(cluster_name="bench-dagster", launcher="local", teardown="always")
    svc = TetherServiceResource(service_name="bench-noop", cluster=cluster, target="bench_code:Target")
    try:
        _per_step(2, {"svc": svc}, True)  # warm: the cluster up, the service deployed
        native = _per_step(n, {}, False)
        resourced = _per_step(n, {"svc": svc}, None)
        tethered = _per_step(n, {"svc": svc}, True)
    finally:
        import tether as rh

        try:
            rh.cluster("bench-dagster").teardown()
        except rh.NotFoundError:
            pass
    print(f"dagster, {n} steps: native no-op {native:.1f} ms/step; with the tether resource, no call "
          f"{resourced:.1f} ms/step; a tether no-op call {tethered:.1f} ms/step (the call adds "
          f"{tethered - resourced:.1f} ms/step)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
