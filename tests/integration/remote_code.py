"""Code the integration tests deploy. It travels by import path, like a user's project code."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref


def add(a, b=1):
    print(f"adding {a} and {b}")
    return a + b


def echo(*args, **kwargs):
    return args, kwargs


def pid() -> int:
    return os.getpid()


def env_var(name: str):
    return os.environ.get(name)


def cwd() -> str:
    return os.getcwd()


def raise_value_error(msg: str):
    raise ValueError(msg)


def raise_local_only():
    class LocalOnly(Exception):
        pass

    raise LocalOnly("a type the caller cannot import")


def return_lock():
    return threading.Lock()


def log_lines(n: int):
    for i in range(n):
        print(f"line {i}")
        logging.getLogger("remote_code").warning("warning %d", i)
        time.sleep(0.05)
    return n


def quiet_print():
    print("this should not stream")
    return "done"


def die(how: str):
    if how == "exit":
        os._exit(3)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segfault":
        import ctypes

        ctypes.string_at(0)
    raise ValueError(how)


def imported_modules() -> list[str]:
    import sys

    return sorted(sys.modules)


class Counter:
    def __init__(self, start: int = 0):
        self.count = start
        self._lock = threading.Lock()

    def increment(self, by: int = 1) -> int:
        with self._lock:
            self.count += by
            return self.count

    def slow_increment(self, delay: float = 0.05) -> int:
        time.sleep(delay)
        return self.increment()

    @property
    def doubled(self) -> int:
        return self.count * 2

    def save(self) -> str:  # a user method named like a Resource method: the user's wins
        return f"user save at {self.count}"

    async def async_value(self) -> int:
        return self.count


class Broken:
    def __init__(self):
        raise RuntimeError("constructor failed")


def kwargs_only(*, scale: float = 1.0, offset: float = 0.0, values: list | None = None) -> list:
    return [v * scale + offset for v in (values or [])]


def emit_output(n: int) -> int:
    """Print to stdout, write to stderr and log a warning: all three reach the caller."""
    import sys

    for i in range(n):
        print(f"stdout line {i}")
        print(f"stderr line {i}", file=sys.stderr)
        logging.getLogger("remote_code").warning("logged line %d", i)
    return n


def wait_for_file(path: str, timeout: float = 30.0) -> str:
    """Print, then block until ``path`` exists: lets a test see a print before the call returns."""
    print("waiting for the go file", flush=True)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return "released"


class Trainer:
    """A stateful service with properties, instance attributes, a setter and an async method."""

    def __init__(self, model: str, lr: float = 0.1):
        self.model = model
        self.lr = lr
        self.steps = 0
        self._history: list[float] = []

    def train(self, batches: int = 1) -> int:
        for _ in range(batches):
            self.steps += 1
            self._history.append(self.lr * self.steps)
        return self.steps

    @property
    def summary(self) -> str:
        return f"{self.model}@{self.steps}"

    @property
    def history(self) -> list:
        return list(self._history)

    def pid(self) -> int:
        return os.getpid()

    async def evaluate(self, factor: int = 1) -> int:
        import asyncio

        await asyncio.sleep(0)
        return self.steps * factor

    def report(self) -> str:
        print(f"report: {self.model} at step {self.steps}")
        logging.getLogger("trainer").warning("report logged")
        return self.summary

    async def async_report(self) -> str:
        print(f"async report: {self.model}")
        return self.summary


class Overlap:
    """Records which calls were running at the same time, to prove concurrency in the worker."""

    def __init__(self):
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.threads: set[str] = set()

    def meet(self, parties: int, timeout: float = 30.0) -> str:
        """Every caller waits until ``parties`` callers are inside at once (a barrier)."""
        with self._lock:
            barrier = getattr(self, "_barrier", None)
            if barrier is None or barrier.parties != parties or barrier.broken:
                barrier = self._barrier = threading.Barrier(parties)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.threads.add(threading.current_thread().name)
        try:
            barrier.wait(timeout)  # raises BrokenBarrierError unless all parties overlap
            return threading.current_thread().name
        finally:
            with self._lock:
                self.active -= 1

    def sleep(self, seconds: float) -> tuple[float, float]:
        start = time.monotonic()
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(seconds)
        with self._lock:
            self.active -= 1
        return start, time.monotonic()

    def stats(self) -> dict:
        return {"max_active": self.max_active, "threads": sorted(self.threads)}


def raise_from_module(folder: str, module: str):
    """Raise an exception whose class only the worker can import (``folder`` is not on the caller's path)."""
    import importlib
    import sys

    if folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.import_module(module).fail()


_live_tracked: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class Tracked:
    """Registers itself in a weak map, so a test can tell when the worker let go of it."""

    def __init__(self, tag: str):
        self.tag = tag
        _live_tracked[tag] = self


def live_tags() -> list[str]:
    import gc

    gc.collect()
    return sorted(_live_tracked.keys())


# ---------------------------------------------------------------------------------------------
# Bad input and failures (test_bad_input.py, test_worker_death.py, test_envs.py, test_daemon.py)


def block(started: str, release: str, timeout: float = 90.0) -> int:
    """Write this worker's pid to ``started``, then wait until ``release`` exists."""
    with open(started + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(started + ".tmp", started)
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.01)
    return os.getpid()


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def raise_unpicklable_exception():
    raise ValueError("an exception holding a lock", threading.Lock())


class NeedsTwoArgs(Exception):
    """Pickles, but cannot be rebuilt by unpickling (its __init__ wants two arguments)."""

    def __init__(self, first, second):
        super().__init__(f"{first} and {second}")


def raise_needs_two_args():
    raise NeedsTwoArgs("first", "second")


def make_from_module(folder: str, module: str):
    """Return an instance of ``module.Thing``; ``folder`` is on the worker's path only."""
    import importlib
    import sys

    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(module).Thing()


def import_value(module: str) -> tuple:
    """``module.VALUE``, where ``module`` lives, and the interpreter running this worker."""
    import importlib
    import sys

    mod = importlib.import_module(module)
    return mod.VALUE, mod.__file__, sys.executable


class Fragile:
    """A service whose method can kill its worker; ``tag`` tells a re-created instance apart."""

    def __init__(self, tag: str):
        self.tag = tag
        self.calls = 0

    def touch(self) -> tuple:
        self.calls += 1
        return self.tag, self.calls, os.getpid()

    def die(self, how: str):
        die(how)


class DiesInInit:
    def __init__(self, how: str):
        die(how)


# -- issue 3: call semantics -------------------------------------------------------------------


def count_up(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"failed at {i}")
        yield i
    return "finished"


def endless(marker: str):
    """A generator that runs until stopped; it writes its progress so a test can see it stop."""
    import pathlib

    i = 0
    try:
        while True:
            tmp = pathlib.Path(marker + ".tmp")
            tmp.write_text(str(i))
            os.replace(tmp, marker)  # atomic: a stop mid-write never leaves it empty
            yield i
            i += 1
            time.sleep(0.01)
    finally:
        pathlib.Path(marker + ".closed").write_text("closed")


async def async_double(x: int) -> int:
    import asyncio

    await asyncio.sleep(0.01)
    return 2 * x


async def async_count(n: int):
    import asyncio

    for i in range(n):
        await asyncio.sleep(0)
        yield i


def square(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x * x


def sleepy(seconds: float, marker: str | None = None) -> str:
    import pathlib

    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.01)
    except BaseException:
        if marker:
            pathlib.Path(marker).write_text("interrupted")
        raise
    return "slept"


def make_array(n: int):
    import numpy as np

    return np.arange(n, dtype=np.float64)


def total(array) -> float:
    return float(array.sum())


class Serial:
    """Records how many calls overlap: with max_concurrency=1 it never exceeds 1."""

    def __init__(self):
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def work(self, seconds: float = 0.02) -> int:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(seconds)
        with self.lock:
            self.active -= 1
        return self.peak

    async def awork(self, seconds: float = 0.02) -> int:
        import asyncio

        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        await asyncio.sleep(seconds)
        with self.lock:
            self.active -= 1
        return self.peak


def nbytes(array) -> int:
    return int(array.nbytes)


def zeros(n: int):
    import numpy as np

    return np.zeros(n, dtype=np.uint8)


def buffer_owner(array) -> str:
    """The type of the object that owns an array's memory (mmap: it came through shared memory)."""
    base = array
    while True:
        if getattr(base, "base", None) is not None:
            base = base.base
        elif isinstance(base, memoryview) and base.obj is not None:
            base = base.obj
        else:
            return type(base).__name__


def fill(n: int, value: int):
    import numpy as np

    return np.full(n, value, dtype=np.uint8)
