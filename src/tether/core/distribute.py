"""Existing distributed engines across a cluster's nodes: ``fn.distribute("pytorch" | "ray")``.

tether schedules nothing itself across nodes; it starts what these engines need and gets out of
the way:

    train = rh.function(train).to(rack).distribute("pytorch", num_nodes=2, procs_per_node=1)
    results = train(epochs=3)        # one result per rank, in rank order

    job = rh.function(job).to(rack).distribute("ray")
    job()                            # runs on the head; ray.remote work spreads over every node

**pytorch**: one worker process per rank (an env of its own per rank, placed on its node), each
with ``MASTER_ADDR`` (the head's address), ``MASTER_PORT`` (a free port on the head), ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``NODE_RANK`` and the interface that carries
the node's address in ``GLOO_SOCKET_IFNAME`` / ``NCCL_SOCKET_IFNAME``; the function calls
``torch.distributed.init_process_group()`` as usual (gloo on CPU, nccl where GPUs are). A call
runs on every rank at once; when one rank fails, the others are stopped (their workers restart:
a collective would wait for the failed rank forever) and its error is raised with ``rank``.

**ray**: ``ray start`` on every node (the head first), with the interpreter of the cluster's
default env, which must have ray (``cluster.install_packages(["ray==..."])``); the function
runs on the head with ``RAY_ADDRESS`` set, so ``ray.init()`` (or the first ``ray.remote`` call)
joins that cluster. ``shutdown()`` runs ``ray stop`` on every node.
"""

from __future__ import annotations

import json
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from tether.core.images import Env
from tether.errors import ConfigError, LaunchError, TetherError

if TYPE_CHECKING:
    from tether.core.cluster import Cluster
    from tether.core.function import Function
    from tether.core.stubs import RemoteFunction

KINDS = ("pytorch", "ray")
RAY_PORT = 6379

_FREE_PORT = ("import socket; s = socket.socket(); s.bind(('', 0)); print(s.getsockname()[1])")


class DistributedFunction:
    """A deployed function run by a distributed engine across the cluster's nodes."""

    def __init__(self, fn: RemoteFunction, kind: str, num_nodes: int | None = None, procs_per_node: int = 1,
                 port: int | None = None, ray_start_args: list[str] | None = None) -> None:
        if kind not in KINDS:
            raise ConfigError(f"distribute() takes {' or '.join(map(repr, KINDS))}, not {kind!r}")
        if not isinstance(procs_per_node, int) or procs_per_node < 1:
            raise ConfigError("procs_per_node must be a positive number of processes")
        self.fn, self.kind, self.cluster = fn, kind, fn.system
        nodes = len(self.cluster.ips)
        self.num_nodes = nodes if num_nodes is None else num_nodes
        if not isinstance(self.num_nodes, int) or not 1 <= self.num_nodes <= nodes:
            raise ConfigError(f"num_nodes={num_nodes!r}: cluster {self.cluster.name!r} has {nodes} node(s)",
                              cluster=self.cluster.name)
        self.procs_per_node = procs_per_node
        self.port = port
        self.ray_start_args = list(ray_start_args or [])
        self._ranks: list[RemoteFunction] | None = None
        self._ray: RemoteFunction | None = None

    @property
    def world_size(self) -> int:
        return self.num_nodes * self.procs_per_node

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "ray":
            return self._ray_function()(*args, **kwargs)
        return self._run_ranks(args, kwargs)

    def __repr__(self) -> str:
        return (f"<DistributedFunction {self.fn.name!r} {self.kind} on {self.cluster.name!r}: "
                f"{self.num_nodes} node(s) x {self.procs_per_node}>")

    # -- pytorch -------------------------------------------------------------------------------

    def ranks(self) -> list[RemoteFunction]:
        """The per-rank services (deployed on first use)."""
        if self._ranks is None:
            cluster = self.cluster
            master = cluster.launcher.node_address(cluster, 0)
            port = self.port or _free_port(cluster, 0)
            base = self.fn.env or Env()
            ranks = []
            for node in range(self.num_nodes):
                ifname = _interface(cluster, node)
                for local in range(self.procs_per_node):
                    rank = node * self.procs_per_node + local
                    env_vars = {**(base.env_vars or {}), "MASTER_ADDR": master, "MASTER_PORT": str(port),
                                "WORLD_SIZE": str(self.world_size), "RANK": str(rank),
                                "LOCAL_RANK": str(local), "LOCAL_WORLD_SIZE": str(self.procs_per_node),
                                "NODE_RANK": str(node)}
                    if ifname:
                        env_vars.update(GLOO_SOCKET_IFNAME=ifname, NCCL_SOCKET_IFNAME=ifname)
                    env = Env(reqs=base.reqs, env_vars=env_vars, name=f"{self.fn.name}-rank{rank}",
                              working_dir=base.working_dir, python=base.python, compute={"node_idx": node})
                    ranks.append(self._copy().to(cluster, env=env, name=f"{self.fn.name}-rank{rank}",
                                                 stream_logs=self.fn.stream_logs, timeout=self.fn.timeout))
            self._ranks = ranks
        return self._ranks

    def _run_ranks(self, args: tuple, kwargs: dict) -> list[Any]:
        ranks = self.ranks()
        handles = [rank.submit(*args, **kwargs) for rank in ranks]
        futures = [h._future for h in handles]  # noqa: SLF001 - our own handle
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [i for i, f in enumerate(futures) if f in done and f.exception() is not None]
        if not failed:
            return [f.result() for f in futures]
        first = failed[0]
        for index, handle in enumerate(handles):  # the others would wait for it forever
            if futures[index] in pending:
                try:
                    handle.cancel(force=True)
                except TetherError:
                    pass
        wait(futures, timeout=60)
        exc = futures[first].exception()
        try:
            exc.rank = first  # type: ignore[union-attr]
            exc.add_note(f"raised by rank {first} of {self.world_size} ({self.fn.name}.distribute"  # type: ignore[union-attr]
                         f"('pytorch')); the other ranks were stopped")
        except Exception:  # noqa: BLE001 - exceptions with __slots__ cannot take attributes
            pass
        raise exc  # type: ignore[misc]

    # -- ray -------------------------------------------------------------------------------------

    def _ray_function(self) -> RemoteFunction:
        if self._ray is None:
            cluster = self.cluster
            head = cluster.launcher.node_address(cluster, 0)
            port = self.port or RAY_PORT
            address = f"{head}:{port}"
            _ray_start(cluster, 0, ["--head", f"--port={port}", f"--node-ip-address={head}"], address,
                       self.ray_start_args)
            for node in range(1, self.num_nodes):
                ip = cluster.launcher.node_address(cluster, node)
                _ray_start(cluster, node, [f"--address={address}", f"--node-ip-address={ip}"], address,
                           self.ray_start_args)
            base = self.fn.env or Env()
            env = Env(reqs=base.reqs, env_vars={**(base.env_vars or {}), "RAY_ADDRESS": address},
                      name=f"{self.fn.name}-ray", working_dir=base.working_dir, python=base.python)
            self._ray = self._copy().to(cluster, env=env, name=f"{self.fn.name}-ray",
                                        stream_logs=self.fn.stream_logs, timeout=self.fn.timeout)
        return self._ray

    def shutdown(self) -> None:
        """``ray stop`` on every node (ray); the per-rank workers are deleted (pytorch)."""
        if self.kind == "ray":
            stop = _ray_cli(["stop", "--force"])
            with ThreadPoolExecutor(max_workers=min(16, self.num_nodes), thread_name_prefix="tether-ray") as pool:
                list(pool.map(lambda node: _python(self.cluster, node, stop, check=False), range(self.num_nodes)))
            self._ray = None
        else:
            for rank in self._ranks or []:
                self.cluster.delete(rank.env.env_name)
            self._ranks = None

    def _copy(self) -> Function:
        """The definition the function was deployed from: each rank is deployed from it."""
        return self.fn._definition("distribute()")  # noqa: SLF001 - our own handle


