"""Recording every call (docs/calls.md) on vs off: the DESIGN.md target "calls/s drop <= 5%".

One daemon's recording is switched on and off between windows of calls from 16 threads
(``PUT /_tether/records``), so the two sides share the daemon, its worker, the client's
connections and whatever else loads the machine. The figure is the ratio of the calls/s with
recording on to the calls/s with it off.

Why one daemon switched, not a daemon of each kind: on this 2-vCPU VM a daemon's whole life is
biased by where its processes landed. Two daemons both with recording *off* gave 0.97 / 0.98 /
1.00 / 1.02 in A/A runs, one such pair 0.89 in every one of its windows, so the four pairs of
daemons of the method before this one moved the row by +-3% on that bias alone. What remains is
the machine's own swing: on this VM the calls/s of two adjacent 0.75 s windows differ by 12%
(sd), so the row takes many short windows (``run.py``: 16x the calls/s seconds); 40 s of them
still moved by +-2% (sd of 9 runs), A/A (both sides off) 0.976-1.005 in 6 runs.

A window with recording on ends with the pause, which returns once the last records are
written: the writes of its calls are all inside it (none leaks into the next window), and those
of its last 0.2 s (the writer's batch) are charged as if nothing else ran meanwhile: if anything
the figure is low. ``DAEMONS`` daemons take the windows in turn; each daemon's sides go off/on,
on/off, ..., as many windows of each order.
"""

from __future__ import annotations

import threading
import time
from typing import Any

WINDOW_S = 0.75
DAEMONS = 2  # each switched on and off, the daemons in turn
WARMUP_S = 1.0  # each new daemon's, not counted


def _window(fn, seconds: float, k: int) -> int:
    counts = [0] * k
    end = time.monotonic() + seconds

    def run(i: int) -> None:
        while time.monotonic() < end:
            fn()
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def _record(cluster: Any, on: bool) -> None:
    cluster.client.request_json("PUT", "/_tether/records", body={"enabled": on})


def _daemon(i: int) -> tuple[Any, Any]:
    """A local cluster, recording paused (whatever ``TETHER_RECORDS`` says), and its noop stub."""
    import tether as rh
    from bench.bench_code import noop

    cluster = rh.cluster(name=f"records-{i}", launcher="local")
    try:
        cluster.up_if_not()
        _record(cluster, False)  # each window says what it measures
        fn = rh.function(noop).to(cluster, name="noop")
        fn()
    except BaseException:
        cluster.teardown()
        raise
    return cluster, fn


def measure(seconds: float, k: int = 16, daemons: int = DAEMONS) -> dict[str, Any]:
    """``seconds`` of calls in all, half with recording on, half off, in alternating windows of
    ``daemons`` daemons (all up at once, each in turn), each daemon switched between windows."""
    daemons = max(1, daemons)
    group = 2 * daemons  # as many windows with each side first, in each daemon
    windows = group * max(1, round(seconds / WINDOW_S / 2 / group))  # each side's, all daemons together
    made: list[tuple[Any, Any]] = []
    try:
        for i in range(daemons):
            made.append(_daemon(i))
        for _, fn in made:  # not counted: a new daemon's and worker's first calls are slower
            _window(fn, WARMUP_S, k)
        calls = [{"on": 0, "off": 0} for _ in made]
        spent = [{"on": 0.0, "off": 0.0} for _ in made]
        for w in range(windows):
            d = w % len(made)
            cluster, fn = made[d]
            for label in ("on", "off") if (w // len(made)) % 2 else ("off", "on"):
                t0 = time.monotonic()
                _record(cluster, label == "on")
                calls[d][label] += _window(fn, WINDOW_S, k)
                _record(cluster, False)  # after "on": returns once its calls' records are written
                spent[d][label] += time.monotonic() - t0
    finally:
        for cluster, _ in made:
            cluster.teardown()
    rate = {label: sum(c[label] for c in calls) / sum(t[label] for t in spent) for label in ("on", "off")}
    ratios = [(c["on"] / t["on"]) / (c["off"] / t["off"]) for c, t in zip(calls, spent, strict=True) if t["on"] and t["off"]]
    return {"value": rate["on"] / rate["off"],
            "mode": f"{k} threads, {2 * windows} windows of {WINDOW_S} s, recording switched on and off "
                    f"in each of {len(made)} daemons",
            "on_calls_per_s": rate["on"], "off_calls_per_s": rate["off"], "daemon_ratios": ratios,
            "calls": {label: sum(c[label] for c in calls) for label in ("on", "off")}}
