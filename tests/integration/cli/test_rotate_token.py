"""``tether daemon rotate-token``, run as the real console script against a real local daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import remote_code

import tether as rh
from tether import state
from tether.client.daemon_client import DaemonClient

TETHER = Path(sys.executable).with_name("tether")
if not TETHER.exists():
    TETHER = Path(shutil.which("tether") or TETHER)

pytestmark = pytest.mark.timeout(120)


def tether_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["TETHER_HOME"] = str(state.tether_home())
    return subprocess.run([str(TETHER), *args], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def test_rotate_token_help_explains_it():
    proc = tether_cli("daemon", "rotate-token", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for words in ("new bearer token", "refuse the old one", "0600", "SSH cluster", "up_if_not()", "--cluster"):
        assert words in text, words
    assert "rotate-token" in tether_cli("daemon", "--help").stdout


def test_rotate_token_of_a_running_local_cluster(make_cluster):
    cluster = make_cluster()
    add = rh.function(remote_code.square).to(cluster)
    folder = state.cluster_dir(cluster.name)
    endpoint = cluster.launcher.endpoint(cluster)
    old = state.read_token(folder)

    proc = tether_cli("daemon", "rotate-token", "--cluster", cluster.name)

    assert proc.returncode == 0, proc.stderr
    assert "Rotated the token" in proc.stdout and str(folder / "token") in proc.stdout
    assert state.read_token(folder) != old
    stale = DaemonClient(endpoint.host, endpoint.port, old, cluster.name)
    with pytest.raises(rh.AuthenticationError, match="was rotated"):
        stale.health()
    with pytest.raises(rh.AuthenticationError, match="was rotated"):  # this process held the old one
        add(4)
    cluster.up_if_not()
    assert add(4) == 16


def test_rotate_token_of_an_unknown_cluster_is_an_error():
    name = f"never-{uuid.uuid4().hex[:6]}"
    proc = tether_cli("daemon", "rotate-token", "--cluster", name)
    assert proc.returncode == 1
    assert "is not running" in proc.stderr and "Traceback" not in proc.stderr
    assert not state.cluster_dir(name).exists()  # nothing made for a typo
