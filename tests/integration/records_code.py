"""Code the call-record tests deploy (tests/integration/daemon/test_call_records.py)."""

from __future__ import annotations

import logging
import sys
import time


def chatty(n: int) -> int:
    for i in range(n):
        print(f"line {i}")
    return n


def fail(msg: str):
    print("about to fail", file=sys.stderr)
    raise ValueError(msg)


def slow_printer(n: int, gap: float) -> int:
    """Prints a line every ``gap`` seconds: followers see each as it comes."""
    for i in range(n):
        print(f"tick {i}", flush=True)
        logging.getLogger("records").warning("logged %d", i)
        time.sleep(gap)
    return n


def gated_printer(n: int, gate: str) -> int:
    """Prints ``tick 0``, waits until the file ``gate`` exists, then prints the rest: a follower
    sees the first line while the call surely still runs, however loaded the machine is."""
    import os

    for i in range(n):
        print(f"tick {i}", flush=True)
        logging.getLogger("records").warning("logged %d", i)
        while i == 0 and not os.path.exists(gate):
            time.sleep(0.02)
    return n


def noop() -> None:
    return None


def burst(lines: int, width: int, hold: float) -> int:
    """Prints ``lines`` lines of ``width`` characters at once, then runs ``hold`` seconds more."""
    for i in range(lines):
        print(f"{i:06d}" + "x" * (width - 6))
    sys.stdout.flush()
    time.sleep(hold)
    return lines
