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


def noop() -> None:
    return None
