"""The child side of the step-overhead rows: one orchestrator, alone in a fresh interpreter.

``bench/orchestrators/runner.py`` starts ``python -m bench.orchestrators.<name>_steps --out FILE``
with every home (``TETHER_HOME``, ``AIRFLOW_HOME``, ``PREFECT_HOME``, ``DAGSTER_HOME``) in a
throwaway folder of the run. The child:

1. brings up a local cluster, deploys ``bench.bench_code:noop`` on it as a named service and calls
   it once, through the same pipeline actions every provider uses (``tether.steps.actions``):
   nothing of that is timed, as a pipeline finds its service deployed by an earlier step; then
   times ``actions.call(<service>)`` alone (the call step's own work, no orchestrator around it);
2. sets the orchestrator up (its database, its server) and builds each pair of pipelines of N
   no-op tasks: a native one and its tether twin (``Pair``), both run the same way;
3. runs each pipeline once untimed (imports, first-run caches), then times whole runs, alternating
   which side goes first (native, tether, tether, native, ...) so that a drift of the machine's
   load falls on both sides: at least ``--min-reps`` runs each, more while ``--seconds`` last, at
   most ``--max-reps``;
4. writes one JSON object to ``--out`` (never to stdout: orchestrators log there) and tears the
   cluster down, also when something failed.

A side's figure is the median over its runs of (run wall time / N): the run's own fixed cost
(creating the run) is spread over its N tasks the same way on both sides, so the difference of the
two is what tether adds to each task.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the names the children give the cluster and the service they deploy on it
CLUSTER, SERVICE, TARGET = "bench-steps", "bench-noop", "bench.bench_code:noop"
HOMES = ("TETHER_HOME", "AIRFLOW_HOME", "PREFECT_HOME", "DAGSTER_HOME")
MARKER = "TETHER_BENCH_RUN"  # bench.processes.RUN_MARKER (not imported: this module stays light)

clock = time.perf_counter


@dataclass
class Pair:
    """One row: a pipeline of N native no-op tasks and its twin of N tether call steps.

    ``native`` and ``tether`` each run their whole pipeline once and raise if it did not succeed.
    """

    key: str  # the row's key in the results, e.g. "airflow_operator"
    label: str  # the row's title in the table
    native: Callable[[], None]
    tether: Callable[[], None]
    native_how: str
    tether_how: str


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bench.settings import FULL

    p = argparse.ArgumentParser(description="one orchestrator's step-overhead rows (run by bench/run.py)")
    p.add_argument("--out", type=Path, required=True, help="where the JSON result is written")
    p.add_argument("--tasks", type=int, default=FULL.orch_tasks, help="no-op tasks per pipeline (N)")
    p.add_argument("--min-reps", type=int, default=FULL.orch_min_reps, help="timed runs of each pipeline, at least")
    p.add_argument("--max-reps", type=int, default=FULL.orch_max_reps, help="timed runs of each pipeline, at most")
    p.add_argument("--seconds", type=float, default=FULL.orch_seconds,
                   help="a row's seconds: timing goes on past --min-reps while they last")
    return p.parse_args(argv)


def check_homes() -> None:
    """Refuse to run outside a throwaway folder: a user's ~/.tether, ~/airflow, ~/.prefect or
    $DAGSTER_HOME must never see the benchmark's clusters, databases or runs."""
    top = os.environ.get(MARKER)
    if not top:
        raise RuntimeError(f"{MARKER} is not set: run this through bench/run.py")
    for var in HOMES:
        value = os.environ.get(var)
        if not value or not Path(value).resolve().is_relative_to(Path(top).resolve()):
            raise RuntimeError(f"{var} is {value!r}, not a throwaway folder of this run ({top})")


def deploy_service() -> dict[str, float]:
    """The cluster and the no-op service every tether step of this child calls by name."""
    from tether.steps import actions

    t0 = clock()
    actions.bring_up(CLUSTER, launcher="local")
    t_up = clock()
    actions.deploy(TARGET, SERVICE, CLUSTER)
    t_deploy = clock()
    actions.call(SERVICE)
    t_call = clock()
    return {"cluster_up_s": t_up - t0, "deploy_s": t_deploy - t_up, "first_call_s": t_call - t_deploy}


