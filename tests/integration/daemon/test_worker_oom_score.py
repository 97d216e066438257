"""A worker is the kernel OOM killer's first choice, before its daemon (issue 12).

On a machine (or a memory cgroup, as a testcloud instance's) that runs out of memory, the kernel may
kill twice while the first victim's memory is being freed; the daemon must not be the second: it
reports the worker's death as an OOM and serves on. Workers therefore raise their own OOM score.
"""

from __future__ import annotations

import sys

import pytest

import tether as rh
from tether.daemon.limits import WORKER_OOM_SCORE_ADJ

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="oom_score_adj is Linux's")


CODE = """
import os

def oom_score():
    with open(f"/proc/{os.getpid()}/oom_score_adj") as f:
        return int(f.read())
"""


def test_workers_go_before_their_daemon(make_cluster, project):
    import importlib

    name = project.module_name("oomscore")
    project.write(f"{name}.py", CODE)
    cluster = make_cluster()
    worker = rh.function(importlib.import_module(name).oom_score).to(cluster)()
    daemon = cluster.status().get("pid")
    assert worker == WORKER_OOM_SCORE_ADJ
    if daemon:
        with open(f"/proc/{daemon}/oom_score_adj") as f:
            assert int(f.read()) < worker


def test_commands_the_daemon_runs_go_before_it_too(make_cluster):
    """``run`` commands (and installs) are the daemon's children as workers are: the kernel's OOM
    killer takes them first (``children.OOM_SCORE_ADJ``)."""
    cluster = make_cluster()
    [(code, out, _err)] = cluster.run(["cat /proc/self/oom_score_adj"])
    assert code == 0 and int(out) == WORKER_OOM_SCORE_ADJ
