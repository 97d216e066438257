"""Recording every call (docs/calls.md) on vs off: the DESIGN.md target "calls/s drop <= 5%".

Two local clusters, one daemon each (one started with ``TETHER_RECORDS=0``), called from 16
threads in alternating windows, so that whatever else loads the machine hits both alike. The
figure is the ratio of the calls/s with recording on to the calls/s with it off.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

WINDOW_S = 1.5


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


def measure(seconds: float, k: int = 16) -> dict[str, Any]:
    """``seconds`` of calls with recording on, as many off, in alternating windows."""
    import tether as rh
    from bench.bench_code import noop

    made, fns = [], {}
    try:
        for label, value in (("on", "1"), ("off", "0")):
            before = os.environ.get("TETHER_RECORDS")
            os.environ["TETHER_RECORDS"] = value  # the daemon started now inherits it
            try:
                cluster = rh.cluster(name=f"records-{label}", launcher="local")
                made.append(cluster)
                cluster.up_if_not()
            finally:
                if before is None:
                    os.environ.pop("TETHER_RECORDS", None)
                else:
                    os.environ["TETHER_RECORDS"] = before
            fns[label] = rh.function(noop).to(cluster, name="noop")
            fns[label]()
        calls, spent = {"on": 0, "off": 0}, {"on": 0.0, "off": 0.0}
        rounds = max(2, round(seconds / WINDOW_S))
        for r in range(rounds):
            for label in ("on", "off") if r % 2 else ("off", "on"):
                t0 = time.monotonic()
                calls[label] += _window(fns[label], WINDOW_S, k)
                spent[label] += time.monotonic() - t0
        rate = {label: calls[label] / spent[label] for label in calls}
        return {"value": rate["on"] / rate["off"], "mode": f"{k} threads, {rounds} alternating windows",
                "on_calls_per_s": rate["on"], "off_calls_per_s": rate["off"]}
    finally:
        for cluster in made:
            cluster.teardown()
