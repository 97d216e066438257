"""bench/'s report (table, JSON, chart) on a synthetic results dict, so the benchmark code does not rot.

Nothing is timed here and no number is asserted on: `make bench` measures, this only formats.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: `bench` package

from bench import figures, report, settings  # noqa: E402


def synthetic() -> dict:
    results = figures.new_results()
    values = {
        "latency_p50_ms": {"tether": 0.5, "ray": 1.0, "bare": 0.4},
        "latency_p99_ms": {"tether": 2.0, "ray": 5.0, "bare": 1.0},
        "threads16_calls_per_s": {"tether": 900.0, "ray": 1000.0, "bare": 2000.0},
        "inflight64_calls_per_s": {"tether": 1500.0, "ray": 1800.0, "bare": 1900.0},
        "wrk_calls_per_s": {"tether": 2500.0, "bare": 4000.0},
        "echo_1mb_ms": {"tether": 10.0, "ray": 12.0, "bare": 4.0},
        "echo_100mb_ms": {"tether": 600.0, "ray": 250.0},
        "to_s": {"tether": 0.02},
        "redeploy_s": {"tether": 0.4},
        "cold_start_s": {"tether": 1.2, "ray": 9.0},
        "import_ms": {"tether": 25.0, "ray": 850.0},
    }
    for figure, per_peer in values.items():
        for peer, value in per_peer.items():
            figures.record(results, figure, peer, lambda v=value: {"value": v, "mode": "synthetic"}, print)
    figures.record(results, "inflight64_calls_per_s", "tether",
                   lambda: {"value": 1400.0, "mode": "64 threads (async API pending)", "calls": 10}, print)
    figures.record(results, "echo_100mb_ms", "bare", lambda: 1 / 0, print)  # a broken measurement
    figures.skip(results, "wrk_calls_per_s", "ray", "no HTTP endpoint")
    results.update({"when": "2026-01-01T00:00:00+0000", "settings": settings.QUICK.as_dict(),
                    "machine": {"cpus": 2, "cpu_model": "test", "python": "3.11",
                                "loadavg_before": [0.1, 0.1, 0.1], "loadavg_after": [0.5, 0.2, 0.1],
                                "other_work": {"others_cores": 0.5}},
                    "versions": {}, "peer_errors": {}})
    return results


def test_record_files_values_modes_details_and_errors():
    results = synthetic()
    assert results["figures"]["inflight64_calls_per_s"]["tether"] == 1400.0
    assert results["modes"]["inflight64_calls_per_s"]["tether"] == "64 threads (async API pending)"
    assert results["details"]["tether"]["inflight64_calls_per_s"] == {"calls": 10}
    assert "ZeroDivisionError" in results["errors"]["echo_100mb_ms"]["bare"]
    assert "bare" not in results["figures"]["echo_100mb_ms"]


def test_verdicts_follow_the_targets():
    verdicts = {row["key"]: row["verdict"] for row in report.rows(synthetic())}
    assert verdicts["latency_p50_ms"] == "pass"  # 0.5 <= 1.0 x Ray
    assert verdicts["threads16_calls_per_s"] == "FAIL"  # 900 < Ray's 1000
    assert verdicts["wrk_calls_per_s"] == "pass"  # 2500 >= 0.5 x 4000
    assert verdicts["echo_100mb_ms"] == "FAIL"  # 600 > 2 x 250
    assert verdicts["redeploy_s"] == "FAIL"  # 0.4 > 0.3 s
    assert verdicts["import_ms"] == "pass"
    assert verdicts["latency_p99_ms"] == ""  # no target


def test_a_figure_with_two_targets_passes_only_when_both_do():
    results = synthetic()
    row = next(r for r in report.rows(results) if r["key"] == "latency_p50_ms")
    assert row["target"] == "<= Ray actor call p50; <= 1.3 x bare" and row["verdict"] == "pass"  # 1.25x bare
    results["figures"]["latency_p50_ms"]["bare"] = 0.3  # 1.67x bare, still under Ray's 1.0
    row = next(r for r in report.rows(results) if r["key"] == "latency_p50_ms")
    assert row["verdict"] == "FAIL"
    del results["figures"]["latency_p50_ms"]["bare"]  # the second cannot be judged: not a pass
    row = next(r for r in report.rows(results) if r["key"] == "latency_p50_ms")
    assert row["verdict"].startswith("n/a")


def test_a_relative_target_without_its_peer_is_not_judged():
    results = synthetic()
    del results["figures"]["latency_p50_ms"]["ray"]
    row = next(r for r in report.rows(results) if r["key"] == "latency_p50_ms")
    assert row["verdict"].startswith("n/a")
    assert row["ratios"]["ray"] is None


def test_table_has_every_measured_figure_ratios_and_notes():
    text = report.table(synthetic())
    for fig in report.FIGURES:
        if fig.key in synthetic()["figures"]:
            assert fig.label in text
    assert "tether/Ray" in text and "tether/bare" in text
    assert "0.50" in text  # tether/Ray p50 ratio
    assert "async API pending" in text  # the flagged tether cell's footnote
    assert "error" in text and "ZeroDivisionError" in text
    assert "no HTTP endpoint" not in text  # Ray simply has no wrk cell
    assert report.how_measured(synthetic())
    assert "load average 0.1 before, 0.5 after" in report.summary(synthetic())
    assert "other processes used 0.50 CPU cores" in report.summary(synthetic())


def test_a_skipped_figure_keeps_its_row_and_says_why():
    results = synthetic()
    del results["figures"]["wrk_calls_per_s"]
    for peer in ("tether", "bare"):
        figures.skip(results, "wrk_calls_per_s", peer, "wrk is not installed (--no-install)")
    text = report.table(results)
    row = next(line for line in text.splitlines() if line.startswith("calls/s, wrk"))
    assert "skipped" in row
    assert "wrk is not installed (--no-install)" in text


def test_json_round_trips(tmp_path):
    path = tmp_path / "results" / "latest.json"
    report.write_json(synthetic(), path)
    data = json.loads(path.read_text())
    assert data["figures"]["to_s"]["tether"] == 0.02
    assert {row["key"] for row in data["table"]} >= {"latency_p50_ms", "import_ms"}


def test_chart(tmp_path):
    path = tmp_path / "latest.png"
    report.chart(synthetic(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_remote_rows_are_judged_against_the_bare_endpoint_through_the_same_tunnel():
    results = synthetic()
    for figure, per_peer in {"ssh_latency_p50_ms": {"tether": 1.1, "bare": 1.0},
                             "ssh_threads16_calls_per_s": {"tether": 700.0, "bare": 1000.0},
                             "ssh_echo_100mb_ms": {"tether": 1300.0, "bare": 1000.0},
                             "ssh_echo_100mb_vs_alone": {"tether": 1.1},
                             "ssh_bringup_fresh_s": {"tether": 12.0},
                             "ssh_up_if_not_warm_s": {"tether": 0.02},
                             "env_build_cold_uv_pip": {"tether": 0.25}}.items():
        for peer, value in per_peer.items():
            figures.record(results, figure, peer, lambda v=value: {"value": v}, print)
    verdicts = {row["key"]: row["verdict"] for row in report.rows(results)}
    assert verdicts["ssh_latency_p50_ms"] == "pass"  # 1.1 <= 1.2 x 1.0
    assert verdicts["ssh_threads16_calls_per_s"] == "FAIL"  # 700 < 1000 / 1.2
    assert verdicts["ssh_echo_100mb_ms"] == "FAIL"  # 1300 > 1.2 x 1000
    assert verdicts["ssh_echo_100mb_vs_alone"] == "pass"
    assert verdicts["ssh_bringup_fresh_s"] == "FAIL"  # > 10 s
    assert verdicts["ssh_up_if_not_warm_s"] == "pass"
    assert verdicts["env_build_cold_uv_pip"] == "pass"  # <= 0.3 x pip


def test_remote_rows_say_why_they_were_skipped(monkeypatch):
    from bench import remote

    monkeypatch.setattr(remote, "why_not", lambda: "test hosts need root")
    results = synthetic()
    remote.record(results, settings.QUICK, print)
    text = report.table(results)
    assert "SSH tunnel: no-op call p50 latency (ms)" in text and "test hosts need root" in text
    assert all(results["skipped"][key]["tether"] == "test hosts need root" for key in remote.FIGURE_KEYS)
