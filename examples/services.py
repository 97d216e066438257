"""The code the quickstart sends to the cluster. It travels by import path: plain module code."""

import logging
import os
import time


def greet(name: str, excited: bool = False) -> str:
    print(f"hello from worker pid {os.getpid()}: greeting {name}")
    return f"Hello, {name}{'!' if excited else '.'}"


class Counter:
    """A stateful service: its state lives in one worker process on the cluster."""

    def __init__(self, start: int = 0) -> None:
        self.count = start

    def increment(self, by: int = 1) -> int:
        self.count += by
        logging.getLogger("counter").warning("count is now %d", self.count)
        return self.count

    def slow_sum(self, n: int) -> int:
        total = 0
        for i in range(n):
            print(f"step {i + 1}/{n}")
            time.sleep(0.2)
            total += i
        return total

    @property
    def doubled(self) -> int:
        return self.count * 2
