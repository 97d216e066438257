"""Code of the Runhouse-snippet tests (``core/test_runhouse_snippets.py``), written the way
Runhouse's docs write it: plain functions, and a class that subclasses ``rh.Module``."""

from __future__ import annotations

import os
import sys
import time

import tether as rh


def add3(a, b, c=0):
    return a + b + c


def np_sum(a, b):
    return sum([a, b])


def stamp(i, seconds=0.2):
    """When the call started and ended (on the cluster's clock), to see calls overlap or not."""
    start = time.time()
    time.sleep(seconds)
    return i, start, time.time()


class Trainer(rh.Module):
    def __init__(self, lr: float = 0.1):
        super().__init__()
        self.lr = lr
        self.steps = 0

    @property
    def data(self):
        if not hasattr(self, "_data"):
            self._data = list(range(3))
        return self._data

    def train(self):
        self.steps += 1
        return self.steps

    def getpid(self):
        return os.getpid()


def greeting():
    return os.environ.get("GREETING")


def python_prefix():
    return sys.prefix
