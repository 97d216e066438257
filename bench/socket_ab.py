"""100 MB through the socket, tether and the bare endpoint alternated: DESIGN.md's "<= 1.0x bare".

Measured in each peer's own phase, the two sides were minutes apart, and a round trip this long
(~0.3 s, most of it copies) is moved by whatever else runs: one run gave 401 vs 269 ms, the
quiet ones 252 vs 272. Here both are up at once and take turns, round trip by round trip (the
order flips every round), so a busy moment hits both alike; each side's figure is its median.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench import measure
from bench.figures import MB, echo_round_trip
from bench.peers import Measured
from bench.peers.bare_peer import BarePeer
from bench.peers.tether_peer import TetherPeer

FIGURE = "echo_100mb_socket_ms"
NBYTES = 100 * MB


def measure_both(workdir: Path, reps: int, max_seconds: float) -> dict[str, Measured]:
    """Each peer's median round trip (ms) from ``reps`` alternated rounds."""
    import numpy as np

    array = np.arange(NBYTES // 8, dtype=np.float64)
    with TetherPeer(workdir / "socket-ab-tether") as ours, BarePeer(workdir / "socket-ab-bare") as bare:
        peers = {"tether": (ours, ours.echo_socket()), "bare": (bare, bare.echo_socket())}
        for _, echo in peers.values():  # warm: the first round trip maps and grows buffers
            echo_round_trip(echo, NBYTES, 1, max_seconds, "")
        samples: dict[str, list[float]] = {key: [] for key in peers}
        end = measure.clock() + max_seconds
        for r in range(reps):
            for key in sorted(peers, reverse=bool(r % 2)):
                echo = peers[key][1]
                t0 = measure.clock()
                result = echo(array)
                samples[key].append(measure.clock() - t0)
                if getattr(result, "shape", None) != array.shape or not np.array_equal(result, array):
                    raise RuntimeError(f"{key}: the echoed array differs from the one sent")
                del result
            if measure.clock() > end:
                break
    out = {}
    for key, (peer, _) in peers.items():
        got = samples[key]
        median = statistics.median(got)
        mode = getattr(peer, "socket_mode", peer.echo_mode)
        out[key] = {"value": median * 1e3, "min_ms": min(got) * 1e3, "max_ms": max(got) * 1e3,
                    "reps": len(got), "samples_s": got, "mb_per_s_each_way": NBYTES / MB / (median / 2),
                    "mode": f"{mode}; median of {len(got)}, alternated round by round with the other side"}
    return out


def record(results: dict[str, Any], workdir: Path, reps: int, max_seconds: float, log) -> None:
    from bench import figures

    log(f"100 MB through the socket: tether and bare FastAPI alternated, {reps} round trips each")
    outcome: dict[str, Any] = {}

    def side(key: str) -> Measured:
        """Both sides are measured once, by the first; a failure is each side's error."""
        if not outcome:
            try:
                outcome["got"] = measure_both(workdir, reps, max_seconds)
            except Exception as exc:  # noqa: BLE001 - filed for both by figures.record
                outcome["error"] = exc
        if "error" in outcome:
            raise outcome["error"]
        return outcome["got"][key]

    for key in ("tether", "bare"):
        figures.record(results, FIGURE, key, lambda k=key: side(k), log)
