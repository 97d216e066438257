"""SSH tunnels of an SSH cluster: to each node's daemon (kept), and the ones users ask for.

A tunnel to a daemon is a detached ``ssh -L`` process that lives as long as that daemon
(``watch_pid``), recorded in ``tunnels.json`` in the cluster's state dir (0600: its pid, local
port, and the daemon pid it serves), so later processes reuse it: reattaching by name costs no
SSH round trip while the cluster is up. A record whose daemon changed, or whose process is gone,
is not an endpoint.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tether.errors import ConnectionError
from tether.launchers.base import Endpoint
from tether.launchers.ssh import openssh as ssh
from tether.state import locked, read_json, write_json

TUNNELS = "tunnels.json"
_lock = threading.Lock()


def _endpoint(local_port: int, record: dict[str, Any]) -> Endpoint:
    # plain HTTP: the tunnel ends at the daemon's loopback listener (TLS is for the others)
    return Endpoint("127.0.0.1", local_port, record["token"])


def known(state: Path, record: dict[str, Any]) -> Endpoint | None:
    """The endpoint of the recorded tunnel to the daemon of ``record`` (a node's daemon record),
    if that tunnel runs and serves that very daemon."""
    tunnel = (read_json(state / TUNNELS) or {}).get(record["ip"]) or {}
    if tunnel.get("daemon_pid") != record.get("pid") or not ssh.is_tunnel(tunnel.get("pid"), tunnel.get("local_port", 0)):
        return None
    return _endpoint(tunnel["local_port"], record)


def open_to(state: Path, target: ssh.SshTarget, ip: str, index: int, record: dict[str, Any]) -> Endpoint:
    """A live tunnel to the daemon of ``record`` on node ``index`` (reused when one runs)."""
    with _lock, locked(state / "tunnels.lock"):
        tunnels = read_json(state / TUNNELS) or {}
        found = tunnels.get(ip) or {}
        if found.get("daemon_pid") == record["pid"] and ssh.is_tunnel(found.get("pid"), found.get("local_port", 0)):
            return _endpoint(found["local_port"], record)
        if ssh.is_tunnel(found.get("pid"), found.get("local_port", 0)):
            ssh.stop_process(found["pid"])  # it serves a daemon that is gone
        log = state / f"tunnel-{index}.log"
        for attempt in range(3):
            port = ssh.free_port()
            log.write_bytes(b"")
            proc = ssh.start_tunnel(target, port, record["port"], log, watch_pid=record["pid"])
            try:
                ssh.wait_for_tunnel(target, proc, port, log)
                break
            except ConnectionError:
                if proc.poll() is None:
                    proc.kill()
                if attempt == 2 or "address already in use" not in log.read_text(errors="replace").lower():
                    raise
        tunnels[ip] = {"pid": proc.pid, "local_port": port, "daemon_pid": record["pid"],
                       "remote_port": record["port"]}
        write_json(state / TUNNELS, tunnels)
    return _endpoint(port, record)


def stop_all(state: Path) -> None:
    """Stop every recorded tunnel to the cluster's daemons, and forget them."""
    for tunnel in (read_json(state / TUNNELS) or {}).values():
        if ssh.is_tunnel(tunnel.get("pid"), tunnel.get("local_port", 0)):
            ssh.stop_process(tunnel["pid"])
    (state / TUNNELS).unlink(missing_ok=True)


class SshTunnel:
    """A forward from ``127.0.0.1:local_port`` to ``remote_port`` on a node; ``close()`` ends it."""

    def __init__(self, proc, local_port: int, remote_port: int, host: str) -> None:
        self.proc, self.local_port, self.remote_port, self.host = proc, local_port, remote_port, host

    def close(self) -> None:
        ssh.stop_process(self.proc.pid)
        self.proc.poll()

    def __enter__(self) -> SshTunnel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SshTunnel 127.0.0.1:{self.local_port} -> {self.host}:{self.remote_port}>"


def user_tunnel(state: Path, target: ssh.SshTarget, local_port: int, remote_port: int) -> SshTunnel:
    """``cluster.ssh_tunnel(...)``: a forward the caller owns (``local_port`` 0: a free one)."""
    local_port = local_port or ssh.free_port()
    log = state / f"user-tunnel-{local_port}.log"
    log.write_bytes(b"")
    proc = ssh.start_tunnel(target, local_port, remote_port, log)
    try:
        ssh.wait_for_tunnel(target, proc, local_port, log)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        raise
    return SshTunnel(proc, local_port, remote_port, target.host)
