"""A reference cluster, measured in the same moments as a growing series, that does not grow.

A series measures a cost at N = 1, then ten thousand deploys (or 64 worker starts) later at the
largest N: a minute apart. On this kind of VM the machine itself drifts by more than the bound
within a minute (the 11:29 run in bench/README "Latest results": the call p50 of the first object 0.37 ms at N = 1,
0.56 ms at 10,000, with its CPU per call up by the same 35%; the two runs before: 0.73x and
1.00x). A second local cluster that stays at one object and one env is measured next to every
checkpoint, round for round with the series: what the series' cost does against it is what N
does; what both do together is the machine. The series' judged growth is taken from the ratio
(``*_vs_ref``); the raw figures stay in the points, the JSON and the chart.
"""

from __future__ import annotations

import time
from typing import Any

from bench import measure
from bench.scale import procs


class Reference:
    """One no-op on a cluster of its own (its worker up): calls and worker starts to compare with."""

    def __init__(self, cluster: Any) -> None:
        import tether as rh
        from bench.bench_code import noop

        self.cluster = cluster
        self.definition = rh.function(noop)
        self.noop = self.definition.to(cluster, name="ref-noop")
        self.noop()  # its worker is up and the code imported
        self.pid = cluster.status()["pid"]
        self.starts = 0

    def latency(self, calls: int) -> dict[str, Any]:
        """``measure.latency`` of its no-op, with the daemon + worker CPU per call (µs)."""
        before = procs.cpu_s_with_children(self.pid)
        got = measure.latency(self.noop, 50, calls, 20)
        got["cpu_us"] = (procs.cpu_s_with_children(self.pid) - before) / (got["calls"] + 50) * 1e6
        return got

    def start_worker(self) -> float:
        """Seconds to deploy into a new env and call (its worker's start), as the envs series
        times it; the env is then deleted (its worker stopped), so the reference stays at one."""
        import tether as rh

        name = f"ref-env-{self.starts}"
        self.starts += 1
        t0 = time.perf_counter()
        self.definition.to(self.cluster, env=rh.env(name=name), name=f"ref-noop-{name}")()
        took = time.perf_counter() - t0
        self.cluster.delete(name)
        return took
