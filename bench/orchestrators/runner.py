"""The step-overhead rows, from ``bench/run.py``'s process: one child process per orchestrator.

Each child (``python -m bench.orchestrators.<name>_steps``) gets a folder of its own in the run's
throwaway folder, with ``TETHER_HOME``, ``AIRFLOW_HOME``, ``PREFECT_HOME`` and ``DAGSTER_HOME``
inside it, and that folder as its ``RUN_MARKER``: whatever it leaves running (a tether daemon, a
Prefect server) is stopped by pid when it ends. Its output (the orchestrators log a lot) goes to a
log file there, whose tail is reported if the child fails; its result is a JSON file.

Results go to ``results["step_overhead"]``: ``rows`` (one per pair of pipelines), ``skipped`` (an
orchestrator that is not installed, and why), ``errors`` (what failed), ``details`` (set-up times,
versions, how long each child took).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import measure, processes
from bench.orchestrators import ORCHESTRATORS

ROOT = Path(__file__).resolve().parents[2]
HOMES = {"TETHER_HOME": "tether", "AIRFLOW_HOME": "airflow", "PREFECT_HOME": "prefect", "DAGSTER_HOME": "dagster"}


def missing(name: str) -> str | None:
    """Why ``name`` cannot be measured here (not installed), or None. Asks the package metadata
    only: importing ``airflow`` here would configure Airflow in the benchmark's own process."""
    _, dist, extra = ORCHESTRATORS[name]
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return f"{dist} is not installed (pip install -e '.[{extra}]' -c constraints.txt; `make bench` installs it)"
    return None


def new_section() -> dict[str, Any]:
    return {"rows": {}, "skipped": {}, "errors": {}, "details": {}}


def measure_all(names: Sequence[str], conf, workdir: Path, results: dict[str, Any],
                log: Callable[[str], None]) -> None:
    """Each orchestrator of ``names`` in turn, alone on the machine; files into ``results``."""
    section = results.setdefault("step_overhead", new_section())
    for name in names:
        why = missing(name)
        if why:
            section["skipped"][name] = why
            log(f"step overhead, {name}: skipped: {why}")
            continue
        log(f"step overhead, {name}: pipelines of {conf.orch_tasks} no-op tasks, native vs tether, "
            f"in a child process")
        try:
            got = run_child(name, conf, workdir / "orchestrators" / name, log)
        except Exception as exc:  # noqa: BLE001 - one orchestrator must not lose the others
            section["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(f"step overhead, {name}: failed: {type(exc).__name__}: {exc}")
            continue
        section["rows"].update(got.get("rows", {}))
        section["errors"].update(got.get("errors", {}))
        section["details"][name] = {k: got.get(k) for k in ("setup", "versions", "elapsed_s", "wall_s", "tracebacks")
                                    if got.get(k) is not None}
        for row in got.get("rows", {}).values():
            log(f"step overhead, {row['label']}: native {row['native_ms_per_task']:.2f}, tether "
                f"{row['tether_ms_per_task']:.2f} ms/task ({row['reps']} runs of {row['tasks']} tasks each)")
        for key, why in got.get("errors", {}).items():
            log(f"step overhead, {key}: failed: {why}")


def run_child(name: str, conf, folder: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Run one orchestrator's child to the end (bounded by ``conf.orch_timeout_s``); its result."""
    module = ORCHESTRATORS[name][0]
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, processes.RUN_MARKER: str(folder)}
    for var, sub in HOMES.items():
        (folder / sub).mkdir(exist_ok=True)
        env[var] = str(folder / sub)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    out, log_path = folder / "result.json", folder / "child.log"
    argv = [sys.executable, "-m", module, "--out", str(out), "--tasks", str(conf.orch_tasks),
            "--min-reps", str(conf.orch_min_reps), "--max-reps", str(conf.orch_max_reps),
            "--seconds", str(conf.orch_seconds)]
    t0 = measure.clock()
    with open(log_path, "wb") as child_log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=child_log, stderr=subprocess.STDOUT,
                                env=env, cwd=str(ROOT), start_new_session=True)
        try:
            code = proc.wait(conf.orch_timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            processes.stop(proc)
            stray = processes.sweep(folder)  # a daemon or server the child could not stop
            if stray:
                log(f"step overhead, {name}: stopped {len(stray)} process(es) left behind: {stray}")
    wall = measure.clock() - t0
    if not out.exists():
        what = f"did not finish within {conf.orch_timeout_s:.0f} s" if code is None else f"exited with {code}"
        raise RuntimeError(f"the {name} child {what} and wrote no result; the end of its log:\n"
                           f"{tail(log_path)}")
    got = json.loads(out.read_text())
    got["wall_s"] = wall
    return got


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"
