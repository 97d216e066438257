"""The daemon's lifecycle: foreground start, state files, SIGTERM, the local launcher starting it
detached on demand and stopping it, concurrent ``up_if_not()``, a daemon killed mid-call, and a
daemon that runs another tether version than its client.

Daemons here are real subprocesses. A daemon started in ``cluster_dir(name)`` is found by
``tether.cluster(name=..., launcher="local")`` exactly as one the launcher started would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import remote_code
from process_helpers import running, wait_until

import tether as rh
from tether._version import __version__
from tether.client.daemon_client import DaemonClient
from tether.protocol import wire
from tether.state import cluster_dir

CALL_TIMEOUT = 60  # seconds a test waits for a call or a process before calling it a hang


def daemons_of(state: Path) -> list[int]:
    """Pids of the running daemons whose state dir is ``state``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "--state-dir" in args and args[args.index("--state-dir") + 1] == str(state) \
                and any("tether.daemon" in a or "daemon.__main__" in a for a in args) \
                and running(int(entry.name)):
            found.append(int(entry.name))
    return found


def unique_name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def foreground(tmp_path):
    """Start ``python -m tether.daemon`` (or a patched copy) in the foreground; killed at the end."""
    procs: list[subprocess.Popen] = []

    def start(name: str, prelude: str | None = None) -> subprocess.Popen:
        """``prelude`` runs first in the daemon's process only (a sitecustomize), to patch it."""
        state = cluster_dir(name)
        env = dict(os.environ)
        if prelude is not None:
            site = tmp_path / f"site-{name}"
            site.mkdir()
            (site / "sitecustomize.py").write_text(textwrap.dedent(prelude))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
        with open(tmp_path / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tether.daemon", "--state-dir", str(state), "--cluster", name],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        procs.append(proc)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {proc.returncode}: "
                                     f"{(tmp_path / f'{name}.log').read_text()}")
            try:
                return json.loads((state / "daemon.json").read_text())["pid"] == proc.pid
            except (OSError, ValueError, KeyError):
                return False

        wait_until(ready, CALL_TIMEOUT, "daemon.json")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=CALL_TIMEOUT)


@contextlib.contextmanager
def local_cluster(name: str):
    cluster = rh.cluster(name=name, launcher="local")
    try:
        yield cluster
    finally:
        cluster.teardown()


def worker_pids(cluster) -> dict[str, int]:
    return {env: info["worker"]["pid"] for env, info in cluster.status()["envs"].items() if info["worker"]}


# -- the daemon in the foreground ---------------------------------------------------------------


def test_foreground_daemon_writes_its_state_and_stops_on_sigterm(foreground):
    name = unique_name("fg")
    state = cluster_dir(name)
    proc = foreground(name)

    record = json.loads((state / "daemon.json").read_text())
    assert record["pid"] == proc.pid
    assert record["tether"] == __version__
    assert record["protocol"] == wire.PROTOCOL_VERSION
    assert (state / "daemon.pid").read_text().strip() == str(proc.pid)
    token = state / "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700

    with httpx.Client(base_url=f"http://{record['host']}:{record['port']}", timeout=10) as h:
        health = h.get("/health", headers={"Authorization": f"Bearer {token.read_text().strip()}"})
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["tether"] == __version__
        assert health.json()["protocol"] == wire.PROTOCOL_VERSION
        assert h.get("/health").status_code == 401

    # give it workers in two envs, through the ordinary cluster handle
    cluster = rh.cluster(name=name, launcher="local")
    rh.function(remote_code.pid).to(cluster, env=rh.env(name="one"), name="pid-one")()
    rh.function(remote_code.pid).to(cluster, env=rh.env(name="two"), name="pid-two")()
    workers = worker_pids(cluster)
    assert set(workers) == {"one", "two"}
    assert all(running(pid) for pid in workers.values())

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=CALL_TIMEOUT)
    for pid in workers.values():
        wait_until(lambda pid=pid: not running(pid), what=f"worker {pid} to stop")
    assert not (state / "daemon.json").exists()
    assert not (state / "daemon.pid").exists()
    assert token.exists()  # the token outlives the daemon: the cluster keeps it
    assert not cluster.is_up()


