"""The 100 MB socket row's A/B (bench/socket_ab.py) on a real local cluster and a real bare
FastAPI server, with 2 round trips each, so that it does not rot. Nothing timed is asserted on:
`make bench` measures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: `bench` package

from bench import figures, socket_ab  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def test_tether_and_bare_take_turns_and_both_rows_are_filed(tmp_path, monkeypatch):
    # TetherPeer refuses a TETHER_HOME that is not a throwaway folder of the run (here: tmp_path)
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "tether" / "home"))
    results = figures.new_results()
    socket_ab.record(results, tmp_path, 2, 60.0, print)
    assert not results["errors"], results["errors"]
    for key in ("tether", "bare"):
        assert results["figures"][socket_ab.FIGURE][key] > 0
        details = results["details"][key][socket_ab.FIGURE]
        assert details["reps"] == 2 and len(details["samples_s"]) == 2
        assert "alternated" in results["modes"][socket_ab.FIGURE][key]


def test_a_failure_is_filed_for_both_sides(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_HOME", "/not/a/throwaway/folder")  # TetherPeer.start refuses it
    results = figures.new_results()
    socket_ab.record(results, tmp_path, 2, 60.0, print)
    assert set(results["errors"][socket_ab.FIGURE]) == {"tether", "bare"}
    assert "not a throwaway folder" in results["errors"][socket_ab.FIGURE]["bare"]
