"""The floor rows' A/B (bench/floor_ab.py: tether and the bare endpoint up together, alternated)
on a real local cluster and a real bare FastAPI server, tiny, so that it does not rot. Nothing
timed is asserted on: `make bench` measures."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: `bench` package

from bench import figures, floor_ab, settings  # noqa: E402

pytestmark = pytest.mark.timeout(180)
TINY = dataclasses.replace(settings.FULL, warmup_calls=5, latency_calls=40, echo_100mb_reps=0, wrk_seconds=1.0)
WRK = shutil.which("wrk")


def test_tether_and_bare_take_turns_and_every_floor_cell_is_filed(tmp_path, monkeypatch):
    # TetherPeer refuses a TETHER_HOME that is not a throwaway folder of the run (here: tmp_path)
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "tether" / "home"))
    results = figures.new_results()
    floor_ab.record(results, tmp_path, TINY, print)
    assert not results["errors"], results["errors"]
    for figure in floor_ab.FIGURES:
        for key in ("tether", "bare"):
            assert results["figures"][figure][key] > 0, (figure, key)
    for key in ("tether", "bare"):
        assert results["details"][key]["latency_p50_ms"]["calls"] == 40  # 10 blocks of 4
        assert "alternated" in results["modes"]["latency_p50_ms"][key]
        socket = results["details"][key]["echo_100mb_socket_ms"]
        assert socket["reps"] == 2 and len(socket["samples_s"]) == 2
        assert "alternated" in results["modes"]["echo_100mb_socket_ms"][key]


def test_wrk_takes_turns_on_both_sides(tmp_path, monkeypatch):
    if WRK is None:
        reason = "wrk is not installed (apt-get install -y wrk; .ci/run installs it in CI)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the bench's wrk row: {reason}")
        pytest.skip(reason)
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "tether" / "home"))
    results = figures.new_results()
    floor_ab.record(results, tmp_path, TINY, print, (WRK, None))
    assert not results["errors"], results["errors"]
    for key in ("tether", "bare"):
        assert results["figures"][floor_ab.WRK_FIGURE][key] > 0
        runs = results["details"][key][floor_ab.WRK_FIGURE]["runs_per_s"]
        assert len(runs) == floor_ab.WRK_ROUNDS and all(r > 0 for r in runs)
        assert "alternated" in results["modes"][floor_ab.WRK_FIGURE][key]


def test_without_wrk_its_cells_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "tether" / "home"))
    results = figures.new_results()
    floor_ab.record(results, tmp_path, TINY, print, (None, "--no-wrk"))
    assert results["skipped"][floor_ab.WRK_FIGURE] == {"tether": "--no-wrk", "bare": "--no-wrk"}


def test_a_failure_is_filed_for_every_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_HOME", "/not/a/throwaway/folder")  # TetherPeer.start refuses it
    results = figures.new_results()
    floor_ab.record(results, tmp_path, TINY, print, ("/usr/bin/wrk-not-run", None))
    for figure in (*floor_ab.FIGURES, floor_ab.WRK_FIGURE):
        assert set(results["errors"][figure]) == {"tether", "bare"}
        assert "not a throwaway folder" in results["errors"][figure]["bare"]
