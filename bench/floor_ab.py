"""The floor: tether against the bare endpoint, both up at once and taking turns.

DESIGN.md judges three rows against bare FastAPI: the no-op p50 (<= 1.3x), 100 MB through the
socket (<= 1.0x) and wrk's requests/s (>= 0.5x). Measured in each peer's own phase, the two sides were minutes apart and ran as
different processes placed anew, and on this 2-vCPU VM both move a figure for a process's whole
life: two tether daemons measured the same way differ by up to 11% (A/A runs: records_ab.py);
one run gave the 100 MB row 401 vs 269 ms, the quiet ones 252 vs 272. Here both peers are up
together and alternate, block by block of sequential calls and round trip by round trip (the
order flips every round), so a busy moment or a slow spell hits both alike. Each side's figure
is taken over all its samples. Ray's cells of the same rows come from its own phase.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench import measure
from bench.figures import MB, echo_round_trip
from bench.peers import Measured
from bench.peers.bare_peer import BarePeer
from bench.peers.tether_peer import TetherPeer

FIGURES = ("latency_p50_ms", "latency_p99_ms", "echo_100mb_socket_ms")
WRK_FIGURE = "wrk_calls_per_s"  # judged against bare too (>= 0.5x): alternated when wrk is there
NBYTES = 100 * MB
BLOCKS = 10  # of sequential calls per side, alternated
WRK_ROUNDS = 4  # wrk runs per side, alternated
THREAD_ROUNDS = 4  # runs of n threads per side, alternated (remote.py's rows)


def _sides(r: int, keys: list[str]) -> list[str]:
    return sorted(keys, reverse=bool(r % 2))


def _in_turns(keys: list[str], rounds: int, run_one) -> dict[str, list[Measured]]:
    """``run_one(key)`` for each side in turn, ``rounds`` times (the order flips every round):
    each side's runs."""
    runs: dict[str, list[Measured]] = {key: [] for key in keys}
    for r in range(rounds):
        for key in _sides(r, keys):
            runs[key].append(run_one(key))
    return runs


