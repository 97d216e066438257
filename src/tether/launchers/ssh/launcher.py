"""The ``ssh`` launcher: your own machines, by address, with SSH credentials.

    rack = tether.cluster(name="rack", ips=["10.0.0.5", "10.0.0.6"],
                          ssh_creds={"ssh_user": "me", "ssh_private_key": "~/.ssh/id_ed25519"})
    rh.function(train).to(rack)

``up()`` brings every node up in parallel (see ``tether.launchers.ssh.bootstrap``: probe, install the
caller's exact tether into ``~/.tether/venv`` when its stamp differs, start the daemon on the
node's loopback), then opens an SSH tunnel from a local port to the head's daemon (the first
address). Machines are never created or destroyed: ``teardown()`` stops the daemons only.

What the caller keeps, in ``$TETHER_HOME/clusters/<name>/`` (0600): ``nodes.json`` (each node's
daemon record and token; a non-head node's record carries the SHA-256 of the TLS certificate
its cluster listener presents, which the head pins) and ``tunnels.json`` (the tunnel processes:
pid, local port, the daemon pid they serve). A tunnel is a detached ssh process that lives as long as its daemon, so later
processes reuse it: reattaching by name costs no SSH round trip while the cluster is up.

Addresses may carry a user and a port (``"me@10.0.0.5:2222"``) for machines that differ.
"""

from __future__ import annotations

import contextlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether._version import __version__
from tether.core.packaging import ImportSpec
from tether.errors import ConfigError, ConnectionError, LaunchError, TetherError
from tether.launchers.base import Endpoint, Launcher
from tether.launchers.local import REGISTRY_KEYS, registry_of, set_registry
from tether.launchers.progress import Progress
from tether.launchers.ssh import codesync, tunnels
from tether.launchers.ssh import openssh as ssh
from tether.launchers.ssh.bootstrap import Node
from tether.launchers.ssh.tunnels import SshTunnel
from tether.plugins import hookimpl
from tether.state import cluster_dir, locked, read_json, write_json, write_private

if TYPE_CHECKING:
    from tether.core.cluster import Cluster

CREDS_KEYS = frozenset({"ssh_user", "ssh_private_key", "password", "ssh_proxy_command",
                        "strict_host_key_checking"})
_ADDRESS = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\s\[\]]+)(?::(?P<port>\d+))?$")


def parse_address(entry: str, default_user: str | None, default_port: int) -> tuple[str, str | None, int]:
    match = _ADDRESS.match(entry.strip())
    if not match:
        raise ConfigError(f"bad address {entry!r} in ips: use 'host', 'user@host' or 'user@host:port'")
    host = match["host"].strip("[]")
    return host, match["user"] or default_user, int(match["port"] or default_port)


