"""Autostop on the local launcher: a real daemon stops itself once idle (and not before)."""

from __future__ import annotations

import json

from process_helpers import running, wait_until

from tether.state import cluster_dir


def _pid(cluster) -> int:
    return json.loads((cluster_dir(cluster.name) / "daemon.json").read_text())["pid"]


def test_an_idle_daemon_stops_itself(make_cluster):
    cluster = make_cluster(autostop_mins=0.03)  # ~2 s
    pid = _pid(cluster)
    [(code, _, _)] = cluster.run_bash("sleep 3")  # in flight longer than the autostop: not idle
    assert code == 0 and running(pid)
    wait_until(lambda: not running(pid), timeout=30, what="the idle daemon to stop")
    assert not (cluster_dir(cluster.name) / "daemon.json").exists()
    assert not cluster.is_up()


def test_autostop_can_be_set_on_a_running_daemon(make_cluster):
    cluster = make_cluster()
    pid = _pid(cluster)
    assert cluster.status()["autostop_mins"] == -1
    cluster.autostop_mins = 0.02
    wait_until(lambda: not running(pid), timeout=30, what="the daemon to pick up its new autostop")
