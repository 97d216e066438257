"""The ``local`` launcher: the embedded default, a daemon on this machine reached over loopback.

The daemon is started on demand, detached (own session), with its state in
``$TETHER_HOME/clusters/<name>/``: ``token`` (0600), ``daemon.json`` (pid, port, versions),
``daemon.pid``, ``daemon.log``, worker logs and env venvs. A file lock makes concurrent ``up()``
calls from several processes start one daemon.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.core.errors import LaunchError
from tether.core.launchers import local_limits
from tether.core.launchers.base import Endpoint, Launcher
from tether.core.paths import cluster_dir, ensure_token, locked, pid_alive, tail
from tether.core.plugins import hookimpl

if TYPE_CHECKING:
    from tether.core.cluster import Cluster

START_TIMEOUT = 60.0


class LocalLauncher(Launcher):
    name = "local"
    spec_keys = frozenset({"python", "port", "autostop_mins"})
    spec_keys |= {"cluster_host"}  # the address a multi-node head reaches this daemon on (ssh nodes)
    unsupported = {
        "rsync": "the local cluster is this machine: its files are already here",
        "ssh": "the local cluster is this machine: open a shell here",
        "ssh_tunnel": "the local cluster is this machine: its daemon is on loopback already",
        "install_local_packages": "the local cluster is this machine: install_packages() without "
                                  "from_local uses this machine's own package index",
    }

    # memory= and cpus=: the machine size the daemon's workers get (local_limits.py)
    spec_keys = spec_keys | local_limits.SPEC_KEYS

    def validate(self, spec: dict[str, Any]) -> None:
        super().validate(spec)
        local_limits.validate(spec)

    def _up(self, cluster: Cluster) -> Endpoint:
        state = cluster_dir(cluster.name)
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        with locked(state / "launch.lock"):
            endpoint = self._endpoint(cluster)
            if endpoint is not None and not local_limits.matches(state, cluster.spec):
                self._down(cluster)  # another machine size is another machine
                endpoint = None
            if endpoint is not None:
                return endpoint
            return self._start(cluster, state)

    def _start(self, cluster: Cluster, state: Path) -> Endpoint:
        token = ensure_token(state)
        (state / "daemon.json").unlink(missing_ok=True)
        local_limits.write(state, cluster.spec)
        python = cluster.spec.get("python") or sys.executable
        cmd = [python, "-m", "tether.daemon", "--state-dir", str(state), "--cluster", cluster.name,
               "--python", python, "--port", str(cluster.spec.get("port", 0))]
        if cluster.spec.get("autostop_mins") is not None:
            cmd += ["--autostop-mins", str(float(cluster.spec["autostop_mins"]))]
        if cluster.spec.get("cluster_host"):
            cmd += ["--cluster-host", str(cluster.spec["cluster_host"])]
        with open(state / "daemon.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=str(state))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            record = _read_record(state)
            if record and record.get("pid") == proc.pid:
                return Endpoint(record["host"], record["port"], token)
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
        raise LaunchError(
            f"the local daemon for cluster {cluster.name!r} did not start "
            f"({'exit code ' + str(proc.returncode) if proc.returncode is not None else 'timed out'}). "
            f"Last lines of {state / 'daemon.log'}:\n{tail(state / 'daemon.log')}",
            cluster=cluster.name)

    def _endpoint(self, cluster: Cluster) -> Endpoint | None:
        state = cluster_dir(cluster.name)
        record = _read_record(state)
        if not record or not _is_daemon(record.get("pid"), state):
            return None
        try:
            token = (state / "token").read_text().strip()
        except OSError:
            return None
        return Endpoint(record["host"], record["port"], token)

    def _down(self, cluster: Cluster) -> None:
        state = cluster_dir(cluster.name)
        record = _read_record(state)
        pid = record.get("pid") if record else None
        if not _is_daemon(pid, state):  # never signal a process that merely reused the pid
            for name in ("daemon.json", "daemon.pid"):
                (state / name).unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)  # the daemon stops its workers on the way out
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.02)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        for name in ("daemon.json", "daemon.pid"):
            (state / name).unlink(missing_ok=True)

    def set_autostop(self, cluster: Cluster, minutes: float | None) -> None:
        from tether.daemon.autostop import write_setting

        state = cluster_dir(cluster.name)
        if (state / "daemon.json").exists():
            write_setting(state, minutes)

    def status(self, cluster: Cluster) -> dict[str, Any]:
        state = cluster_dir(cluster.name)
        record = _read_record(state) or {}
        return {"up": _is_daemon(record.get("pid"), state), "state_dir": str(state), **record}


def _read_record(state: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state / "daemon.json").read_text())
    except (OSError, ValueError):
        return None


def _is_daemon(pid: Any, state: Path) -> bool:
    """Alive, and really this cluster's daemon: a stale daemon.json may name a reused pid."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return True  # no /proc (not Linux): trust the pid
    return b"tether.daemon" in argv and str(state).encode() in argv



@hookimpl
def tether_launchers() -> list[type[Launcher]]:
    return [LocalLauncher]
