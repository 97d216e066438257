"""``GET /_tether/metrics``: the daemon's calls and workers in Prometheus' text format (0.0.4).

Counted on the call path where ``History.end`` sees a call end (a dict increment and a bucket
increment, recording on or off); written out by hand at scrape time (no client library in the
daemon). Worker memory is read from ``/proc`` when scraped. See docs/calls.md, "Metrics".
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: seconds: 0.1 ms .. 10 min (a call is often sub-millisecond; a training step, minutes)
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class CallMetrics:
    """Calls by (service, method, outcome), and each service's durations as histogram buckets."""

    __slots__ = ("calls", "durations")

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str, str], int] = {}
        # service -> [count per bucket (the last: above every bound), sum of seconds]
        self.durations: dict[str, list] = {}

    def ended(self, service: str, method: str, outcome: str, seconds: float) -> None:
        """The call path's part: two increments."""
        key = (service, method, outcome)
        calls = self.calls
        calls[key] = calls.get(key, 0) + 1
        hist = self.durations.get(service)
        if hist is None:
            hist = self.durations[service] = [[0] * (len(BUCKETS) + 1), 0.0]
        hist[0][bisect.bisect_left(BUCKETS, seconds)] += 1
        hist[1] += seconds


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: Any) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def memory_of(pid: int | None) -> tuple[int | None, int | None]:
    """(resident, resident high-water mark) of a process in bytes, from /proc."""
    rss = hwm = None
    if not pid:
        return rss, hwm
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return rss, hwm


def render(metrics: CallMetrics, running: int, workers: Iterable[tuple[str, int | None]],
           records_enabled: bool) -> str:
    """The exposition text; ``workers``: (env, pid) of the live workers."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("tether_calls_total", "counter", "Calls ended, by service, method and outcome.")
    for (service, method, outcome), n in sorted(metrics.calls.items()):
        out.append(f"tether_calls_total{_labels(service=service, method=method, outcome=outcome)} {n}")
    family("tether_call_duration_seconds", "histogram", "Duration of the calls that ended, by service.")
    for service, (counts, total) in sorted(metrics.durations.items()):
        cumulative = 0
        for bound, n in zip(BUCKETS, counts, strict=False):
            cumulative += n
            out.append(f"tether_call_duration_seconds_bucket{_labels(service=service, le=repr(bound))} "
                       f"{cumulative}")
        cumulative += counts[-1]
        out.append(f"tether_call_duration_seconds_bucket{_labels(service=service, le='+Inf')} {cumulative}")
        out.append(f"tether_call_duration_seconds_sum{_labels(service=service)} {_num(total)}")
        out.append(f"tether_call_duration_seconds_count{_labels(service=service)} {cumulative}")
    family("tether_calls_running", "gauge", "Calls running now.")
    out.append(f"tether_calls_running {running}")
    live = [(env, pid, *memory_of(pid)) for env, pid in workers]
    family("tether_workers", "gauge", "Worker processes serving envs.")
    out.append(f"tether_workers {len(live)}")
    family("tether_worker_memory_bytes", "gauge", "Resident memory of each worker (VmRSS).")
    for env, pid, rss, _ in live:
        if rss is not None:
            out.append(f"tether_worker_memory_bytes{_labels(env=env, pid=pid)} {rss}")
    family("tether_worker_peak_memory_bytes", "gauge", "Peak resident memory of each worker (VmHWM).")
    for env, pid, _, hwm in live:
        if hwm is not None:
            out.append(f"tether_worker_peak_memory_bytes{_labels(env=env, pid=pid)} {hwm}")
    family("tether_records_enabled", "gauge", "1 while calls are recorded (docs/calls.md), else 0.")
    out.append(f"tether_records_enabled {int(records_enabled)}")
    return "\n".join(out) + "\n"
