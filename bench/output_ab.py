"""A call's printed output: lines/s of a call printing many short lines, two worker builds A/B.

    python bench/output_ab.py --a /path/to/old/src --b src [--lines 200000] [--rounds 3]

Each build gets a local cluster of its own (its daemon, and so its workers, started with that
``src`` first on ``PYTHONPATH``) in one throwaway ``TETHER_HOME``; the rounds alternate A and B so
that whatever else loads the machine hits both alike. Figures per build: lines/s with the output
streamed to the caller (read into a sink), with ``stream_logs=False`` (recorded for the call's
history only), and the p50 of a no-op call and of a call printing one line (the output path
must not slow the call path).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if not __package__:
    sys.path.insert(0, str(ROOT))


class _Sink(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def _start(label: str, src: str):
    import tether as rh
    from bench.bench_code import chatter, noop, say

    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.abspath(src), before) if p)
    try:
        cluster = rh.cluster(name=f"output-{label}", launcher="local").up_if_not()
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before
    return cluster, [rh.function(fn).to(cluster, name=fn.__name__) for fn in (chatter, noop, say)]


def _p50_ms(fn, calls: int, *args) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _round(chatter, noop, say, lines: int, calls: int) -> dict[str, float]:
    with contextlib.redirect_stdout(_Sink()):
        t0 = time.perf_counter()
        assert chatter(lines) == lines
        streamed = lines / (time.perf_counter() - t0)
        say_p50 = _p50_ms(say, calls, "hello")
    t0 = time.perf_counter()
    assert chatter(lines, stream_logs=False) == lines
    silent = lines / (time.perf_counter() - t0)
    return {"streamed": streamed, "silent": silent, "noop_p50_ms": _p50_ms(noop, calls),
            "say_p50_ms": say_p50}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="the src folder of build A")
    parser.add_argument("--b", required=True, help="the src folder of build B")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500, help="no-op calls per round")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="tether-output-ab-")
    os.environ["TETHER_HOME"] = home
    os.environ.setdefault("TETHER_LOG_PREFIX", "0")
    clusters, targets = [], {}
    try:
        for label, src in (("a", args.a), ("b", args.b)):
            cluster, fns = _start(label, src)
            clusters.append(cluster)
            targets[label] = fns
            _round(*fns, 2_000, 20)  # warm up
        got: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
        for r in range(args.rounds):
            for label in ("a", "b") if r % 2 == 0 else ("b", "a"):
                got[label].append(_round(*targets[label], args.lines, args.calls))
                print(label, {k: round(v, 3) for k, v in got[label][-1].items()}, flush=True)
        for label in ("a", "b"):
            summary = {k: round(statistics.median(g[k] for g in got[label]), 3) for k in got[label][0]}
            print(f"{label} ({getattr(args, label)}): median of {args.rounds}: {summary}")
    finally:
        for cluster in clusters:
            with contextlib.suppress(Exception):
                cluster.teardown()


if __name__ == "__main__":
    main()
