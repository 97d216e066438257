"""Figures measured in fresh interpreters: ``import`` time, and a local cluster's cold start.

Each child runs the same interpreter as the benchmark; every child is bounded in time and is
stopped (with any daemon it left behind) even if the benchmark is interrupted.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import measure, processes
from bench.peers import Measured

HERE = Path(__file__).resolve().parent


def _wall(argv: list[str], timeout: float) -> float:
    t0 = measure.clock()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=timeout, check=False)
    elapsed = measure.clock() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def warm_bytecode(module: str, timeout: float) -> None:
    """Compile ``module``'s package to .pyc once, as any installed package is (this environment may
    set PYTHONDONTWRITEBYTECODE, which would make every fresh interpreter compile it again)."""
    code = ("import importlib.util, os, sys; s = importlib.util.find_spec(sys.argv[1]); "
            "print(os.path.dirname(s.origin) if s and s.origin else '')")
    folder = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True,
                            timeout=timeout, check=False).stdout.strip()
    if folder:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", folder],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False)


def import_time(module: str, runs: int, timeout: float) -> Measured:
    """Median wall time of ``python -c "import <module>"`` in fresh interpreters, net of the median
    of ``python -c pass`` (interleaved, after one warm-up of each)."""
    warm_bytecode(module, timeout)
    base_argv, import_argv = [sys.executable, "-c", "pass"], [sys.executable, "-c", f"import {module}"]
    _wall(base_argv, timeout), _wall(import_argv, timeout)
    base, gross = [], []
    for _ in range(runs):
        base.append(_wall(base_argv, timeout))
        gross.append(_wall(import_argv, timeout))
    base_ms, gross_ms = statistics.median(base) * 1e3, statistics.median(gross) * 1e3
    return {"value": gross_ms - base_ms, "mode": f"`import {module}`: median of {runs} fresh interpreters, minus `python -c pass`",
            "gross_ms": gross_ms, "baseline_ms": base_ms, "runs": runs,
            "samples_ms": [round(x * 1e3, 2) for x in gross], "baseline_samples_ms": [round(x * 1e3, 2) for x in base]}


def cold_starts(workdir: Path, runs: int, timeout: float, log) -> dict[str, Any]:
    """``runs`` cold starts, each a new interpreter with a new, empty ``TETHER_HOME``."""
    warm_bytecode("tether", timeout)
    inside, wall, samples = [], [], []
    for i in range(runs):
        home = workdir / f"cold-{i}"
        home.mkdir(parents=True)
        env = {**os.environ, "TETHER_HOME": str(home), processes.RUN_MARKER: str(home)}
        t0 = measure.clock()
        proc = processes.start([sys.executable, str(HERE / "cold_start.py")], env=env)
        try:
            line = processes.read_line(proc, timeout)
            t_line = measure.clock()
            if not line:
                raise RuntimeError(f"cold start {i} printed nothing within {timeout:.0f} s "
                                   f"(exit code {proc.poll()}); see {home}/clusters/local/daemon.log")
            got = json.loads(line)
            teardown = processes.read_line(proc, timeout)
            proc.wait(timeout)
        finally:
            processes.stop(proc)
            stray = processes.sweep(home)  # a daemon the child could not tear down
            if stray:
                log(f"cold start {i}: stopped {len(stray)} process(es) left behind: {stray}")
        got["process_wall_s"] = t_line - t0
        if teardown:
            got.update(json.loads(teardown))
        samples.append(got)
        inside.append(got["cluster_to_first_call_s"])
        wall.append(got["process_wall_s"])
    return {
        "cold_start_s": {"value": statistics.median(inside),
                         "mode": f"rh.cluster() to first result, inside a fresh interpreter; median of {runs}"},
        "cold_start_wall_s": {"value": statistics.median(wall),
                              "mode": f"process spawn to first result (interpreter + import tether included); median of {runs}"},
        "samples": samples,
    }
