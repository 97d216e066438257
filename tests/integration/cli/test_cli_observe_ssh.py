"""``tether calls``, ``logs --call``, ``status`` and ``dashboard`` of an SSH cluster (a test host
of the session): unsaved, found by its state dir; then saved, with a tunnel of the command's own."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest
import records_code
from cli_support import Lines, cli, cli_json, health

import tether as rh

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", autouse=True)
def own_home(tmp_path_factory):
    """This module's TETHER_HOME, shared by the CLI and this process's Python API."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TETHER_HOME", str(tmp_path_factory.mktemp("observe-ssh-home")))
        yield


def test_calls_logs_status_and_dashboard_of_an_ssh_cluster(ssh_hosts, ssh_cluster):
    cluster = ssh_cluster(ssh_hosts[0])
    chatty = rh.function(records_code.chatty).to(cluster, name=f"chatty-{uuid.uuid4().hex[:6]}")
    call_id = uuid.uuid4().hex
    cluster.client.call(chatty.name, "call", (2,), call_id=call_id)

    # Not saved: the CLI finds it by its state dir (the tunnel to its head daemon).
    assert [r["id"] for r in cli_json("calls", cluster.name, "--service", chatty.name)] == [call_id]
    logs = cli("logs", cluster.name, "--call", call_id[:8])
    assert logs.returncode == 0, logs
    assert logs.stdout == "line 0\nline 1\n"
    entry = {c["name"]: c for c in cli_json("status")["clusters"]}[cluster.name]
    assert (entry["status"], entry["launcher"], entry["nodes"]) == ("up", "ssh", [ssh_hosts[0].ip])
    assert chatty.name in {s["name"] for s in entry["services"]}
    # the node's daemon reports its workers' memory (read from /proc on the node, not here)
    assert all(isinstance(w["memory"], int) and w["memory"] > 1 << 20 for w in entry["workers"]), entry
    assert entry["workers"]

    files = cli("logs", cluster.name)  # its log files are on the node
    assert files.returncode == 1 and f"tether logs {cluster.name} --service" in files.stderr

    # Saved: `tether ssh` reaches the node; `tether dashboard` opens an SSH tunnel of its own
    # and keeps it open until Ctrl-C.
    cluster.save()
    whoami = cli("ssh", cluster.name, "--", "whoami")
    assert (whoami.returncode, whoami.stdout.strip()) == (0, ssh_hosts[0].user), whoami
    dash = Lines("dashboard", cluster.name, "--no-browser")
    try:
        url = dash.until(lambda line: line.startswith("http://"), timeout=30).strip()
        assert urlsplit(url).port != cluster.launcher.endpoint(cluster).port
        assert health(url)["cluster"] == cluster.name
    finally:
        dash.stop()
    assert dash.proc.returncode == 0, dash.proc.stderr.read()