class SshLauncher(Launcher):
    name = "ssh"
    spec_keys = frozenset({"ips", "ssh_creds", "ssh_port", "autostop_mins", "install_from", "python"}) | REGISTRY_KEYS
    unsupported: dict[str, str] = {}

    # -- the definition ---------------------------------------------------------------------------

    def validate(self, spec: dict[str, Any]) -> None:
        super().validate(spec)
        ips = spec.get("ips")
        if isinstance(ips, str):
            ips = spec["ips"] = [ips]
        if not ips or not isinstance(ips, (list, tuple)) or not all(isinstance(i, str) and i for i in ips):
            raise ConfigError("an ssh cluster needs ips=[...]: the addresses of its machines (the first is the head)")
        spec["ips"] = list(ips)
        creds = spec.get("ssh_creds") or {}
        if not isinstance(creds, dict):
            raise ConfigError("ssh_creds must be a dict: {'ssh_user': ..., 'ssh_private_key': ..., 'password': ...}")
        unknown = set(creds) - CREDS_KEYS
        if unknown:
            raise ConfigError(f"ssh_creds does not take {', '.join(sorted(unknown))}; it takes {', '.join(sorted(CREDS_KEYS))}")
        key = creds.get("ssh_private_key")
        if key and not Path(key).expanduser().is_file():
            raise ConfigError(f"the ssh_private_key {key!r} does not exist on this machine")
        if str(creds.get("strict_host_key_checking", "accept-new")).lower() not in (
                "accept-new", "yes", "no", "true", "false"):
            raise ConfigError("strict_host_key_checking is 'accept-new' (the default), 'yes' (or True) or 'no'")
        port = spec.get("ssh_port", 22)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"ssh_port must be a port number, not {port!r}")
        if spec.get("install_from", "local") not in ("local", "index"):
            raise ConfigError("install_from is 'local' (wheels sent from this machine, the default) or "
                              "'index' (the node's own package index)")
        minutes = spec.get("autostop_mins")
        if minutes is not None and not isinstance(minutes, (int, float)):
            raise ConfigError("autostop_mins is a number of minutes (-1: never)")
        for entry in spec["ips"]:
            parse_address(entry, None, 22)
        registry_of(spec)

    def shared_endpoint(self, cluster: Cluster) -> dict[str, Any]:
        """The head's SSH address and its daemon's port on the head's loopback: a user it is shared
        with reaches it through an SSH tunnel of their own (with their own SSH credentials)."""
        records = (read_json(cluster_dir(cluster.name) / "nodes.json") or {}).get("nodes") or []
        if not records or self.endpoint(cluster) is None:
            raise ConfigError(f"cluster {cluster.name!r} is down: bring it up before saving how to reach it",
                              cluster=cluster.name)
        head = self.nodes(cluster)[0].target
        return {"ssh": {"host": head.host, "port": head.port, "user": head.user}, "daemon_port": records[0]["port"]}

    def config_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        # The password never goes into a saved config; up() keeps it in the cluster's 0600 state.
        creds = {k: v for k, v in (spec.get("ssh_creds") or {}).items() if k != "password"}
        return {**spec, "ssh_creds": creds} if "ssh_creds" in spec else dict(spec)

    def nodes(self, cluster: Cluster) -> list[Node]:
        creds = cluster.spec.get("ssh_creds") or {}
        password = creds.get("password")
        if password is None:
            with contextlib.suppress(OSError):
                password = (cluster_dir(cluster.name) / "ssh_password").read_text()
        key = creds.get("ssh_private_key")
        strict = str(creds.get("strict_host_key_checking", "accept-new")).lower()
        strict = {"true": "yes", "false": "accept-new"}.get(strict, strict)
        nodes = []
        for index, entry in enumerate(cluster.spec["ips"]):
            host, user, port = parse_address(entry, creds.get("ssh_user"), cluster.spec.get("ssh_port", 22))
            target = ssh.SshTarget(host=host, port=port, key=str(Path(key).expanduser()) if key else None,
                                   password=password, proxy_command=creds.get("ssh_proxy_command"),
                                   strict_host_key_checking=strict, cluster=cluster.name,
                                   **({"user": user} if user else {}))
            nodes.append(Node(index, target, cluster.name, cluster.spec.get("python")))
        return nodes

    def node_names(self, cluster: Cluster) -> list[str]:
        return [n.ip for n in self.nodes(cluster)]

    def node_address(self, cluster: Cluster, index: int) -> str:
        return parse_address(cluster.spec["ips"][index], None, 22)[0]

    # -- up -----------------------------------------------------------------------------------------

    def _up(self, cluster: Cluster) -> Endpoint:
        state = _state(cluster)
        with locked(state / "launch.lock"):
            endpoint = self._endpoint(cluster)
            if endpoint is not None:
                return endpoint
            with Progress(f"bringing up cluster {cluster.name!r}") as progress:
                records, started = self._bring_up(cluster, state, progress)
                progress.update("opening an SSH tunnel to the head's daemon")
                try:
                    endpoint = self._open(cluster, 0, records[0])
                    self._register(cluster, endpoint, records)
                    wanted = registry_of(cluster.spec)
                    if wanted is not None:  # the head stores it: its next daemon starts shared too
                        set_registry(cluster, endpoint, *wanted)
                except BaseException:
                    _stop_all(started)  # leave nothing half-started
                    raise
                progress.step(f"cluster {cluster.name!r} is up: {len(records)} node(s), head daemon "
                              f"reached through 127.0.0.1:{endpoint.port}")
            return endpoint

    def _bring_up(self, cluster: Cluster, state: Path, progress: Progress) -> tuple[list[dict[str, Any]], list[Node]]:
        """Every node probed, installed where needed, its daemon started: (records, started now)."""
        password = (cluster.spec.get("ssh_creds") or {}).get("password")
        if password is not None:
            write_private(state / "ssh_password", password)
        nodes = self.nodes(cluster)
        install_from = cluster.spec.get("install_from", "local")

        def look(node: Node):
            # Every node is checked before anything is installed or started on any of them.
            progress.update(f"{node.target.label}: connecting")
            probe = node.probe()
            node.check_daemon(probe)
            needs = probe.daemon is None and not _current(probe)
            return probe, node.choose_python(probe) if needs else None

        looks = _each(nodes, look)
        probes = [probe for probe, _ in looks]

        def install(node: Node) -> None:
            python = looks[node.index][1]
            if python is None:
                return
            begin = time.monotonic()
            progress.update(f"{node.target.label}: installing tether into ~/.tether/venv")
            node.install(probes[node.index], python, install_from)
            progress.step(f"{node.target.label}: installed tether {__version__} with {python.describe}",
                          time.monotonic() - begin)

        _each(nodes, install)
        started: list[Node] = []

        def start(node: Node) -> dict[str, Any]:
            probe = probes[node.index]
            if probe.daemon is not None and probe.token and (node.index == 0 or _serves_head(probe.daemon)):
                return {**probe.daemon, "token": probe.token, "home": probe.home}
            begin = time.monotonic()
            record = node.start(cluster.spec.get("autostop_mins"))
            started.append(node)
            progress.step(f"{node.target.label}: daemon started on the node's port {record['port']}",
                          time.monotonic() - begin)
            return {**record, "home": probe.home}

        try:
            records = _each(nodes, start)
            write_json(state / "nodes.json", {"nodes": [{**r, "ip": n.ip, "label": n.target.label}
                                                        for n, r in zip(nodes, records, strict=True)]})
        except BaseException:
            _stop_all(started)  # leave nothing half-started
            raise
        return records, started

    def _open(self, cluster: Cluster, index: int, record: dict[str, Any]) -> Endpoint:
        """A live tunnel to node ``index``'s daemon (reused when one runs), as an Endpoint."""
        node = self.nodes(cluster)[index]
        return tunnels.open_to(_state(cluster), node.target, node.ip, index, record)

    def _endpoint(self, cluster: Cluster) -> Endpoint | None:
        return self._node_endpoint(cluster, 0)

    def _node_endpoint(self, cluster: Cluster, index: int) -> Endpoint | None:
        state = cluster_dir(cluster.name)
        nodes = (read_json(state / "nodes.json") or {}).get("nodes") or []
        if len(nodes) != len(cluster.spec["ips"]) or index >= len(nodes):
            return None
        return tunnels.known(state, nodes[index])

    def node_endpoint(self, cluster: Cluster, index: int) -> Endpoint:
        """The endpoint of node ``index``'s daemon (brings the cluster up; opens its tunnel)."""
        if index == 0:
            return self.up(cluster)
        endpoint = self._node_endpoint(cluster, index)
        if endpoint is not None:
            return endpoint
        self.up(cluster)
        state = _state(cluster)
        with locked(state / "launch.lock"):
            records = self._records(cluster)
            node = self.nodes(cluster)[index]
            probe = node.probe()  # its daemon may have stopped since (autostop) while the head ran
            node.check_daemon(probe)
            if probe.daemon is not None and probe.token and _serves_head(probe.daemon):
                record = {**probe.daemon, "token": probe.token, "home": probe.home}
            else:
                record = {**node.start(cluster.spec.get("autostop_mins")), "home": probe.home}
            changed = records[index].get("pid") != record.get("pid")
            records[index] = {**record, "ip": node.ip, "label": node.target.label}
            write_json(state / "nodes.json", {"nodes": records})
            if changed:  # the head must forward to the node's new daemon
                head = self._node_endpoint(cluster, 0)
                if head is not None:
                    self._register(cluster, head, records)
        return self._open(cluster, index, record)

    def _register(self, cluster: Cluster, head: Endpoint, records: list[dict[str, Any]]) -> None:
        """Tell the head daemon where the other nodes' daemons listen, and their tokens: objects
        placed on a node are deployed and called through the head."""
        if len(records) < 2:
            return
        from tether.client.daemon_client import DaemonClient

        nodes = []
        for index, record in enumerate(records[1:], start=1):
            address = record.get("cluster_address")
            if not address:
                raise LaunchError(f"node {index} of {cluster.name!r} ({record.get('ip')}) runs a daemon "
                                  "that does not listen for the head; cluster.restart_server() restarts "
                                  "it", cluster=cluster.name, node=record.get("ip"))
            nodes.append({"index": index, "host": address[0], "port": address[1], "token": record["token"],
                          "label": record.get("label") or record.get("ip"),
                          "fingerprint": record.get("fingerprint") if record.get("cluster_tls") else None})
        minutes = cluster.spec.get("autostop_mins")
        ping = max(1.0, float(minutes) * 20) if isinstance(minutes, (int, float)) and minutes > 0 else None
        client = DaemonClient(head.host, head.port, head.token, cluster=cluster.name)
        try:
            client.request_json("POST", "/_tether/nodes", body={"nodes": nodes, "ping_seconds": ping})
        finally:
            client.close()

    def rotate_token(self, cluster: Cluster) -> None:
        """New tokens on every node: the head rotates its nodes' (and switches its node table to
        them) then its own; the new tokens go into ``nodes.json``. A node that could not rotate
        keeps its old token (everything else is rotated) and is a ConnectionError naming it."""
        from tether.client.daemon_client import DaemonClient

        self._records(cluster)  # a ConnectionError when it was never brought up from here
        head = self.up(cluster)  # the tunnel to the head (reopened if needed)
        state = _state(cluster)
        with locked(state / "launch.lock"):
            client = DaemonClient(head.host, head.port, head.token, cluster=cluster.name)
            try:
                answer = client.request_json("POST", "/_tether/token")
            except ConnectionError:  # the answer was lost: the daemons may have rotated
                with contextlib.suppress(TetherError):
                    self._reread_tokens(cluster, state)
                raise
            finally:
                client.close()
            records = self._records(cluster)
            records[0]["token"] = answer["token"]
            for node in answer.get("nodes") or []:
                records[int(node["index"])]["token"] = node["token"]
            write_json(state / "nodes.json", {"nodes": records})
        failed = answer.get("failed") or []
        if failed:
            first = records[int(failed[0]["index"])]
            raise ConnectionError(
                f"rotated the tokens of cluster {cluster.name!r} except on {len(failed)} node(s): "
                + "; ".join(str(f["error"]) for f in failed)
                + " Those nodes keep their old token (the head still uses it); rotate again once they "
                "answer.", cluster=cluster.name, node=first.get("ip"))

    def _reread_tokens(self, cluster: Cluster, state: Path) -> None:
        """The tokens the nodes' daemons hold now, from their token files, into ``nodes.json``."""
        records = self._records(cluster)
        probes = _each(self.nodes(cluster), lambda n: n.probe())
        for record, probe in zip(records, probes, strict=True):
            if probe.daemon is not None and probe.daemon.get("pid") == record.get("pid") and probe.token:
                record["token"] = probe.token
        write_json(state / "nodes.json", {"nodes": records})

    def _records(self, cluster: Cluster) -> list[dict[str, Any]]:
        nodes = (read_json(cluster_dir(cluster.name) / "nodes.json") or {}).get("nodes")
        if not nodes:
            raise ConnectionError(f"cluster {cluster.name!r} is not up: call up_if_not() first", cluster=cluster.name)
        return nodes

    # -- down ---------------------------------------------------------------------------------------

    def _down(self, cluster: Cluster) -> None:
        state = cluster_dir(cluster.name)
        nodes = self.nodes(cluster)
        errors: dict[int, BaseException] = {}

        def stop(node: Node) -> None:
            try:
                node.stop()
            except TetherError as exc:
                errors[node.index] = exc

        _each(nodes, stop)
        tunnels.stop_all(state)
        for node in nodes:
            with contextlib.suppress(TetherError, OSError):
                ssh.close_master(node.target)
        (state / "nodes.json").unlink(missing_ok=True)
        if errors:
            first = errors[min(errors)]
            raise ConnectionError(
                f"could not stop the daemon of every node of {cluster.name!r}: "
                + "; ".join(f"node {i}: {e}" for i, e in sorted(errors.items()))
                + ". Their daemons may still run; teardown() again once they are reachable.",
                cluster=cluster.name, node=getattr(first, "node", None)) from first

    # -- code, files, shells ---------------------------------------------------------------------

    def sync_code(self, cluster: Cluster, spec: ImportSpec) -> ImportSpec:
        """rsync the project of ``spec`` to every node; ``spec`` with paths on the head."""
        root = codesync.sync_root(spec)
        if root is None:
            return spec
        records = self._records(cluster)
        dest = codesync.remote_dir(cluster.name, root)
        begin = time.monotonic()
        results = _each(self.nodes(cluster), lambda n: codesync.sync(
            n.target, root, dest, epoch=str(records[n.index].get("pid"))))
        cluster.last_sync = results
        sent = [r for r in results if r.changed]
        if sent:
            with Progress(f"syncing {root}") as progress:
                count = max(len(r.files) + len(r.deleted) for r in sent)
                progress.step(f"synced {root} to {len(sent)} node(s): {count} file(s) changed",
                              time.monotonic() - begin)
        # "~": each node's worker expands it to its own user's home (nodes may have other users)
        return codesync.remap(spec, root, "~", cluster.name)

    def push_code(self, cluster: Cluster, root: Path, node: int) -> str:
        """rsync the folder ``root`` to node ``node`` as a deploy syncs a project; its path there
        (``~/...``), for ``cluster.notebook(sync_package_on_close=...)``."""
        dest = codesync.remote_dir(cluster.name, root)
        codesync.sync(self.nodes(cluster)[node].target, root, dest)
        return f"~/{dest}"

    def pull_code(self, cluster: Cluster, root: Path, node: int) -> None:
        """rsync back what changed in ``push_code``'s folder on node ``node`` into ``root`` (nothing
        is deleted here)."""
        target = self.nodes(cluster)[node].target
        ssh.run_rsync(target, ["-rlt", "--exclude=.ipynb_checkpoints/", "--exclude=__pycache__/",
                               f"{target.host}:{codesync.remote_dir(cluster.name, root)}/", f"{root}/"],
                      what=f"copy {root.name} back")

    def install_local_packages(self, cluster: Cluster, reqs: list[str], indices: list[int]) -> None:
        """``install_packages(..., from_local=True)``: wheels fetched here, installed there."""
        nodes = self.nodes(cluster)
        with Progress(f"installing {' '.join(reqs)}") as progress:
            def one(index: int) -> None:
                begin = time.monotonic()
                progress.update(f"{nodes[index].target.label}: installing {' '.join(reqs)}")
                nodes[index].install_packages(reqs)
                progress.step(f"{nodes[index].target.label}: installed {' '.join(reqs)}", time.monotonic() - begin)

            _each([nodes[i] for i in indices], lambda n: one(n.index))

    def rsync(self, cluster: Cluster, source: str, dest: str, up: bool = True, node: Any = None,
              contents: bool = False, filter_options: str | None = None) -> None:
        indices = self.select(cluster, node)
        if not up and len(indices) > 1:
            raise ConfigError("rsync down (up=False) takes one node, not 'all'")
        nodes = self.nodes(cluster)
        if contents and not source.endswith("/"):
            source += "/"
        extra = filter_options.split() if filter_options else []

        def copy(n: Node) -> None:
            src, dst = (source, f"{n.ip}:{dest}") if up else (f"{n.ip}:{source}", dest)
            ssh.run_rsync(n.target, ["-rlpt", *extra, src, dst], what=f"rsync {source} -> {dest}")

        _each([nodes[i] for i in indices], copy)

    def ssh(self, cluster: Cluster, node: Any = None, command: str | None = None) -> int:
        indices = self.select(cluster, node)
        if len(indices) != 1:
            raise ConfigError("ssh() opens a shell on one node, not 'all'")
        return ssh.interactive(self.nodes(cluster)[indices[0]].target, command)

    def ssh_tunnel(self, cluster: Cluster, local_port: int, remote_port: int, node: Any = None) -> SshTunnel:
        indices = self.select(cluster, node)
        if len(indices) != 1:
            raise ConfigError("ssh_tunnel() forwards to one node, not 'all'")
        return tunnels.user_tunnel(_state(cluster), self.nodes(cluster)[indices[0]].target, local_port, remote_port)

    def set_autostop(self, cluster: Cluster, minutes: float | None) -> None:
        _each(self.nodes(cluster), lambda n: n.set_autostop(minutes))

    def node_status(self, cluster: Cluster) -> list[dict[str, Any]]:
        def look(node: Node) -> dict[str, Any]:
            probe = node.probe()
            daemon = probe.daemon or {}
            return {"index": node.index, "ip": node.ip, "user": node.target.user, "up": bool(daemon),
                    "pid": daemon.get("pid"), "port": daemon.get("port"), "tether": daemon.get("tether"),
                    "venv": probe.stamp}

        return _each(self.nodes(cluster), look)