def test_sigterm_stops_the_daemon_even_with_a_call_that_never_returns(foreground, tmp_path):
    name = unique_name("fg-busy")
    proc = foreground(name)
    cluster = rh.cluster(name=name, launcher="local")
    block = rh.function(remote_code.block).to(cluster)
    started = tmp_path / "started"
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(block, str(started), str(tmp_path / "never"), 600)
        wait_until(started.exists, what="the call to start")
        worker = int(started.read_text())

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=CALL_TIMEOUT)  # the daemon does stop...
        with pytest.raises(rh.WorkerDiedError, match="stopped") as info:  # ...and its caller is told
            call.result(timeout=CALL_TIMEOUT)
        assert info.value.pid == int(started.read_text())
    wait_until(lambda: not running(worker), what="the worker to stop")
    assert not (cluster_dir(name) / "daemon.json").exists()


def test_foreground_daemon_refuses_a_second_daemon_on_its_port(foreground, tmp_path):
    """A port already in use is a clear failure at start, not a daemon that half-runs."""
    name = unique_name("fg-port")
    foreground(name)
    port = json.loads((cluster_dir(name) / "daemon.json").read_text())["port"]
    other = subprocess.run(
        [sys.executable, "-m", "tether.daemon", "--state-dir", str(tmp_path / "other"), "--port", str(port)],
        capture_output=True, text=True, timeout=CALL_TIMEOUT, check=False)
    assert other.returncode != 0
    assert "in use" in other.stderr
    assert not (tmp_path / "other" / "daemon.json").exists()


# -- the local launcher ------------------------------------------------------------------------


def test_local_launcher_starts_a_detached_daemon_on_demand_and_teardown_stops_it():
    name = unique_name("ondemand")
    state = cluster_dir(name)
    with local_cluster(name) as cluster:
        assert not cluster.is_up()
        assert daemons_of(state) == []

        remote_pid = rh.function(remote_code.pid).to(cluster)  # the first use brings it up
        worker = remote_pid()
        daemon = cluster.status()["pid"]
        assert cluster.is_up()
        assert daemons_of(state) == [daemon]
        assert os.getsid(daemon) == daemon != os.getsid(0)  # detached: its own session
        assert json.loads((state / "daemon.json").read_text())["pid"] == daemon

        cluster.teardown()
        assert not running(daemon)
        wait_until(lambda: not running(worker), what="the worker to stop")
        assert not (state / "daemon.json").exists()
        assert not cluster.is_up()

        # and it comes back on demand, fresh
        assert rh.function(remote_code.pid).to(cluster)() != worker
        assert cluster.status()["pid"] != daemon


