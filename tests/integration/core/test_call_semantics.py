"""Issue 3's call semantics on a real daemon: async, generators, map, remote results,
max_concurrency, call ids (result by id, retention) and cancellation."""

from __future__ import annotations

import asyncio
import http.client
import os
import time
import uuid

import pytest
import remote_code as rc
from process_helpers import wait_until

import tether as rh
from tether.protocol import wire


def deploy(cluster, fn, **kw):
    return rh.function(fn).to(cluster, name=f"{fn.__name__}-{uuid.uuid4().hex[:6]}", **kw)


# -- generators ---------------------------------------------------------------------------------


def test_generator_streams_items_and_return_value(session_cluster):
    gen = deploy(session_cluster, rc.count_up)(3)
    assert next(gen) == 0
    assert next(gen) == 1
    assert next(gen) == 2
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "finished"


def test_generator_that_raises_mid_stream_delivers_items_first(session_cluster):
    got = []
    with pytest.raises(ValueError, match="failed at 2"):
        for item in deploy(session_cluster, rc.count_up)(5, fail_at=2):
            got.append(item)
    assert got == [0, 1]


def test_closing_a_generator_early_stops_the_remote_one(session_cluster, tmp_path):
    marker = str(tmp_path / "progress")
    gen = deploy(session_cluster, rc.endless)(marker)
    for i, _ in enumerate(gen):
        if i == 3:
            break
    gen.close()
    wait_until(lambda: os.path.exists(marker + ".closed"), 30, "the remote generator to close")
    stopped_at = int(open(marker).read())
    time.sleep(0.3)
    assert int(open(marker).read()) == stopped_at, "the remote generator kept running"


def test_generator_and_another_call_in_the_same_thread(session_cluster):
    """A generator owns its connection: calls made while iterating use another one."""
    gen_fn, add = deploy(session_cluster, rc.count_up), deploy(session_cluster, rc.add)
    assert [add(x, 10) for x in gen_fn(3)] == [10, 11, 12]


def test_async_generator_from_sync_and_async(session_cluster):
    agen = deploy(session_cluster, rc.async_count)

    async def collect():
        return [x async for x in agen(4)]

    assert asyncio.run(collect()) == [0, 1, 2, 3]
    assert list(agen(3, run_async=False)) == [0, 1, 2]


# -- async --------------------------------------------------------------------------------------


def test_async_def_returns_an_awaitable(session_cluster):
    double = deploy(session_cluster, rc.async_double)
    assert asyncio.run(double(21)) == 42
    assert double(5, run_async=False) == 10


def test_many_async_calls_in_flight_from_one_loop(session_cluster):
    add = deploy(session_cluster, rc.add)

    async def many():
        return await asyncio.gather(*(add.aio(i, 1) for i in range(64)))

    assert asyncio.run(many()) == [i + 1 for i in range(64)]


def test_async_errors_are_reraised(session_cluster):
    fail = deploy(session_cluster, rc.raise_value_error)
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(fail.aio("boom"))


def test_async_method_of_an_instance(session_cluster):
    counter = rh.module(rc.Counter).to(session_cluster)(7, name=f"c-{uuid.uuid4().hex[:6]}")
    assert asyncio.run(counter.async_value()) == 7
    assert asyncio.run(counter.increment.aio(3)) == 10


def test_cancelling_an_async_task_cancels_the_remote_call(session_cluster, tmp_path):
    marker = str(tmp_path / "interrupted")
    sleepy = deploy(session_cluster, rc.sleepy)

    async def start_then_cancel():
        task = asyncio.ensure_future(sleepy.aio(60, marker=marker))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(start_then_cancel())
    wait_until(lambda: os.path.exists(marker), 30, "the remote call to be interrupted")


# -- map ----------------------------------------------------------------------------------------


def test_map_keeps_input_order(session_cluster):
    square = deploy(session_cluster, rc.square)
    assert square.map([5, 1, 4, 2], concurrency=3) == [25, 1, 16, 4]
    assert deploy(session_cluster, rc.add).starmap([(1, 2), (3, 4)]) == [3, 7]
    assert square.map([]) == []


def test_map_failure_names_its_index(session_cluster):
    square = deploy(session_cluster, rc.square)
    with pytest.raises(ValueError) as info:
        square.map([1, 2, 3, 4])
    assert info.value.map_index == 2


def test_map_return_exceptions(session_cluster):
    results = deploy(session_cluster, rc.square).map([2, 3], return_exceptions=True)
    assert results[0] == 4 and isinstance(results[1], ValueError)


# -- remote results -----------------------------------------------------------------------------


def test_remote_result_stays_on_the_cluster_and_feeds_another_call(session_cluster):
    make, total = deploy(session_cluster, rc.make_array), deploy(session_cluster, rc.total)
    ref = make.remote(1000)
    assert isinstance(ref, rh.RemoteRef)
    assert total(ref) == float(sum(range(1000)))
    assert ref.fetch()[999] == 999.0
    assert rh.get(ref).shape == (1000,)
    ref.delete()
    with pytest.raises(rh.NotFoundError):
        ref.fetch()


# -- max_concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["work", "awork"], ids=["sync", "async"])
def test_max_concurrency_one_queues_calls(session_cluster, method):
    serial = rh.module(rc.Serial).to(session_cluster, max_concurrency=1)(name=f"s-{uuid.uuid4().hex[:6]}")
    peaks = getattr(serial, method).map([0.02] * 8, concurrency=8)
    assert max(peaks) == 1


