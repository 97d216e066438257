"""Code the integration tests deploy. It travels by import path, like a user's project code."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time


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
