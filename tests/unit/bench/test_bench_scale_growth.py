"""bench/scale/growth.py and the scale rows of the report, on synthetic series (nothing timed)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: `bench` package

from bench import figures, report  # noqa: E402
from bench import scale as bench_scale  # noqa: E402
from bench.scale import growth  # noqa: E402

NS = [1, 10, 100, 1000]


def test_exponent_reads_the_last_decade_by_kind():
    assert growth.exponent(NS, [5 * n for n in NS], "total") == pytest.approx(1.0)
    assert growth.exponent(NS, [n * n for n in NS], "total") == pytest.approx(2.0)
    assert growth.exponent(NS, [100 + n for n in NS], "total") < 1  # a fixed part pulls it below 1
    assert growth.exponent(NS, [3.0] * 4, "per_item") == pytest.approx(1.0)  # flat per item: linear total
    assert growth.exponent(NS, [0.1 * n for n in NS], "per_item") == pytest.approx(2.0)  # O(N) each: quadratic
    assert growth.exponent(NS, [5000.0] * 4, "rate") == pytest.approx(1.0)
    assert growth.exponent(NS, [5000.0, 5000.0, 5000.0, 500.0], "rate") == pytest.approx(2.0)
    assert growth.exponent([1], [1.0], "total") is None


def _series() -> dict:
    return {"points": [{"n": n, "p50_ms": 0.2 * n, "calls_per_s": 5000.0, "daemon_rss_mib": 60 + n * 0.01,
                        "p99_ms": 0.1 * n * n} for n in NS]}


def test_judge_names_the_worst_metric():
    metrics = bench_scale.CLIENT_METRICS
    judged = growth.judge(_series(), metrics)
    assert judged["worst_metric"] == "p99_ms" and judged["worst"] == pytest.approx(2.0)
    assert judged["exponents"]["calls_per_s"] == pytest.approx(1.0)


def test_a_raw_time_with_a_corrected_twin_is_shown_but_not_judged():
    # the machine slowed by 40% between the last two checkpoints: the raw p50 and the reference's
    # alike; the ratio to the reference, flat, is what is judged (bench/scale/reference.py)
    points = [{"n": n, "call_p50_ms_first": p, "ref_call_p50_ms": r, "call_p50_vs_ref": p / r}
              for n, p, r in ((1, 0.35, 0.34), (1000, 0.35, 0.34), (10000, 0.49, 0.476))]
    metrics = [m for m in bench_scale.OBJECT_METRICS if m.key in ("call_p50_ms_first", "call_p50_vs_ref")]
    judged = growth.judge({"points": points}, metrics)
    assert judged["exponents"]["call_p50_ms_first"] == pytest.approx(1 + math.log10(1.4))  # given
    assert judged["worst_metric"] == "call_p50_vs_ref" and judged["worst"] == pytest.approx(1.0, abs=0.01)
    only_raw = [m for m in metrics if not m.judged]
    assert growth.judge({"points": points}, only_raw)["worst"] is None  # nothing judged, nothing filed


def test_growth_rows_are_judged_linear_or_not(tmp_path):
    results = figures.new_results()
    results["scale"] = {"clients": _series()}
    bench_scale._growth(results, "clients", results["scale"]["clients"])  # noqa: SLF001
    row = next(r for r in report.rows(results) if r["key"] == "scale_clients_growth")
    assert row["verdict"] == "FAIL"  # p99 grows with N squared
    results["scale"]["clients"]["points"][-1]["p99_ms"] = 0.1 * 100 * 100 * 9  # 9x for 10x: under linear
    bench_scale._growth(results, "clients", results["scale"]["clients"])  # noqa: SLF001
    row = next(r for r in report.rows(results) if r["key"] == "scale_clients_growth")
    assert row["verdict"] == "pass" and math.isclose(row["values"]["tether"], 1.0, rel_tol=1e-6)
    assert "N concurrent clients: growth exponent" in report.table(results)


def test_chart_draws_the_series_with_two_points_or_more(tmp_path):
    pytest.importorskip("matplotlib")
    series = {"points": [{"n": 1, "deploy_ms_median": None, "keys_ms": 1.0}, {"n": 10, "keys_ms": 9.0}]}
    out = tmp_path / "scale.png"
    bench_scale.chart({"scale": {"objects": series}, "when": "now"}, out)  # keys_ms only: one panel
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="two points"):
        bench_scale.chart({"scale": {"objects": {"points": series["points"][:1]}}}, tmp_path / "no.png")