def test_two_processes_bringing_a_cluster_up_at_once_get_one_daemon(tmp_path):
    name = unique_name("race")
    go = tmp_path / "go"
    script = textwrap.dedent("""
        import os, sys, time
        import tether
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.001)
        cluster = tether.cluster(name=sys.argv[1], launcher="local").up_if_not()
        print(cluster.client.health()["pid"])
    """)
    with local_cluster(name):
        procs = [subprocess.Popen([sys.executable, "-c", script, name, str(go)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        try:
            go.touch()
            outputs = [p.communicate(timeout=CALL_TIMEOUT) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
        pids = {int(out.strip()) for out, _ in outputs}
        assert len(pids) == 1
        assert daemons_of(cluster_dir(name)) == list(pids)


def test_daemon_killed_mid_call_is_a_connection_error_not_a_hang(tmp_path):
    name = unique_name("killed")
    with local_cluster(name) as cluster:
        block = rh.function(remote_code.block).to(cluster)
        daemon = cluster.status()["pid"]
        started = tmp_path / "started"
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(block, str(started), str(tmp_path / "never"), 600)
            wait_until(started.exists, what="the call to start")
            worker = int(started.read_text())
            os.kill(daemon, signal.SIGKILL)
            with pytest.raises(rh.ConnectionError) as info:
                call.result(timeout=CALL_TIMEOUT)
        assert name in str(info.value)
        wait_until(lambda: not running(worker), what="the worker to follow its daemon")

        # a handle that outlived its daemon: calls say it cannot be reached, up_if_not() restarts it
        with pytest.raises(rh.ConnectionError, match="cannot reach"):
            cluster.client.call("block", "call", (str(started), str(tmp_path / "never")))
        cluster.up_if_not()
        assert cluster.status()["pid"] != daemon
        # what was deployed came back from the dead daemon's manifest (test_restarts.py)
        (tmp_path / "released").touch()
        assert cluster.client.call("block", "call", (str(started), str(tmp_path / "released"))) != worker
        assert rh.function(remote_code.add).to(cluster)(1, 2) == 3


# -- a daemon of another version -----------------------------------------------------------------


def test_daemon_of_another_tether_release_that_speaks_this_protocol_serves_this_client(foreground):
    """Only the protocol has to match: a daemon of another tether release is used as it is."""
    name = unique_name("oldver")
    old = foreground(name, prelude="""
        import tether._version
        tether._version.__version__ = "0.0.1-other"
    """)
    with local_cluster(name) as cluster:
        cluster.up_if_not()
        health = cluster.client.health()
        assert health["tether"] == "0.0.1-other" and health["protocol"] == wire.PROTOCOL_VERSION
        assert rh.function(remote_code.add).to(cluster)(2, 3) == 5
        assert cluster.status()["pid"] == old.pid  # the very daemon that runs the other release

        # restart_server() puts this process's release there
        cluster.restart_server()
        old.wait(timeout=CALL_TIMEOUT)
        assert cluster.client.health()["tether"] == __version__
        assert rh.function(remote_code.add).to(cluster)(2, 3) == 5


def test_daemon_of_another_protocol_refuses_the_client_with_409(foreground):
    name = unique_name("oldproto")
    other = wire.PROTOCOL_VERSION + 1
    foreground(name, prelude=f"""
        import tether.protocol.wire
        tether.protocol.wire.PROTOCOL_VERSION = {other}
    """)
    state = cluster_dir(name)
    record = json.loads((state / "daemon.json").read_text())
    token = (state / "token").read_text().strip()

    client = DaemonClient(record["host"], record["port"], token, cluster=name)
    try:
        with pytest.raises(rh.VersionMismatchError) as info:
            client.health()
        assert f"protocol {other}" in str(info.value)
        assert f"protocol {wire.PROTOCOL_VERSION}" in str(info.value)
        with pytest.raises(rh.VersionMismatchError):
            client.call("anything", "call", (1,))
    finally:
        client.close()
    with httpx.Client(base_url=f"http://{record['host']}:{record['port']}", timeout=10,
                      headers={"Authorization": f"Bearer {token}"}) as h:
        resp = h.get("/health", headers={wire.VERSION_HEADER: str(wire.PROTOCOL_VERSION)})
        assert resp.status_code == 409
        assert resp.json()["daemon_protocol"] == other
        # curl sends no version header: it is served
        assert h.get("/health").json()["protocol"] == other

    with local_cluster(name) as cluster:
        with pytest.raises(rh.VersionMismatchError) as info:
            cluster.up_if_not()
        err = info.value
        assert f"protocol {other}" in str(err) and "restart_server()" in str(err)  # what and the fix
        assert (err.daemon_protocol, err.client_protocol) == (other, wire.PROTOCOL_VERSION)
        assert err.client_version == __version__ and err.cluster == name