def call_alone(calls: int = 200, max_seconds: float = 3.0) -> float:
    """Median ms of the call step's own action, ``actions.call(<service>)``, with no orchestrator
    around it: the floor of what a tether call step can add to a task. Measured before the
    orchestrator is imported or set up, so that every child measures it alike."""
    from tether.steps import actions

    for _ in range(20):
        actions.call(SERVICE)
    times: list[float] = []
    deadline = clock() + max_seconds
    while len(times) < calls and clock() < deadline:
        t0 = clock()
        actions.call(SERVICE)
        times.append((clock() - t0) * 1e3)
    return statistics.median(times)


def time_pair(pair: Pair, args: argparse.Namespace) -> dict[str, Any]:
    """One untimed run of each side, then alternating timed runs (see the module's docstring)."""
    warm = {}
    for side, run in (("native", pair.native), ("tether", pair.tether)):
        t0 = clock()
        run()
        warm[side] = clock() - t0
    samples: dict[str, list[float]] = {"native": [], "tether": []}
    started = clock()
    for i in range(max(args.min_reps, args.max_reps)):
        if i >= args.min_reps and clock() - started > args.seconds:
            break
        order = (("native", pair.native), ("tether", pair.tether))
        for side, run in order if i % 2 == 0 else order[::-1]:
            t0 = clock()
            run()
            samples[side].append((clock() - t0) * 1e3 / args.tasks)
    native, tether = statistics.median(samples["native"]), statistics.median(samples["tether"])
    spread = max(_mad(samples["native"]), _mad(samples["tether"]))
    return {
        "label": pair.label, "native_ms_per_task": native, "tether_ms_per_task": tether,
        "added_ms_per_task": tether - native, "ratio": tether / native if native > 0 else None,
        "spread_ms_per_task": spread, "tasks": args.tasks, "reps": len(samples["native"]),
        "native_how": pair.native_how, "tether_how": pair.tether_how,
        "samples_ms_per_task": {k: [round(x, 3) for x in v] for k, v in samples.items()},
        "warmup_run_s": warm, "timed_s": clock() - started,
    }


def _mad(values: list[float]) -> float:
    """Median absolute deviation: how much one run's ms/task strays from the median, typically."""
    mid = statistics.median(values)
    return statistics.median(abs(v - mid) for v in values)


def main(orchestrator: str, pipelines: Callable[[int], AbstractContextManager[list[Pair]]],
         versions: Callable[[], dict[str, str]], argv: list[str] | None = None) -> int:
    """Measure every pair ``pipelines(N)`` yields and write the result; 0 when every row was measured."""
    args = parse_args(argv)
    result: dict[str, Any] = {"orchestrator": orchestrator, "rows": {}, "errors": {}, "setup": {}}
    t0 = clock()
    try:
        check_homes()
        with _cluster_down():
            result["setup"].update(deploy_service())
            result["action_call_ms"] = call_alone()
            t_setup = clock()
            with pipelines(args.tasks) as pairs:
                result["setup"]["orchestrator_setup_s"] = clock() - t_setup
                result["versions"] = versions()
                for pair in pairs:
                    try:
                        result["rows"][pair.key] = {**time_pair(pair, args), "action_call_ms": result["action_call_ms"]}
                    except Exception as exc:  # noqa: BLE001 - one failing row must not lose the others
                        result["errors"][pair.key] = f"{pair.label}: {type(exc).__name__}: {exc}"
                        result.setdefault("tracebacks", {})[pair.key] = traceback.format_exc(limit=12)
    except Exception as exc:  # noqa: BLE001 - said in the result, the parent reports it
        result["errors"][orchestrator] = f"{type(exc).__name__}: {exc}"
        result.setdefault("tracebacks", {})[orchestrator] = traceback.format_exc(limit=12)
    result["elapsed_s"] = clock() - t0
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(args.out)
    print(f"step overhead ({orchestrator}): written to {args.out}", file=sys.stderr, flush=True)
    return 1 if result["errors"] else 0


def exit_now(code: int) -> None:
    """Leave without the orchestrator's exit handlers: all is written and the cluster is down, and
    Airflow's take seconds (its in-process API, its log handlers) that would only slow the run."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def _cluster_down() -> Iterator[None]:
    """Tear the child's cluster down at the end, whatever happened."""
    try:
        yield
    finally:
        from tether.steps import actions

        with contextlib.suppress(Exception):
            actions.teardown(CLUSTER)


def failed(what: str, state: Any) -> RuntimeError:
    """The error a pipeline run that did not succeed raises (its state in the message)."""
    return RuntimeError(f"the {what} run did not succeed: {state}")
