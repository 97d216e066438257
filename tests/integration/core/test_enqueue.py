"""``fn.enqueue``: the worker's per-object queue with ``max_concurrency``, and with a queued call
that gives up (its timeout) while it waits: the queue goes on."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from runhouse_code import stamp

import tether as rh


def _overlap(a: tuple, b: tuple) -> bool:
    return a[1] < b[2] - 0.005 and b[1] < a[2] - 0.005


def test_enqueued_calls_under_max_concurrency(session_cluster):
    fn = rh.function(stamp).to(session_cluster, name=f"stamp-{uuid.uuid4().hex[:6]}", max_concurrency=2)
    fn(0, 0)
    queued: list = []
    plain: list = []
    threads = [threading.Thread(target=lambda i=i: queued.append(fn.enqueue(i, 0.3))) for i in range(2)]
    threads += [threading.Thread(target=lambda i=i: plain.append(fn(i, 0.3))) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(queued) == len(plain) == 2
    assert not _overlap(*queued), queued
    every = queued + plain
    at_once = max(sum(1 for o in every if o[1] <= s[1] < o[2] - 0.005) for s in every)
    assert at_once <= 2, every  # the queue's call still takes one of the two places


def test_a_queued_call_that_times_out_leaves_the_queue_going(session_cluster):
    fn = rh.function(stamp).to(session_cluster, name=f"stamp-{uuid.uuid4().hex[:6]}")
    long = threading.Thread(target=fn.enqueue, args=(0, 1.0))
    long.start()
    time.sleep(0.2)
    with pytest.raises(rh.CallTimeoutError):
        fn.enqueue(1, 0, call_timeout=0.3)  # waits behind the long one, and gives up
    long.join()
    i, start, end = fn.enqueue(2, 0, call_timeout=5)  # the queue was not left held
    assert i == 2
