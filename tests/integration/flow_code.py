"""Code the back-pressure tests deploy: generators and printers much faster than their callers."""

from __future__ import annotations

import asyncio
import sys


def items(n: int, size: int):
    """``n`` items of ``size`` bytes, each tagged with its index (to check the order)."""
    for i in range(n):
        yield i, bytes(size)
    return n


async def aitems(n: int, size: int):
    for i in range(n):
        yield i, bytes(size)
        if i % 64 == 0:
            await asyncio.sleep(0)


def chatter(lines: int, width: int = 100) -> int:
    """Print ``lines`` numbered lines as fast as Python can."""
    pad = "x" * width
    for i in range(lines):
        print(f"line {i} {pad}")
    return lines


async def achatter(lines: int, width: int = 100) -> int:
    pad = "x" * width
    for i in range(lines):
        print(f"line {i} {pad}")
        if i % 1000 == 0:
            await asyncio.sleep(0)
    return lines


def chatter_err(lines: int) -> int:
    for i in range(lines):
        print(f"err {i}", file=sys.stderr)
    return lines


def items_marked(n: int, size: int, marker: str):
    """``items``, writing how far it got to ``marker`` (and ``marker.closed`` once stopped)."""
    import os
    import pathlib

    try:
        for i in range(n):
            tmp = pathlib.Path(marker + ".tmp")
            tmp.write_text(str(i))
            os.replace(tmp, marker)
            yield i, bytes(size)
    finally:
        pathlib.Path(marker + ".closed").write_text("closed")


async def aitems_marked(n: int, size: int, marker: str):
    import os
    import pathlib

    try:
        for i in range(n):
            tmp = pathlib.Path(marker + ".tmp")
            tmp.write_text(str(i))
            os.replace(tmp, marker)
            yield i, bytes(size)
            await asyncio.sleep(0)
    finally:
        pathlib.Path(marker + ".closed").write_text("closed")


def slow_zeros(n: int, seconds: float):
    """A big result that comes after a while (its caller may be gone by then)."""
    import time

    import numpy as np

    time.sleep(seconds)
    return np.zeros(n, dtype=np.uint8)


def interleaved(n: int) -> int:
    """``n`` lines on stdout and on stderr, alternating (to check their order at the caller)."""
    for i in range(n):
        print(f"out {i}")
        print(f"err {i}", file=sys.stderr)
    return n


def printed_items(n: int):
    """Prints a line before each item it yields."""
    for i in range(n):
        print(f"before {i}")
        yield i


def print_then_wait(marker: str, seconds: float = 60.0) -> str:
    """Prints a line, then waits (without printing more) until ``marker`` exists."""
    import os
    import time

    print("waiting for the caller")
    deadline = time.monotonic() + seconds
    while not os.path.exists(marker):
        if time.monotonic() > deadline:
            return "timed out"
        time.sleep(0.01)
    return "released"


async def aprint_then_wait(marker: str, seconds: float = 60.0) -> str:
    import os
    import time

    print("waiting for the caller")
    deadline = time.monotonic() + seconds
    while not os.path.exists(marker):
        if time.monotonic() > deadline:
            return "timed out"
        await asyncio.sleep(0.01)
    return "released"


def last_words(code: int) -> None:
    """Prints a line, then ends the worker at once."""
    import os

    print("last words")
    os._exit(code)


def from_a_child() -> int:
    """A forked child (multiprocessing) prints inside the call; its exit code."""
    import multiprocessing

    child = multiprocessing.get_context("fork").Process(target=print, args=("from the child",))
    child.start()
    child.join(60)
    return child.exitcode
