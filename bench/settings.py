"""How long and how often each figure is measured: the full run (`make bench`) and ``--quick``.

Every loop in the benchmark is bounded twice, by a count and by seconds; these are the knobs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Settings:
    warmup_calls: int = 200  # before the latency samples and before each throughput run
    latency_calls: int = 2000  # sequential no-op calls for p50/p99
    latency_max_s: float = 20.0  # ...or fewer, if these seconds run out first
    threads: int = 16  # client threads for the "calls/s, 16 client threads" figure
    inflight: int = 64  # calls in flight for the "64 async calls in flight" figure
    seconds: float = 5.0  # each calls/s measurement
    max_calls: int = 2_000_000  # each calls/s measurement stops at this many calls
    wrk_seconds: float = 5.0
    wrk_threads: int = 2
    wrk_connections: int = 64
    echo_1mb_reps: int = 20
    echo_100mb_reps: int = 5
    echo_max_s: float = 30.0  # each array size, all repetitions together
    deploy_reps: int = 10  # `.to()` of a function on a running cluster
    redeploy_reps: int = 5  # edit + `.to()` + first call
    cold_starts: int = 3  # fresh local clusters, each in its own interpreter
    import_runs: int = 10  # fresh interpreters for `import tether` (and `pass`, `import ray`)
    load_calls: int = 100_000  # the load figure: calls from 32 threads + 64 async in flight at once
    load_max_s: float = 120.0
    subprocess_timeout_s: float = 60.0  # any one child process (cold start, import)
    # The step-overhead rows (bench/orchestrators/): per orchestrator, pipelines of N no-op tasks,
    # each timed at least min_reps times, more while the seconds of its row last, at most max_reps.
    orch_tasks: int = 10
    orch_min_reps: int = 3
    orch_max_reps: int = 20
    orch_seconds: float = 4.0
    orch_timeout_s: float = 240.0  # one orchestrator's child process, its set-up included
    quick: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Settings()

# A smoke run (~1 min): the same figures, fewer samples. Its numbers are noisier; use it to check
# that the benchmark works, not to judge the targets.
QUICK = replace(
    FULL, warmup_calls=50, latency_calls=400, seconds=1.5, wrk_seconds=2.0, echo_1mb_reps=5,
    echo_100mb_reps=2, deploy_reps=3, redeploy_reps=2, cold_starts=1, import_runs=5, load_calls=10_000,
    orch_tasks=5, orch_min_reps=2, orch_max_reps=6, orch_seconds=1.0, quick=True,
)
