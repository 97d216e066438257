"""One local cluster cold start, run by ``bench/lifecycle.py`` in a fresh interpreter with a fresh,
empty ``TETHER_HOME``: create the cluster handle, bring it up, deploy ``noop``, call it.

Prints one JSON line with the times measured inside this process as soon as the first call
returned (the parent times the whole process from its own side), then tears the cluster down.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import tether as rh  # noqa: E402

T_IMPORTED = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_code import noop  # noqa: E402


def main() -> int:
    t0 = time.perf_counter()
    cluster = rh.cluster("local")
    try:
        cluster.up_if_not()
        t_up = time.perf_counter()
        fn = rh.function(noop).to(cluster)
        t_to = time.perf_counter()
        fn()
        t_call = time.perf_counter()
        print(json.dumps({
            "cluster_to_first_call_s": t_call - t0, "cluster_up_s": t_up - t0,
            "to_s": t_to - t_up, "first_call_s": t_call - t_to, "import_tether_s": T_IMPORTED - T_START,
        }), flush=True)
    finally:
        t_down = time.perf_counter()
        cluster.teardown()
        print(json.dumps({"teardown_s": time.perf_counter() - t_down}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
