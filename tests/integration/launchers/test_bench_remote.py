"""bench/remote.py run tiny on a test host, so the remote rows' code does not rot.

Nothing is timed against a bound here: every row must get a number (or the test says which
failed and why), whatever the number is.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: `bench` package

from bench import figures, remote, report, settings  # noqa: E402

TINY = dataclasses.replace(settings.QUICK, warmup_calls=5, latency_calls=20, seconds=0.3, echo_100mb_reps=1,
                           echo_max_s=10.0)


@pytest.mark.timeout(360)  # one fresh node brought up (its wheels, first in this session: ~60 s on a busy VM)
def test_every_remote_row_gets_a_number(test_hosts, monkeypatch):
    monkeypatch.setattr(remote, "ECHO_BYTES", figures.MB)
    results = figures.new_results()
    remote.record(results, TINY, print, factory=test_hosts, fresh_reps=0)
    assert not results["errors"], results["errors"]
    assert set(remote.FIGURE_KEYS) - set(results["figures"]) == {"ssh_bringup_fresh_s"}
    for key in ("ssh_latency_p50_ms", "ssh_threads16_calls_per_s", "ssh_echo_100mb_ms", "tls_latency_p50_ms",
                "tls_threads16_calls_per_s", "tls_echo_100mb_ms"):
        assert set(results["figures"][key]) == {"tether", "bare"}, key
    assert all(row["verdict"] in ("pass", "FAIL", "") for row in report.rows(results))