def _stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        with contextlib.suppress(TetherError):
            node.stop()


def _serves_head(daemon: dict[str, Any]) -> bool:
    """Whether a non-head node's running daemon listens for its head as this tether expects: on
    its cluster address, saying whether that listener speaks TLS (older daemons do not say, and
    never do: they are restarted)."""
    return bool(daemon.get("cluster_address")) and "cluster_tls" in daemon


def _current(probe) -> bool:
    from tether.launchers.ssh.bootstrap import current

    return current(probe.stamp)


def _each(nodes: list[Node], fn) -> list[Any]:
    """``fn(node)`` for every node in parallel; the first failure (in node order) is raised after
    all finished, with the other nodes' failures as notes."""
    if len(nodes) == 1:
        return [fn(nodes[0])]
    with ThreadPoolExecutor(max_workers=min(16, len(nodes)), thread_name_prefix="tether-ssh") as pool:
        futures = [pool.submit(fn, n) for n in nodes]
    failures = [(n, f.exception()) for n, f in zip(nodes, futures, strict=True) if f.exception() is not None]
    if failures:
        first = failures[0][1]
        for node, exc in failures[1:]:
            first.add_note(f"also node {node.index} ({node.target.label}): {exc}")
        raise first
    return [f.result() for f in futures]


def _state(cluster: Cluster) -> Path:
    state = cluster_dir(cluster.name)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    return state


@hookimpl
def tether_launchers() -> list[type[Launcher]]:
    return [SshLauncher]


__all__ = ["SshLauncher", "SshTunnel", "LaunchError"]
