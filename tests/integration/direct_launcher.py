"""A launcher for the tests of a daemon reached over the network without a tunnel (as the SkyPilot
and Kubernetes launchers will reach theirs): it starts ``python -m tether.daemon --host 127.0.0.2
--tls on`` and hands out the daemon's record as an ``Endpoint`` with its certificate's fingerprint.

Registered with tether's plugin manager the way a third-party launcher would be (its hook).
``pin=`` in the spec overrides the fingerprint the endpoint carries (a wrong pin).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tether import state
from tether.launchers.base import Endpoint, Launcher
from tether.plugins import get_plugin_manager, hookimpl

NAME = "direct-tls-test"
HOST = "127.0.0.2"  # loopback, but another address than the local launcher's: --tls on forces TLS


class DirectLauncher(Launcher):
    name = NAME
    spec_keys = frozenset({"state_dir", "pin"})

    def _folder(self, cluster) -> Path:
        return Path(cluster.spec["state_dir"])

    def _endpoint(self, cluster) -> Endpoint | None:
        record = state.read_daemon_record(self._folder(cluster))
        if not record or not state.pid_alive(record.get("pid")):
            return None
        return Endpoint(record["host"], record["port"], state.read_token(self._folder(cluster)) or "",
                        cluster.spec.get("pin") or record.get("fingerprint"))

    def _up(self, cluster) -> Endpoint:
        endpoint = self._endpoint(cluster)
        if endpoint is not None:
            return endpoint
        folder = self._folder(cluster)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(folder / "daemon.log", "ab") as log:
            subprocess.Popen([sys.executable, "-m", "tether.daemon", "--state-dir", str(folder), "--cluster",
                              cluster.name, "--host", HOST, "--tls", "on"], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            endpoint = self._endpoint(cluster)
            if endpoint is not None:
                return endpoint
            time.sleep(0.02)
        raise RuntimeError(f"the direct daemon did not start:\n{state.tail(folder / 'daemon.log')}")

    def _down(self, cluster) -> None:
        record = state.read_daemon_record(self._folder(cluster)) or {}
        pid = record.get("pid")
        if state.pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while state.pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)


class _Plugin:
    @hookimpl
    def tether_launchers(self):
        return [DirectLauncher]


_plugin = _Plugin()


def register() -> None:
    pm = get_plugin_manager()
    if not pm.is_registered(_plugin):
        pm.register(_plugin, name=NAME)
