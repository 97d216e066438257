"""The records row's A/B (bench/records_ab.py: recording switched on and off in each daemon between
windows) on real local clusters, tiny, so that it does not rot: the windows balance, and the
calls of the "on" windows, and only those, are in the daemons' records. Nothing timed is asserted
on: `make bench` measures."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: `bench` package

from bench import records_ab  # noqa: E402

from tether import state  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def test_recording_is_switched_per_window_and_only_the_on_windows_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(records_ab, "WINDOW_S", 0.1)
    monkeypatch.setattr(records_ab, "WARMUP_S", 0.1)
    got = records_ab.measure(1.6, k=2)
    assert got["mode"].startswith("2 threads, 16 windows of 0.1 s") and "2 daemons" in got["mode"]
    assert got["on_calls_per_s"] > 0 and got["off_calls_per_s"] > 0 and len(got["daemon_ratios"]) == 2
    recorded = 0
    for i in range(2):  # torn down; each records file stays (docs/calls.md, "After a teardown")
        db = sqlite3.connect(state.cluster_dir(f"records-{i}") / "calls.sqlite")
        try:
            recorded += db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        finally:
            db.close()
    assert recorded == got["calls"]["on"] > 0  # the first call and the warm-up ran paused
