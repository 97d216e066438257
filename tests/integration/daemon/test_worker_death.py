"""A worker that dies mid-call (os._exit, SIGKILL, a real segfault): the caller gets
``tether.WorkerDiedError`` with how it died, every other call in flight on it too, objects in other
envs carry on untouched, the daemon keeps serving, and the next call starts a fresh worker.

The module has its own cluster, so that killing workers never disturbs other tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import remote_code
from process_helpers import running, wait_until

import tether as rh

CALL_TIMEOUT = 60  # seconds a test waits for a call before calling it a hang


@pytest.fixture(scope="module")
def cluster():
    c = rh.cluster(name=f"death-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    yield c
    c.teardown()


class Services:
    """Env A holds the services that die; env B holds a stateful object that must not notice."""

    def __init__(self, cluster: rh.Cluster) -> None:
        tag = uuid.uuid4().hex[:6]
        self.cluster = cluster
        self.env_a = rh.env(name=f"dying-{tag}")
        self.env_b = rh.env(name=f"bystander-{tag}")
        self.die = rh.function(remote_code.die).to(cluster, env=self.env_a, name=f"die-{tag}")
        self.pid_a = rh.function(remote_code.pid).to(cluster, env=self.env_a, name=f"pid-a-{tag}")
        self.block_a = rh.function(remote_code.block).to(cluster, env=self.env_a, name=f"block-a-{tag}")
        self.fragile = rh.module(remote_code.Fragile).to(cluster, env=self.env_a)(
            "made-once", name=f"fragile-{tag}")
        self.counter_b = rh.module(remote_code.Counter).to(cluster, env=self.env_b)(
            start=100, name=f"counter-b-{tag}")
        self.pid_b = rh.function(remote_code.pid).to(cluster, env=self.env_b, name=f"pid-b-{tag}")
        self.block_b = rh.function(remote_code.block).to(cluster, env=self.env_b, name=f"block-b-{tag}")


@pytest.fixture
def services(cluster):
    s = Services(cluster)
    yield s
    for env in (s.env_a, s.env_b):
        with contextlib.suppress(rh.NotFoundError):  # a test may have deleted it
            cluster.delete(env.env_name)


@contextlib.contextmanager
def _released(path: Path):
    """Release blocked calls on the way out, even when an assertion failed."""
    try:
        yield
    finally:
        path.touch()


def call_with_timeout(fn, *args, **kwargs):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result(timeout=CALL_TIMEOUT)


DEATHS = {
    "os-exit": ("exit", 3, None),
    "sigkill": ("sigkill", -signal.SIGKILL, "SIGKILL"),
    "segfault": ("segfault", -signal.SIGSEGV, "SIGSEGV"),
}


@pytest.mark.parametrize("death", list(DEATHS), ids=list(DEATHS))
def test_worker_death_mid_call_is_worker_died_error(services, death):
    how, exitcode, signame = DEATHS[death]
    old_pid = services.pid_a()
    services.counter_b.increment(5)
    b_pid, b_count = services.pid_b(), services.counter_b.count

    with pytest.raises(rh.WorkerDiedError) as info:
        call_with_timeout(services.die, how)
    err = info.value
    assert err.exitcode == exitcode
    assert err.signal == signame
    assert err.pid == old_pid
    assert err.env == services.env_a.env_name
    assert err.cluster == services.cluster.name
    assert isinstance(err, rh.RemoteError)
    assert str(old_pid) in str(err) and services.env_a.env_name in str(err)
    assert not running(old_pid)

    # the daemon keeps serving
    assert services.cluster.client.health()["status"] == "ok"
    # the other env did not notice: same process, state intact
    assert services.pid_b() == b_pid
    assert services.counter_b.count == b_count
    # the next call to the dead env starts a fresh worker, with its objects re-created
    new_pid = call_with_timeout(services.pid_a)
    assert new_pid != old_pid
    assert running(new_pid)
    with pytest.warns(rh.StateResetWarning, match=services.fragile.name):  # said once, to its caller
        tag, calls, pid = services.fragile.touch()
    assert (tag, calls, pid) == ("made-once", 1, new_pid)  # freshly constructed, same arguments


def test_method_of_an_instance_killing_its_worker(services):
    services.fragile.touch()
    old_pid = services.pid_a()
    with pytest.raises(rh.WorkerDiedError) as info:
        call_with_timeout(services.fragile.die, "sigkill")
    assert info.value.signal == "SIGKILL"
    assert info.value.service == services.fragile.name
    assert info.value.method == "die"
    with pytest.warns(rh.StateResetWarning, match="with fresh state"):
        tag, calls, pid = call_with_timeout(services.fragile.touch)
    assert tag == "made-once" and calls == 1 and pid != old_pid


def test_every_call_in_flight_on_the_dying_worker_gets_worker_died_error(services, tmp_path):
    """Calls blocked on the dying worker all fail (none hangs); a call in flight in another env
    finishes normally once released."""
    release = tmp_path / "release"
    n = 6
    with ThreadPoolExecutor(n + 1) as pool, _released(release):
        doomed = [pool.submit(services.block_a, str(tmp_path / f"a{i}"), str(release)) for i in range(n)]
        survivor = pool.submit(services.block_b, str(tmp_path / "b"), str(release))
        started = [tmp_path / f"a{i}" for i in range(n)] + [tmp_path / "b"]
        wait_until(lambda: all(p.exists() for p in started), what="every call to start")
        pid_a = int((tmp_path / "a0").read_text())

        with pytest.raises(rh.WorkerDiedError):
            call_with_timeout(services.die, "sigkill")
        for future in doomed:
            with pytest.raises(rh.WorkerDiedError) as info:
                future.result(timeout=CALL_TIMEOUT)
            assert info.value.signal == "SIGKILL"
            assert info.value.pid == pid_a

        assert not survivor.done()  # the other env's call is still running...
        release.touch()
        assert survivor.result(timeout=CALL_TIMEOUT) == int((tmp_path / "b").read_text())  # ...and returns
    assert call_with_timeout(services.pid_a) != pid_a


def test_worker_killed_while_idle_is_replaced_by_the_next_call(services):
    services.fragile.touch()
    old_pid = services.pid_a()
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: not running(old_pid), what="the worker to die")

    def noticed() -> bool:  # a call racing the death itself may still be sent to the dead worker
        worker = services.cluster.status()["envs"][services.env_a.env_name]["worker"]
        return worker["pid"] == old_pid and not worker["alive"]

    wait_until(noticed, what="the daemon to notice the death")
    new_pid = call_with_timeout(services.pid_a)
    assert new_pid != old_pid
    assert call_with_timeout(services.fragile.touch) == ("made-once", 1, new_pid)


def test_status_shows_the_fresh_worker(services):
    old_pid = services.pid_a()
    with pytest.raises(rh.WorkerDiedError):
        call_with_timeout(services.die, "exit")
    new_pid = services.pid_a()
    worker = services.cluster.status()["envs"][services.env_a.env_name]["worker"]
    assert worker["pid"] == new_pid != old_pid
    assert worker["alive"] is True


@pytest.mark.parametrize("how", ["exit", "sigkill", "segfault"])
def test_constructor_that_kills_the_worker(services, how):
    name = f"dies-in-init-{uuid.uuid4().hex[:6]}"
    DiesInInit = rh.module(remote_code.DiesInInit).to(services.cluster, env=services.env_a)
    with pytest.raises(rh.WorkerDiedError):
        call_with_timeout(DiesInInit, how, name=name)
    keys = services.cluster.keys()
    assert name not in keys
    # the env's other objects come back in a fresh worker
    assert call_with_timeout(services.fragile.touch)[0] == "made-once"
    assert services.cluster.client.health()["status"] == "ok"


def test_constructor_that_raises_registers_nothing_and_keeps_the_old_object(services):
    name = services.counter_b.name
    services.counter_b.increment(7)
    count, pid = services.counter_b.count, services.pid_b()
    Broken = rh.module(remote_code.Broken).to(services.cluster, env=services.env_b)
    with pytest.raises(RuntimeError, match="constructor failed"):
        Broken(name=name)
    with pytest.raises(RuntimeError, match="constructor failed"):
        Broken(name=f"broken-{uuid.uuid4().hex[:6]}")
    assert services.cluster.get(name).count == count  # the object of that name is untouched
    assert services.pid_b() == pid
    keys = services.cluster.keys()
    assert not [k for k in keys if k.startswith("broken-")]


def test_many_deaths_in_a_row_leave_the_daemon_serving(services):
    pids = set()
    for how in ["exit", "sigkill", "segfault"] * 2:
        pids.add(services.pid_a())
        with pytest.raises(rh.WorkerDiedError):
            call_with_timeout(services.die, how)
    assert len(pids) == 6
    assert services.counter_b.increment() > 100
    assert Path(services.cluster.status()["state_dir"]).is_dir()


def test_deleting_an_env_during_a_call_ends_the_call_with_a_clear_error(services, tmp_path):
    started = tmp_path / "started"
    with ThreadPoolExecutor(1) as pool, _released(tmp_path / "release"):
        call = pool.submit(services.block_a, str(started), str(tmp_path / "release"))
        wait_until(started.exists, what="the call to start")
        services.cluster.delete(services.env_a.env_name)
        with pytest.raises(rh.WorkerDiedError, match="was stopped during the call") as info:
            call.result(timeout=CALL_TIMEOUT)
    assert info.value.pid == int(started.read_text())
    assert not running(info.value.pid)
    assert services.counter_b.increment() > 100  # the other env carries on
