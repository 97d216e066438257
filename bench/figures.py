"""The figures every peer is measured on, through the ``Peer`` interface and ``bench.measure``.

Results accumulate in one dict (see ``new_results``): ``figures[figure][peer]`` is the number the
table shows, ``modes[figure][peer]`` how it was measured, ``details[peer][figure]`` everything
else, ``errors``/``skipped`` why a cell is empty. A failing figure is recorded and the run goes on.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from bench import measure
from bench import wrk as wrk_runner
from bench.peers import Measured, Peer

MB = 1024 * 1024
ECHO_SIZES = {"echo_1mb_ms": 1 * MB, "echo_100mb_ms": 100 * MB}


def new_results() -> dict[str, Any]:
    return {"figures": {}, "modes": {}, "details": {}, "errors": {}, "skipped": {}}


def record(results: dict[str, Any], figure: str, peer: str, measure_it: Callable[[], Measured | None],
           log: Callable[[str], None]) -> None:
    """Run one measurement and file its value, mode and details; an exception files an error."""
    try:
        got = measure_it()
    except Exception as exc:  # noqa: BLE001 - one broken figure must not lose the others
        results["errors"].setdefault(figure, {})[peer] = f"{type(exc).__name__}: {exc}"
        log(f"{peer}: {figure} failed: {type(exc).__name__}: {exc}")
        results["details"].setdefault(peer, {})[f"{figure}_traceback"] = traceback.format_exc(limit=8)
        return
    if got is None:
        return
    got = dict(got)
    results["figures"].setdefault(figure, {})[peer] = got.pop("value")
    mode = got.pop("mode", None)
    if mode:
        results["modes"].setdefault(figure, {})[peer] = mode
    if got:
        results["details"].setdefault(peer, {})[figure] = got


def skip(results: dict[str, Any], figure: str, peer: str, reason: str) -> None:
    results["skipped"].setdefault(figure, {})[peer] = reason


def echo_round_trip(call: Callable[[Any], Any], nbytes: int, reps: int, max_seconds: float, mode: str) -> Measured:
    """Median round trip of an ``nbytes`` float64 array; the last result is checked afterwards."""
    import numpy as np

    array = np.arange(nbytes // 8, dtype=np.float64)
    last: list[Any] = [None]

    def once() -> None:
        last[0] = None  # free the previous result first
        last[0] = call(array)

    got = measure.repeat(once, reps, max_seconds, warmup=1 if nbytes > 10 * MB else 3)
    result = last[0]
    if getattr(result, "shape", None) != array.shape or not np.array_equal(result, array):
        raise RuntimeError(f"the echoed array differs from the one sent ({type(result).__name__})")
    median = got["median_s"]
    return {"value": median * 1e3, "mode": mode, "min_ms": got["min_s"] * 1e3, "max_ms": got["max_s"] * 1e3,
            "reps": got["reps"], "mb_per_s_each_way": nbytes / MB / (median / 2) if median else None}


def measure_peer(peer: Peer, settings, results: dict[str, Any], wrk: tuple[str | None, str | None],
                 log: Callable[[str], None], floor_rows: bool = True) -> None:
    """All common figures, then the peer's own, for a started peer. ``floor_rows=False``: the
    rows judged against bare's (latency, 100 MB through the socket, wrk) are measured elsewhere
    (``floor_ab``: tether and bare up together, alternated)."""
    s, key = settings, peer.key

    if floor_rows:
        log(f"{key}: no-op latency, {s.latency_calls} sequential calls after {s.warmup_calls} warm-up")
        lat: dict[str, Any] = {}

        def run_latency() -> Measured:
            lat.update(measure.latency(peer.noop(), s.warmup_calls, s.latency_calls, s.latency_max_s))
            return {"value": lat["p50_ms"], "mode": "sequential calls, one client", **lat}

        record(results, "latency_p50_ms", key, run_latency, log)
        if lat:
            record(results, "latency_p99_ms", key, lambda: {"value": lat["p99_ms"]}, log)

    log(f"{key}: calls/s, {s.threads} client threads for {s.seconds:g} s")

    def run_threads() -> Measured:
        got = measure.threads(peer.noop, s.threads, s.seconds, s.warmup_calls, s.max_calls)
        return {"value": got["calls_per_s"], "mode": f"{s.threads} threads", **got}

    record(results, "threads16_calls_per_s", key, run_threads, log)

    log(f"{key}: calls/s, {s.inflight} calls in flight for {s.seconds:g} s")
    record(results, "inflight64_calls_per_s", key,
           lambda: peer.in_flight(s.inflight, s.seconds, s.warmup_calls, s.max_calls), log)

    target = peer.wrk_target()
    wrk_path, wrk_why_not = wrk
    if target is None:
        skip(results, "wrk_calls_per_s", key, "no HTTP endpoint")
    elif not floor_rows:
        pass  # floor_ab runs it
    elif wrk_path is None:
        skip(results, "wrk_calls_per_s", key, wrk_why_not or "wrk not available")
    else:
        log(f"{key}: wrk on GET {target.url} for {s.wrk_seconds:g} s")
        record(results, "wrk_calls_per_s", key, lambda: wrk_runner.run(
            wrk_path, target, peer.workdir, s.wrk_seconds, s.wrk_threads, s.wrk_connections), log)

    echo = peer.echo()
    for figure, nbytes in ECHO_SIZES.items():
        reps = s.echo_1mb_reps if nbytes <= MB else s.echo_100mb_reps
        if echo is None:
            skip(results, figure, key, "no echo")
            continue
        log(f"{key}: {nbytes // MB} MB numpy argument round trip, {reps} times")
        record(results, figure, key,
               lambda n=nbytes, r=reps: echo_round_trip(echo, n, r, s.echo_max_s, peer.echo_mode), log)

    echo = peer.echo_socket()
    if echo is None:
        skip(results, "echo_100mb_socket_ms", key, "no HTTP endpoint")
    elif floor_rows:
        log(f"{key}: 100 MB numpy argument round trip through the socket, {s.echo_100mb_reps} times")
        record(results, "echo_100mb_socket_ms", key, lambda: echo_round_trip(
            echo, 100 * MB, s.echo_100mb_reps, s.echo_max_s, getattr(peer, "socket_mode", peer.echo_mode)), log)

    for figure, measure_it in peer.extra_figures(s):
        log(f"{key}: {figure}")
        record(results, figure, key, measure_it, log)
