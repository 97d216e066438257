"""The test hosts themselves: a run killed with its hosts up leaves leftovers, and the next
session that takes the slot removes them all before making its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hosts
from process_helpers import running

HERE = Path(__file__).parents[1]  # tests/integration, where hosts.py is


def _netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_leftovers_of_a_killed_run_are_removed(test_hosts):
    program = ("import os, hosts\n"
               "f = hosts.HostFactory()\n"
               "[h] = f.create(1)\n"
               "print(f.slot, h.user, h.proc.pid, flush=True)\n"
               "os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", program], cwd=HERE, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(HERE)})
    assert proc.returncode == -9, proc.stderr
    slot, user, launcher_pid = proc.stdout.split()
    prefix = f"tth{slot}"
    assert f"{prefix}n0" in _netns()  # the killed run left its host behind...
    assert any(line.startswith(f"{user}:") for line in open("/etc/passwd"))
    sshd = int(Path(f"/run/tether-testhosts/slot{slot}/host0/sshd.pid").read_text())
    assert running(sshd)
    again = hosts.HostFactory()  # ...the next session in that slot starts clean
    try:
        assert again.slot == int(slot)
        assert f"{prefix}n0" not in _netns()
        assert not any(line.startswith(f"{user}:") for line in open("/etc/passwd"))
        assert not os.path.exists(f"/home/{user}")
        assert not running(sshd)
        [host] = again.create(1)
        assert host.ssh("whoami").stdout.strip() == host.user
    finally:
        again.close()
    assert f"{prefix}n" not in _netns()
    assert not any(line.startswith(prefix) for line in open("/etc/passwd"))
