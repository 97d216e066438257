"""A worker that stopped answering is named by ``cluster.status()`` and ``tether daemon status``:
calls in flight and no message for longer than TETHER_WORKER_STUCK_SECONDS (the daemon pings a
busy, quiet worker, so a long call that prints nothing is not taken for a stuck one)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import remote_code as rc
import timeout_code as tc
from process_helpers import wait_until

import tether as rh

pytestmark = pytest.mark.timeout(90)
STUCK = 1.5  # the daemon's threshold in these tests (seconds)


@pytest.fixture
def cluster(make_cluster, monkeypatch):
    monkeypatch.setenv("TETHER_WORKER_STUCK_SECONDS", str(STUCK))  # the daemon inherits it
    return make_cluster()


def worker(cluster, env_name: str) -> dict:
    return cluster.status()["envs"][env_name]["worker"]


def cli_status(cluster) -> str:
    tether = Path(sys.executable).with_name("tether")
    proc = subprocess.run([str(tether if tether.exists() else shutil.which("tether")), "daemon", "status",
                           "--cluster", cluster.name], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "250"}, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_a_busy_quiet_worker_is_not_stuck_and_a_stopped_one_is_named(cluster):
    name = f"stuck-{uuid.uuid4().hex[:6]}"
    spin = rh.function(tc.spin).to(cluster, env=rh.env(name=name))
    other = rh.function(rc.add).to(cluster, env=rh.env(name=f"other-{name}"))
    spin(0)
    # a call that runs three thresholds without a word: the daemon's pings keep it answering
    handle = spin.submit(3 * STUCK)
    time.sleep(2.5 * STUCK)
    assert worker(cluster, name)["in_flight"] >= 1
    assert "unresponsive" not in worker(cluster, name)
    assert handle.result(30) == "spun"

    pid = worker(cluster, name)["pid"]
    calls = [spin.submit(30) for _ in range(2)]
    time.sleep(0.2)
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: "unresponsive" in worker(cluster, name), 30, "the daemon to name the stopped worker")
        report = worker(cluster, name)["unresponsive"]
        assert report["pid"] == pid and report["calls"] == 2 and report["seconds"] >= STUCK
        assert "unresponsive" not in worker(cluster, f"other-{name}")
        assert other(1, 2) == 3  # the daemon and the other envs serve on
        shown = cli_status(cluster)
        assert "unresponsive" in shown and f"The worker of env {name!r} (pid {pid}) has not answered" in shown
    finally:
        os.kill(pid, signal.SIGCONT)
    for call in calls:
        call.cancel()
    wait_until(lambda: "unresponsive" not in worker(cluster, name), 30, "the worker to answer again")
    assert spin(0) == "spun"
    assert "unresponsive" not in cli_status(cluster)


def test_a_bad_threshold_falls_back_to_the_default(make_cluster, monkeypatch):
    monkeypatch.setenv("TETHER_WORKER_STUCK_SECONDS", "soon")
    cluster = make_cluster()
    add = rh.function(rc.add).to(cluster)
    assert add(1, 2) == 3  # the daemon started and serves; its log says what it used instead
    log = Path(cluster.status()["state_dir"], "daemon.log").read_text()
    assert "TETHER_WORKER_STUCK_SECONDS='soon' is not a number of seconds above 0: using 30" in log