def _python(cluster: Cluster, node: int, code: str, check: bool = True) -> str:
    (code_, out, err), = cluster.node_client(node).run([code], "python", stream_logs=False)
    if code_ and check:
        raise LaunchError(f"node {node} of {cluster.name!r}: {(err or out).strip()[-1500:]}",
                          cluster=cluster.name, node=node)
    return out


def _free_port(cluster: Cluster, node: int) -> int:
    return int(_python(cluster, node, _FREE_PORT).strip().splitlines()[-1])


def _interface(cluster: Cluster, node: int) -> str | None:
    """The network interface that carries the node's cluster address (gloo and nccl would
    otherwise pick one from the host name, which is often the wrong one)."""
    address = cluster.launcher.node_address(cluster, node)
    if address in ("127.0.0.1", "localhost"):
        return "lo"
    code = ("import json, subprocess\n"
            "try:\n"
            "    out = subprocess.run(['ip', '-j', '-4', 'addr'], capture_output=True, text=True).stdout\n"
            "    links = json.loads(out or '[]')\n"
            "except (OSError, ValueError):\n"
            "    links = []\n"
            f"print(json.dumps([l['ifname'] for l in links if any(a.get('local') == {address!r} "
            "for a in l.get('addr_info', []))]))")
    try:
        names = json.loads(_python(cluster, node, code).strip().splitlines()[-1])
    except (ValueError, IndexError, LaunchError):
        return None
    return names[0] if names else None


def _ray_cli(args: list[str]) -> str:
    return ("import subprocess, sys\n"
            f"sys.exit(subprocess.call([sys.executable, '-m', 'ray.scripts.scripts', *{args!r}]))")


def _ray_start(cluster: Cluster, node: int, args: list[str], address: str, extra: list[str]) -> None:
    """``ray start`` on a node unless it already belongs to the cluster at ``address``.

    The head is looked for with a plain TCP connection first: ``ray status`` against an address
    where nothing listens waits out its GCS connection timeout (~40 s) before it says so."""
    host, port = address.rsplit(":", 1)
    check = ("import socket, subprocess, sys\n"
             "try:\n"
             f"    socket.create_connection(({host!r}, {int(port)}), timeout=5).close()\n"
             "except OSError:\n"
             "    sys.exit(1)\n"
             f"sys.exit(subprocess.call([sys.executable, '-m', 'ray.scripts.scripts', 'status', "
             f"'--address', {address!r}], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))")
    if node == 0:
        (code, _, _), = cluster.node_client(node).run([check], "python", stream_logs=False)
        if code == 0:
            return  # the head runs already (a second call, or another process)
    try:
        _python(cluster, node, _ray_cli(["start", *args, "--disable-usage-stats", *extra]))
    except LaunchError as exc:
        if "No module named ray" in str(exc) or "No module named 'ray'" in str(exc):
            raise LaunchError(
                f"ray is not installed in the default env of node {node} of {cluster.name!r}: "
                "cluster.install_packages(['ray==<version>'], node='all') first (from_local=True "
                "for nodes without a package index)", cluster=cluster.name, node=node) from exc
        if "already" not in str(exc).lower():
            raise
