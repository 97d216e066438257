"""Call timeouts on a real daemon: a worker stopped mid-call (SIGSTOP) no longer hangs its callers;
the call is cancelled and raises CallTimeoutError, other envs serve on. A function's own
``timeout`` parameter still reaches it; ``.aio``, ``.map``, ``.submit``, ``.remote`` and
generators take a timeout; stubs and ``TETHER_CALL_TIMEOUT`` give defaults.

The time bounds asserted here are loose (a call that used to hang forever must end within its
timeout plus a few seconds): how fast is the benchmark's business."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
import remote_code as rc
import timeout_code as tc
from process_helpers import wait_until

import tether as rh

pytestmark = pytest.mark.timeout(90)
SLACK = 5.0  # seconds past a timeout within which the call must have raised


def env(tag: str):
    return rh.env(name=f"{tag}-{uuid.uuid4().hex[:6]}")


def deploy(cluster, fn, environment=None, **kw):
    return rh.function(fn).to(cluster, env=environment, name=f"{fn.__name__}-{uuid.uuid4().hex[:6]}", **kw)


def worker_pid(cluster, env_name: str) -> int:
    return cluster.status()["envs"][env_name]["worker"]["pid"]


@contextmanager
def stopped(pid: int):
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_stopped_worker_times_out_the_call_which_is_cancelled_and_other_envs_serve(session_cluster, tmp_path):
    stuck_env = env("stuck")
    spin = deploy(session_cluster, tc.spin, stuck_env)
    other = deploy(session_cluster, rc.add, env("other"))
    assert spin(0, timeout=30) == "spun"
    pid = worker_pid(session_cluster, stuck_env.name)
    marker = str(tmp_path / "started")

    def stop_once_started() -> None:  # SIGSTOP the worker in the middle of the call
        wait_until(lambda: os.path.exists(marker), 30, "the call to start")
        os.kill(pid, signal.SIGSTOP)

    stopper = threading.Thread(target=stop_once_started)
    stopper.start()
    try:
        start = time.monotonic()
        with pytest.raises(rh.CallTimeoutError) as info:
            spin(20, marker, timeout=2)
        took = time.monotonic() - start
        stopper.join()
        err = info.value
        assert 2 <= took < 2 + SLACK
        assert err.timeout == 2 and err.cancelled is True  # the daemon took the cancel
        assert err.service == spin.name and err.cluster == session_cluster.name and err.call_id
        message = str(err)
        assert f"{spin.name} on cluster {session_cluster.name!r}" in message and "2 s" in message
        assert "cluster.status()" in message and "raise the timeout" in message
        # every other call to that env used to wait forever too; other envs never stopped serving
        with pytest.raises(rh.CallTimeoutError):
            spin(0, timeout=1)
        assert other(2, 3, timeout=10) == 5
    finally:
        stopper.join()
        os.kill(pid, signal.SIGCONT)
    # once the worker runs again, the cancel it was sent stops the call: it never ends normally
    with pytest.raises(rh.CallCancelledError):
        session_cluster.result(err.call_id, timeout=30)
    assert not os.path.exists(marker + ".done")
    assert spin(0, timeout=30) == "spun"  # and the env serves again, on the same worker
    assert worker_pid(session_cluster, stuck_env.name) == pid


def test_a_functions_own_timeout_parameter_reaches_it(session_cluster):
    fetch = deploy(session_cluster, tc.fetch)
    assert fetch.interface["methods"]["call"]["params"] == ["url", "timeout"]
    # 0.05 s is the function's own timeout, not tether's: the 0.3 s call is not cut short
    assert fetch("http://x", timeout=0.05) == {"url": "http://x", "timeout": 0.05}
    with pytest.raises(rh.CallTimeoutError):  # tether's is call_timeout=
        fetch("http://x", timeout=30, call_timeout=0.1)
    anything = deploy(session_cluster, tc.anything)
    assert anything(timeout=0.01) == {"timeout": 0.01}  # **kwargs takes it too
    add = deploy(session_cluster, rc.add)  # no timeout parameter: timeout= is tether's
    assert add(1, 2, timeout=10) == 3
    waiter = rh.module(tc.Waiter).to(session_cluster)(name=f"waiter-{uuid.uuid4().hex[:6]}")
    assert waiter.wait(0.3, timeout=0.01) == 0.01  # a method's own, too
    with pytest.raises(rh.CallTimeoutError):
        waiter.slow(10, timeout=0.3)


def test_aio_map_submit_remote_and_generators_take_a_timeout(session_cluster):
    spin = deploy(session_cluster, tc.spin)

    async def both():
        with pytest.raises(rh.CallTimeoutError) as info:
            await spin.aio(10, timeout=0.3)
        return info.value, await spin.aio(0.05, timeout=30)

    err, value = asyncio.run(both())
    assert value == "spun" and err.timeout == 0.3 and err.service == spin.name
    with pytest.raises(rh.CallTimeoutError):
        asyncio.run(deploy(session_cluster, tc.asleep)(10, timeout=0.3))  # an async def
    with pytest.raises(rh.CallTimeoutError) as info:
        spin.map([0.05, 10], timeout=1)  # each item's call has the timeout
    assert info.value.map_index == 1
    got = spin.map([0.05, 10], timeout=1, return_exceptions=True)
    assert got[0] == "spun" and isinstance(got[1], rh.CallTimeoutError)
    handle = spin.submit(10, timeout=0.3)
    with pytest.raises(rh.CallTimeoutError):
        handle.result(30)
    with pytest.raises(rh.CallTimeoutError):
        spin.remote(10, timeout=0.3)
    ticks = deploy(session_cluster, tc.ticks)
    # the timeout bounds each wait for the next item, not the stream: 5 x 0.3 s within 1 s each
    assert list(ticks(5, 0.3, timeout=1)) == [0, 1, 2, 3, 4]
    seen = []
    with pytest.raises(rh.CallTimeoutError, match="did not yield its next item within its timeout of 1 s"):
        for item in ticks(5, 0.05, stall_at=2, timeout=1):
            seen.append(item)
    assert seen == [0, 1]

    async def async_items():
        out = []
        with pytest.raises(rh.CallTimeoutError):
            async for item in ticks.aio(5, 0.05, stall_at=2, timeout=1):
                out.append(item)
        return out

    assert asyncio.run(async_items()) == [0, 1]


def test_stub_defaults_and_the_process_default(session_cluster, monkeypatch):
    spin = deploy(session_cluster, tc.spin, timeout=0.3)
    assert spin.timeout == 0.3 and spin.config()["timeout"] == 0.3
    with pytest.raises(rh.CallTimeoutError) as info:
        spin(10)
    assert info.value.timeout == 0.3
    assert spin(0.6, call_timeout=None) == "spun"  # None on the call: no timeout for this one
    assert spin(0.6, timeout=30) == "spun"
    loaded = rh.function(name=spin.save(f"saved-{uuid.uuid4().hex[:6]}").name)
    assert loaded.timeout == 0.3  # saved with the handle
    waiter = rh.module(tc.Waiter).to(session_cluster, timeout=0.3)(name=f"waiter-{uuid.uuid4().hex[:6]}")
    with pytest.raises(rh.CallTimeoutError):
        waiter.slow(10)
    assert waiter.slow(0.05, call_timeout=30) == "spun"

    monkeypatch.setenv("TETHER_CALL_TIMEOUT", "0.3")
    plain = deploy(session_cluster, tc.spin)
    with pytest.raises(rh.CallTimeoutError) as info:
        plain(10)
    assert info.value.timeout == 0.3
    assert plain(0.6, call_timeout=5) == "spun"
    never = deploy(session_cluster, tc.spin, timeout=math.inf)  # this stub: no timeout at all
    assert never(0.6) == "spun"


@pytest.mark.parametrize("kwargs, match", [
    ({"call_timeout": -1}, "above 0"),
    ({"call_timeout": "soon"}, "above 0"),
    ({"timeout": 0}, "above 0"),
    ({"call_timeout": True}, "above 0"),
    ({"timeout": 1, "call_timeout": 2}, "pass one"),
])
def test_a_bad_timeout_is_refused_before_anything_is_sent(session_cluster, kwargs, match):
    add = deploy(session_cluster, rc.add)
    with pytest.raises(rh.ConfigError, match=match):
        add(1, 2, **kwargs)
    assert add(1, 2) == 3  # nothing was sent; the daemon serves on


def test_a_bad_process_default_or_stub_default_says_which(session_cluster, monkeypatch):
    add = deploy(session_cluster, rc.add)
    monkeypatch.setenv("TETHER_CALL_TIMEOUT", "ten")
    with pytest.raises(rh.ConfigError, match="TETHER_CALL_TIMEOUT='ten'"):
        add(1, 2)
    monkeypatch.delenv("TETHER_CALL_TIMEOUT")
    with pytest.raises(rh.ConfigError, match="the stub's timeout"):
        rh.function(rc.add).to(session_cluster, timeout=-5)
    assert add(1, 2) == 3


def test_a_timed_call_leaves_no_timeout_on_the_connection_it_hands_back(session_cluster):
    """The connection is reused: a call without a timeout after a timed one (a plain call, a
    generator run to its end) must not inherit what was left of the earlier timeout (it would
    wait that long, take the connection for dead and reconnect)."""
    spin, ticks = deploy(session_cluster, tc.spin), deploy(session_cluster, tc.ticks)
    local = session_cluster.client._local  # this thread's keep-alive connection

    assert spin(0.05, timeout=5) == "spun"
    conn = local.conn
    assert conn.sock.gettimeout() is None
    assert list(ticks(2, 0.05, timeout=5)) == [0, 1]
    assert local.conn is conn and conn.sock.gettimeout() is None  # handed back by the generator
    assert spin(0.5) == "spun"
    assert local.conn is conn  # reused, not reconnected