def test_without_max_concurrency_calls_overlap(session_cluster):
    free = rh.module(rc.Serial).to(session_cluster)(name=f"f-{uuid.uuid4().hex[:6]}")
    assert max(free.work.map([0.2] * 4, concurrency=4)) > 1


def test_bad_max_concurrency(session_cluster):
    with pytest.raises(rh.ConfigError):
        rh.function(rc.add).to(session_cluster, max_concurrency=0)


# -- call ids, retention, cancel ----------------------------------------------------------------


def test_result_by_id_after_the_caller_lost_its_connection(session_cluster):
    sleepy = deploy(session_cluster, rc.sleepy)
    client = session_cluster.client
    call_id = uuid.uuid4().hex
    conn = http.client.HTTPConnection(client.host, client.port, timeout=30)
    body = wire.encode_bytes(wire.CALL, wire.dumps(((1.0,), {})))
    conn.request("POST", f"/{sleepy.name}/call", body=body, headers={
        "Authorization": client._auth, "Content-Type": wire.CONTENT_TYPE, wire.CALL_ID_HEADER: call_id})
    time.sleep(0.2)
    conn.close()  # the caller goes away mid-call
    assert session_cluster.result(call_id) == "slept"


def test_unknown_call_id_is_not_found(session_cluster):
    with pytest.raises(rh.NotFoundError, match="no call with id"):
        session_cluster.result("no-such-call")


def test_results_past_retention_are_expired(make_cluster, monkeypatch):
    monkeypatch.setenv("TETHER_RESULTS_MAX_COUNT", "2")
    cluster = make_cluster()  # its daemon inherits the bound
    add = deploy(cluster, rc.add)
    handles = []
    for i in range(4):  # one after the other: the oldest result is dropped first
        handles.append(add.submit(i, 1))
        assert handles[-1].result(30) == i + 1
    with pytest.raises(rh.ResultExpiredError, match="expired"):
        cluster.result(handles[0].call_id)
    assert cluster.result(handles[3].call_id) == 4


def test_cancel_a_sync_call_frees_its_thread(session_cluster, tmp_path):
    marker = str(tmp_path / "interrupted")
    sleepy = deploy(session_cluster, rc.sleepy)
    handle = sleepy.submit(60, marker=marker)
    time.sleep(0.5)
    assert handle.cancel() is True
    with pytest.raises(rh.CallCancelledError):
        handle.result(30)
    wait_until(lambda: os.path.exists(marker), 30, "the remote thread to stop")
    assert sleepy(0.01) == "slept"  # the worker serves on


def test_a_worker_with_every_thread_busy_still_reads_cancels(session_cluster, tmp_path):
    """The worker's threads take turns reading: with all of them busy, calls wait in order and a
    cancel still gets through (to a running call and to a waiting one)."""
    env = rh.env(name=f"two-threads-{uuid.uuid4().hex[:6]}", env_vars={"TETHER_WORKER_THREADS": "2"})
    sleepy = rh.function(rc.sleepy).to(session_cluster, env=env)
    add = rh.function(rc.add).to(session_cluster, env=env, name=f"add-{env.name}")
    marker = str(tmp_path / "interrupted")
    running = sleepy.submit(60, marker=marker)  # one thread runs it, the other keeps reading
    time.sleep(0.5)
    waiting = sleepy.submit(60)
    after = add.submit(2, 3)
    time.sleep(0.5)
    assert not after.done()  # queued behind the running call: no thread is free
    assert waiting.cancel() is True
    assert running.cancel() is True
    with pytest.raises(rh.CallCancelledError):
        running.result(30)
    with pytest.raises(rh.CallCancelledError):
        waiting.result(30)
    assert after.result(30) == 5
    assert os.path.exists(marker)


def test_force_cancel_restarts_the_worker(session_cluster):
    env = rh.env(name=f"force-{uuid.uuid4().hex[:6]}")
    sleepy = rh.function(rc.sleepy).to(session_cluster, env=env)
    pid_fn = rh.function(rc.pid).to(session_cluster, env=env, name=f"pid-{env.name}")
    before = pid_fn()
    handle = sleepy.submit(60)
    time.sleep(0.5)
    handle.cancel(force=True)
    with pytest.raises((rh.CallCancelledError, rh.WorkerDiedError)):
        handle.result(30)
    assert pid_fn() != before


def test_remote_result_handed_to_a_call_in_another_env(session_cluster):
    """Between envs the daemon copies the kept result worker to worker: not through the caller."""
    make = rh.function(rc.make_array).to(session_cluster, env=rh.env(name=f"a-{uuid.uuid4().hex[:6]}"),
                                         name=f"make-{uuid.uuid4().hex[:6]}")
    total = rh.function(rc.total).to(session_cluster, env=rh.env(name=f"b-{uuid.uuid4().hex[:6]}"),
                                     name=f"total-{uuid.uuid4().hex[:6]}")
    ref = make.remote(100)
    assert total(ref) == float(sum(range(100)))
    assert total.map([ref, ref]) == [4950.0, 4950.0]


def test_a_deleted_remote_result_gives_a_clear_error(session_cluster):
    make, total = deploy(session_cluster, rc.make_array), deploy(session_cluster, rc.total)
    ref = make.remote(10)
    ref.delete()
    with pytest.raises(rh.NotFoundError, match="no longer exists"):
        total(ref)
