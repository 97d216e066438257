"""Restarts and worker deaths that lose nothing silently (issue 10).

A real daemon is killed with SIGKILL (its pid from ``cluster.status()``) and started again the way
a user does (``tether daemon start --cluster NAME``, or ``up_if_not()``): what was deployed comes
back from its manifest, stubs held by this process follow it to its new port, instances are made
again with fresh state and their next caller is told once (``tether.StateResetWarning``), its
children died with it, and what it left behind is swept. Each test has its own cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
import warnings
from pathlib import Path

import httpx
import pytest
import restart_code
from process_helpers import running, wait_until

import tether as rh
from tether import state
from tether.client.daemon_client import DaemonClient
from tether.protocol import shm

TETHER = Path(sys.executable).with_name("tether")


@pytest.fixture
def cluster():
    c = rh.cluster(name=f"rs-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    yield c
    c.teardown()


def kill_daemon(cluster: rh.Cluster) -> int:
    pid = cluster.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not running(pid), 10, "the killed daemon to be gone")
    return pid


def cli_start(name: str) -> None:
    result = subprocess.run([str(TETHER), "daemon", "start", "--cluster", name], capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr


@contextlib.contextmanager
def recorded():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield seen


def resets(seen) -> list[warnings.WarningMessage]:
    return [w for w in seen if issubclass(w.category, rh.StateResetWarning)]


def test_a_killed_daemon_comes_back_with_what_was_deployed(cluster):
    adder = rh.function(restart_code.add).to(cluster, name="adder")
    tally = rh.module(restart_code.Tally).to(cluster)(10, name="tally")
    assert tally.add(5) == 15
    cluster.put("settings", {"lr": 0.1})

    old = kill_daemon(cluster)
    cli_start(cluster.name)

    # the stubs this process holds follow the daemon to its new address
    assert adder(2, 3) == 5
    assert cluster.status()["pid"] != old
    assert sorted(cluster.keys()) == ["adder", "settings", "tally"]
    assert cluster.get("settings") == {"lr": 0.1}

    # the instance is back, made again from its constructor arguments: fresh state, said once
    with recorded() as seen:
        assert tally.add(1) == 11
        assert tally.add(1) == 12
        assert cluster.get("tally").add(1) == 13  # found by name too
    (told,) = resets(seen)
    text = str(told.message)
    assert "'tally'" in text and "daemon restarted" in text and f"pid {old}" in text
    assert "killed or crashed" in text and "fresh state" in text
    assert told.message.service == "tally"
    assert told.filename == __file__  # pointed at the caller's own line

    # and shown in its info and in the status
    info = cluster.client.request_json("GET", "/_tether/objects/tally")
    assert "daemon restarted" in info["state_reset"]["reason"] and info["state_reset"]["told"]
    status = cluster.status()
    assert status["objects"]["tally"]["state_reset"]["told"]
    assert "state_reset" not in status["objects"]["adder"]  # a function has no state to lose
    assert status["restored"]["objects"] == 3 and status["restored"]["previous"]["pid"] == old
    assert status["lost"] == {}


def test_the_async_path_follows_a_restarted_daemon_too(cluster):
    adder = rh.function(restart_code.add).to(cluster, name="adder")

    async def scenario() -> int:
        assert await adder.aio(1, 1) == 2  # leaves an idle connection to the old daemon
        kill_daemon(cluster)
        await asyncio.to_thread(cli_start, cluster.name)
        return await adder.aio(2, 3)

    assert asyncio.run(scenario()) == 5


def test_up_if_not_brings_back_a_killed_daemon_with_its_objects(cluster):
    tally = rh.module(restart_code.Tally).to(cluster)(1, name="tally")
    tally.add(1)
    kill_daemon(cluster)
    cluster.up_if_not()
    with recorded() as seen:
        assert tally.add(1) == 2
    assert len(resets(seen)) == 1


def test_a_call_in_flight_when_the_daemon_dies_is_not_sent_again(cluster, tmp_path):
    marker = tmp_path / "runs"
    cluster.up_if_not()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            cluster.run_bash([f"echo run >> {marker}; sleep 300"])
        except BaseException as exc:  # noqa: BLE001
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(marker.exists, 30, "the command to start")
    kill_daemon(cluster)
    thread.join(30)
    assert failed and isinstance(failed[0], rh.ConnectionError)
    cli_start(cluster.name)
    assert cluster.run_bash(["true"])[0][0] == 0
    assert marker.read_text() == "run\n"  # once: a call that may have run is never re-sent


def test_children_of_a_killed_daemon_die_with_it(cluster, tmp_path):
    pids = tmp_path / "pids"
    worker = rh.function(restart_code.pid).to(cluster, name="pid")()
    grandchild = rh.function(restart_code.start_sleeper).to(cluster, name="sleeper")(300)

    def run() -> None:
        with contextlib.suppress(rh.ConnectionError):  # its daemon is killed under it
            cluster.run_bash([f"sleep 300 & echo $$ $! > {pids}; wait"])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2, 30, "the command to start")
    shell, sleeper = (int(p) for p in pids.read_text().split())
    assert all(running(p) for p in (worker, grandchild, shell, sleeper))

    kill_daemon(cluster)
    for pid, what in ((shell, "the run_bash shell"), (sleeper, "the command's own child"),
                      (worker, "the worker"), (grandchild, "the worker's child")):
        wait_until(lambda pid=pid: not running(pid), 10, f"{what} (pid {pid}) to die with the daemon")
    thread.join(30)


def test_a_new_daemon_sweeps_what_a_killed_one_left(cluster, tmp_path):
    from tether.daemon import sweep  # where worker sockets live: a folder named after the state dir

    rh.function(restart_code.add).to(cluster, name="adder")(1, 2)
    state_dir = state.cluster_dir(cluster.name).resolve()
    prefix = os.path.join(tempfile.gettempdir(), sweep.socket_prefix(state_dir))
    folder = shm.folder_for(state_dir)
    kill_daemon(cluster)

    left = [p for p in Path(tempfile.gettempdir()).iterdir() if str(p).startswith(prefix)]
    assert left, "the killed daemon's worker sockets are left behind"
    stale = folder / (os.urandom(12).hex() + ".buf")  # a result a dead daemon held
    stale.write_bytes(b"x" * 100)
    foreign = folder / "not-tethers.txt"
    foreign.write_text("keep")
    # a worker of this state dir whose daemon is gone, and one of another state dir
    other = os.path.join(tempfile.gettempdir(), sweep.socket_prefix(tmp_path) + "x", "w.sock")
    code = "import time; time.sleep(300)"
    stray = subprocess.Popen([sys.executable, "-c", code, "-m", "tether.worker.runtime", "--connect",
                              f"{prefix}stray/w.sock"])
    bystander = subprocess.Popen([sys.executable, "-c", code, "-m", "tether.worker.runtime",
                                  "--connect", other])
    try:
        cli_start(cluster.name)
        assert stray.wait(10) == -signal.SIGKILL
        assert bystander.poll() is None  # never anything of another state dir
        assert not any(p.exists() for p in left)
        assert not stale.exists() and foreign.read_text() == "keep"
        assert (folder / "probe").exists()  # the new daemon's own
        assert rh.function(restart_code.add).to(cluster, name="adder")(2, 2) == 4
    finally:
        bystander.kill()
        stray.kill()
        foreign.unlink(missing_ok=True)


def test_a_worker_killed_mid_call_warns_the_next_caller_of_each_instance_once(cluster):
    env = rh.env(name="fragile")
    tally = rh.module(restart_code.Tally).to(cluster, env=env)(100, name="tally")
    other = rh.module(restart_code.Tally).to(cluster, env=env)(0, name="other")
    bystander = rh.module(restart_code.Tally).to(cluster)(0, name="bystander")  # another env
    tally.add(1), other.add(1), bystander.add(1)
    old = tally.pid()

    with pytest.raises(rh.WorkerDiedError):
        tally.kill_worker()
    with recorded() as seen:
        assert tally.add(1) == 101  # fresh state
        assert tally.add(1) == 102
        assert other.add(1) == 1
        assert bystander.add(1) == 2  # its worker never died: nothing to say
    told = resets(seen)
    assert [w.message.service for w in told] == ["tally", "other"]
    text = str(told[0].message)
    assert f"pid {old}" in text and "SIGKILL" in text and "'fragile'" in text
    assert cluster.status()["objects"]["tally"]["state_reset"]["told"]
    assert cluster.client.health()["status"] == "ok"


def test_who_hears_of_a_reset_json_callers_older_clients_and_this_one(cluster, capfd):
    tally = rh.module(restart_code.Tally).to(cluster)(0, name="tally")
    with pytest.raises(rh.WorkerDiedError):
        tally.kill_worker()

    # curl: a JSON answer, nothing more, and the warning is kept for a Python caller
    endpoint = cluster.launcher.endpoint(cluster)
    with httpx.Client(base_url=f"http://{endpoint.host}:{endpoint.port}", timeout=30,
                      headers={"Authorization": f"Bearer {endpoint.token}"}) as http:
        answer = http.post("/tally/add", json={"n": 2})
    assert answer.status_code == 200 and answer.json() == 2
    assert not cluster.status()["objects"]["tally"]["state_reset"]["told"]

    # a client that does not announce WARN gets it as a line on stderr, not a message it cannot read
    older = DaemonClient(endpoint.host, endpoint.port, endpoint.token, cluster=cluster.name)
    older._fixed_headers = older._fixed_headers.replace(b"x-tether-accept: warn\r\n", b"")
    with recorded() as seen:
        assert older.call("tally", "add", (1,)) == 3
    older.close()
    assert not resets(seen)
    assert "StateResetWarning: instance 'tally' was made again" in capfd.readouterr().err

    # told once: this client hears nothing more
    with recorded() as seen:
        assert tally.add(1) == 4
    assert not resets(seen)


def test_what_is_too_big_to_keep_is_said_at_deploy_and_after_the_restart(monkeypatch, capfd):
    monkeypatch.setenv("TETHER_MANIFEST_MAX_OBJECT_BYTES", "1000")  # the daemon reads it
    c = rh.cluster(name=f"rs-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    try:
        c.put("small", b"s" * 100)
        c.put("big", b"b" * 5000)
        assert "'big' is not kept across daemon restarts" in capfd.readouterr().err
        kill_daemon(c)
        c.up_if_not()
        assert c.get("small") == b"s" * 100
        assert c.get("big", None) is None
        assert "TETHER_MANIFEST_MAX_OBJECT_BYTES" in c.status()["lost"]["big"]
        with pytest.raises(rh.NotFoundError, match="not kept.*put it again"):
            c.client.call("big", "__value__")
        c.put("big", b"b" * 10)  # put again: known again
        assert c.get("big") == b"b" * 10 and "big" not in c.status()["lost"]
    finally:
        c.teardown()


def test_an_object_that_cannot_be_made_again_does_not_stop_the_others(cluster, project):
    name = project.module_name("fading")
    path = project.write(f"{name}.py", """
        class Model:
            def __init__(self, tag):
                self.tag = tag

            def get(self):
                return self.tag
    """)
    module = __import__(name)
    model = rh.module(module.Model).to(cluster)("m", name="model")
    adder = rh.function(restart_code.add).to(cluster, name="adder")
    assert model.get() == "m"
    kill_daemon(cluster)
    path.write_text("raise ImportError('this module is broken now')\n")
    cluster.up_if_not()
    assert adder(1, 1) == 2
    with pytest.raises(rh.NotFoundError, match="could not be made again.*broken now.*Deploy it again"):
        model.get()
    assert "broken now" in cluster.status()["objects"]["model"]["error"]


def test_a_constructor_may_call_an_object_made_again_before_it(cluster):
    cluster.put("settings", {"depth": 3})
    reader = rh.module(restart_code.Reader).to(cluster)(cluster.name, "settings", name="reader")
    assert reader.read() == {"depth": 3}
    kill_daemon(cluster)
    cluster.up_if_not()
    with recorded():
        assert reader.read() == {"depth": 3}


def test_teardown_forgets_and_restart_server_keeps(cluster):
    rh.function(restart_code.add).to(cluster, name="adder")
    cluster.restart_server()
    assert cluster.keys() == ["adder"]
    cluster.teardown()
    cluster.up_if_not()
    assert cluster.keys() == []
