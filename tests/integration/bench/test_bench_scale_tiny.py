"""The scale rows' code (bench/scale/), run tiny on real local clusters, so that it does not rot.

N is 1 to 5 here and nothing timed is asserted on: `make bench BENCH_ARGS=--scale` measures.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

import tether

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: `bench` package

from bench import figures  # noqa: E402
from bench import scale as bench_scale  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def test_the_scale_series_run_tiny_and_file_their_rows(tmp_path):
    results = figures.new_results()
    results["scale"] = {}
    s = bench_scale.TINY
    cluster = tether.cluster(name=f"scale-tiny-{uuid.uuid4().hex[:6]}", launcher="local")
    cluster.up_if_not()
    try:  # one cluster for all (the bench gives each series its own, and memory at rest another)
        bench_scale.measure_at_rest(results, [], tmp_path, s, print, cluster)  # tether's side only
        bench_scale.measure_clients(results, s, print, cluster)
        bench_scale.measure_objects(results, s, print, cluster)
        bench_scale.measure_envs(results, s, print, cluster)
    finally:
        cluster.teardown()
    assert not results["errors"], results["errors"]
    clients = results["scale"]["clients"]["points"]
    assert [p["n"] for p in clients] == list(s.clients) and all(p["calls"] > 0 for p in clients)
    assert clients[-1]["daemon_fds"] >= s.clients[-1]  # its connections were open when sampled
    objects = results["scale"]["objects"]["points"]
    assert [p["n"] for p in objects] == list(s.objects)
    assert all(p["ref_call_p50_ms"] > 0 and p["call_p50_vs_ref"] > 0 for p in objects)  # the reference answered
    envs = results["scale"]["envs"]["points"]
    assert [p["n"] for p in envs] == list(s.envs) and envs[-1]["workers_pss_mib"] > 0
    assert all(p["ref_start_s_median"] > 0 and p["start_vs_ref"] > 0 for p in envs)
    # the reference clusters (scale-objects-ref, scale-envs-ref) were torn down with their series
    for name in ("scale-objects-ref", "scale-envs-ref"):
        assert not tether.cluster(name=name, launcher="local").is_up(), name
    for key in ("scale_clients_growth", "scale_objects_growth", "scale_envs_growth", "scale_objects_call_ratio",
                "scale_envs_start_s", "at_rest_rss_mib", "at_rest_pss_mib"):
        assert results["figures"][key]["tether"] > 0, key
    assert results["details"]["tether"]["at_rest_rss_mib"]["processes"] >= 2  # the daemon and its worker
    json.dumps(results["scale"], allow_nan=False)  # what latest.json gets (the chart: a unit test)
