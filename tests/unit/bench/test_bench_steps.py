"""bench/'s step-overhead rows without an orchestrator: the timing harness on plain callables, the
table, the chart and the command-line knobs, so that this code does not rot between `make bench`
runs. No orchestrator is imported and no number is asserted on: `make bench` measures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: `bench` package

from bench import report, run  # noqa: E402
from bench.orchestrators import ORCHESTRATORS, runner, table  # noqa: E402
from bench.orchestrators.child import Pair, time_pair  # noqa: E402


def row(label: str, native: float, tether: float, reps: int = 3) -> dict:
    return {"label": label, "native_ms_per_task": native, "tether_ms_per_task": tether,
            "added_ms_per_task": tether - native, "ratio": tether / native, "spread_ms_per_task": 0.5,
            "action_call_ms": 0.4, "tasks": 10, "reps": reps, "native_how": "native way", "tether_how": "tether way"}


def synthetic() -> dict:
    return {"step_overhead": {
        "rows": {"dagster": row("Dagster: op calling tether vs plain op", 6.0, 7.0),
                 "airflow_operator": row("Airflow: TetherCallOperator vs PythonOperator", 40.0, 45.0)},
        "skipped": {"prefect": "prefect is not installed (pip install 'tether[prefect]')"},
        "errors": {"airflow_taskflow": "Airflow: @task.tether vs @task: RuntimeError: boom"},
        "details": {}}}


def test_time_pair_alternates_the_sides_and_files_every_figure():
    calls: list[str] = []
    pair = Pair("x", "X: tether vs native", lambda: calls.append("n"), lambda: calls.append("t"), "n", "t")
    args = argparse.Namespace(tasks=4, min_reps=3, max_reps=3, seconds=0.0)
    got = time_pair(pair, args)
    assert calls == ["n", "t"] + ["n", "t", "t", "n", "n", "t"]  # one untimed run each, then alternating
    assert got["reps"] == 3 and got["tasks"] == 4
    assert {"native_ms_per_task", "tether_ms_per_task", "added_ms_per_task", "ratio",
            "spread_ms_per_task"} <= set(got)
    assert len(got["samples_ms_per_task"]["native"]) == len(got["samples_ms_per_task"]["tether"]) == 3


def test_time_pair_stops_at_max_reps_and_a_failing_run_raises():
    pair = Pair("x", "X", lambda: None, lambda: None, "n", "t")
    got = time_pair(pair, argparse.Namespace(tasks=1, min_reps=1, max_reps=4, seconds=60.0))
    assert got["reps"] == 4

    def boom() -> None:
        raise RuntimeError("the tether run did not succeed")

    with pytest.raises(RuntimeError, match="did not succeed"):
        time_pair(Pair("x", "X", lambda: None, boom, "n", "t"), argparse.Namespace(
            tasks=1, min_reps=1, max_reps=1, seconds=0.0))


def test_table_orders_rows_by_orchestrator_and_says_what_was_skipped_or_failed():
    text = table.table(synthetic())
    lines = text.splitlines()
    airflow = next(i for i, line in enumerate(lines) if line.startswith("Airflow"))
    dagster = next(i for i, line in enumerate(lines) if line.startswith("Dagster"))
    assert airflow < dagster  # ORCHESTRATORS' order, not the order they were filed in
    assert "+5.00" in lines[airflow] and "1.12" in lines[airflow] and "10 x 3" in lines[airflow]
    assert "prefect: skipped: prefect is not installed" in text
    assert "airflow_taskflow: error:" in text and "boom" in text
    assert "tether way" in table.how_measured(synthetic())
    assert table.table({}) == "" and table.how_measured({}) == ""


def test_chart_draws_the_step_rows_alone(tmp_path):
    results = {**synthetic(), "figures": {}, "machine": {}, "settings": {}}
    path = tmp_path / "latest.png"
    report.chart(results, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_orchestrator_that_is_not_installed_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.setitem(ORCHESTRATORS, "nothing", ("bench.orchestrators.nothing", "no-such-dist-xyz", "nothing"))
    assert "no-such-dist-xyz is not installed" in runner.missing("nothing")
    results: dict = {}
    runner.measure_all(["nothing"], None, Path("/nonexistent"), results, lambda msg: None)
    assert "nothing" in results["step_overhead"]["skipped"]
    assert not results["step_overhead"]["rows"]


def test_command_line_selects_peers_and_orchestrators(capsys):
    args = run.parse_args(["--peers", "none", "--orchestrators", "dagster"])
    assert args.peers == [] and args.orchestrators == ["dagster"]
    assert run.parse_args(["--no-orchestrators"]).orchestrators == []
    assert run.parse_args([]).orchestrators == list(ORCHESTRATORS)
    assert run.configure(run.parse_args(["--orch-tasks", "7"])).orch_tasks == 7
    with pytest.raises(SystemExit):
        run.parse_args(["--peers", "none", "--no-orchestrators"])
    with pytest.raises(SystemExit):
        run.parse_args(["--orchestrators", "luigi"])
    assert "luigi" in capsys.readouterr().err