def latency_alternated(noops: dict[str, Any], warmup: int, calls: int, max_seconds: float) -> dict[str, Measured]:
    """p50/p99 of sequential calls to each side, taken in ``BLOCKS`` blocks that alternate."""
    ns = time.perf_counter_ns
    for call in noops.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[int]] = {key: [] for key in noops}
    per_block = max(1, calls // BLOCKS)
    end = measure.clock() + max_seconds
    for r in range(BLOCKS):
        for key in _sides(r, list(noops)):
            call, got = noops[key], samples[key]
            for _ in range(per_block):
                t0 = ns()
                call()
                got.append(ns() - t0)
        if measure.clock() > end:
            break
    out = {}
    for key, got in samples.items():
        ms = sorted(s / 1e6 for s in got)
        out[key] = {"p50_ms": measure.percentile(ms, 50), "p99_ms": measure.percentile(ms, 99),
                    "mean_ms": statistics.fmean(ms), "min_ms": ms[0], "calls": len(ms),
                    "mode": f"sequential calls, one client; {len(ms)} calls in blocks of {per_block}, "
                            "alternated block by block with the other side"}
    return out


def echo_alternated(echoes: dict[str, Any], modes: dict[str, str], reps: int, max_seconds: float,
                    nbytes: int = NBYTES) -> dict[str, Measured]:
    """Round trips of an ``nbytes`` array, each side in turn (the order flips every round), each
    result checked; each side's median."""
    import numpy as np

    array = np.arange(nbytes // 8, dtype=np.float64)
    for echo in echoes.values():  # warm: the first round trip maps and grows buffers
        echo_round_trip(echo, nbytes, 1, max_seconds, "")
    samples: dict[str, list[float]] = {key: [] for key in echoes}
    end = measure.clock() + max_seconds
    for r in range(reps):
        for key in _sides(r, list(echoes)):
            t0 = measure.clock()
            result = echoes[key](array)
            samples[key].append(measure.clock() - t0)
            if getattr(result, "shape", None) != array.shape or not np.array_equal(result, array):
                raise RuntimeError(f"{key}: the echoed array differs from the one sent")
            del result
        if measure.clock() > end:
            break
    out = {}
    for key, got in samples.items():
        median = statistics.median(got)
        out[key] = {"value": median * 1e3, "min_ms": min(got) * 1e3, "max_ms": max(got) * 1e3,
                    "reps": len(got), "samples_s": got, "mb_per_s_each_way": nbytes / MB / (median / 2),
                    "mode": f"{modes[key]}; median of {len(got)}, alternated round by round with the other side"}
    return out


def threads_alternated(makers: dict[str, Any], n: int, seconds: float, warmup: int, max_calls: int,
                       rounds: int = THREAD_ROUNDS) -> dict[str, Measured]:
    """``measure.threads`` on each side in turn, ``rounds`` runs of ``seconds / rounds`` each (the
    order flips every round): the calls of all runs over their time."""
    runs = _in_turns(list(makers), rounds, lambda key: measure.threads(
        makers[key], n, seconds / rounds, warmup, max(1, max_calls // rounds)))
    out = {}
    for key, got in runs.items():
        calls, spent = sum(g["calls"] for g in got), sum(g["seconds"] for g in got)
        out[key] = {"value": calls / spent, "calls": calls, "seconds": spent, "concurrency": n,
                    "runs_per_s": [g["calls_per_s"] for g in got]}
    return out


def _wrk(peers: dict[str, Any], path: str, settings: Any) -> dict[str, Measured]:
    """wrk on each side in turn, ``WRK_ROUNDS`` runs each (the order flips every round): the
    requests of all runs over their time. One run per side in its own phase was minutes from the
    other's: one full run got 0.46x bare that way, while the VM's speed moved between the phases
    (16-thread calls/s 0.48x bare in that run, 0.75x alternated the same hour)."""
    from bench import wrk as wrk_runner

    s = settings
    seconds = max(1, round(s.wrk_seconds / 2))
    for peer in peers.values():
        peer.workdir.mkdir(parents=True, exist_ok=True)  # (wrk's Lua script goes there)
    runs = _in_turns(list(peers), WRK_ROUNDS, lambda key: wrk_runner.run(
        path, peers[key].wrk_target(), peers[key].workdir, seconds, s.wrk_threads, s.wrk_connections))
    out = {}
    for key, got in runs.items():
        requests, spent = sum(g["requests"] for g in got), sum(g["seconds"] for g in got)
        out[key] = {"value": requests / spent, "requests": requests, "seconds": spent,
                    "runs_per_s": [g["value"] for g in got], "p50_ms": statistics.median(g["p50_ms"] for g in got),
                    "p99_ms": max(g["p99_ms"] for g in got),
                    "mode": f"{got[0]['mode']}, {len(got)} runs alternated with the other side's"}
    return out


def measure_both(workdir: Path, settings: Any, wrk_path: str | None = None) -> dict[str, dict[str, Measured]]:
    """figure -> peer -> what ``figures.record`` files, for FIGURES (and WRK_FIGURE with
    ``wrk_path``) and both peers."""
    s = settings
    with TetherPeer(workdir / "floor-tether") as ours, BarePeer(workdir / "floor-bare") as bare:
        peers = {"tether": ours, "bare": bare}
        lat = latency_alternated({key: p.noop() for key, p in peers.items()}, s.warmup_calls, s.latency_calls,
                       2 * s.latency_max_s)
        socket = echo_alternated({key: p.echo_socket() for key, p in peers.items()},
                         {key: getattr(p, "socket_mode", p.echo_mode) for key, p in peers.items()},
                         s.echo_100mb_reps + 2, 2 * s.echo_max_s)
        got = {"latency_p50_ms": {k: {**v, "value": v["p50_ms"]} for k, v in lat.items()},
               "latency_p99_ms": {k: {"value": v["p99_ms"]} for k, v in lat.items()},
               "echo_100mb_socket_ms": socket}
        if wrk_path:
            got[WRK_FIGURE] = _wrk(peers, wrk_path, s)
    return got


def record(results: dict[str, Any], workdir: Path, settings: Any, log,
           wrk: tuple[str | None, str | None] = (None, "--no-wrk")) -> None:
    """The floor rows, and wrk's when ``wrk`` (``wrk.find``'s answer) has a path; otherwise
    wrk's cells are skipped with its reason."""
    from bench import figures

    wrk_path, wrk_why_not = wrk
    log(f"the floor: tether and bare FastAPI up together, alternated: {settings.latency_calls} no-op calls "
        f"each in {BLOCKS} blocks, then {settings.echo_100mb_reps + 2} round trips of 100 MB through the socket each"
        + (f", then {WRK_ROUNDS} wrk runs each" if wrk_path else ""))
    outcome: dict[str, Any] = {}

    def side(figure: str, key: str) -> Measured:
        """Measured once, by the first cell; a failure is every cell's error."""
        if not outcome:
            try:
                outcome["got"] = measure_both(workdir, settings, wrk_path)
            except Exception as exc:  # noqa: BLE001 - filed for every cell by figures.record
                outcome["error"] = exc
        if "error" in outcome:
            raise outcome["error"]
        return outcome["got"][figure][key]

    for figure in FIGURES:
        for key in ("tether", "bare"):
            figures.record(results, figure, key, lambda f=figure, k=key: side(f, k), log)
    for key in ("tether", "bare"):
        if wrk_path is None:
            figures.skip(results, WRK_FIGURE, key, wrk_why_not or "wrk not available")
        else:
            figures.record(results, WRK_FIGURE, key, lambda k=key: side(WRK_FIGURE, k), log)
