"""A cluster of test hosts called through its head vs a node called directly.

The hosts are the SSH tests' (``tests/integration/hosts.py``: network namespaces with their own
sshd, reached from here only through SSH; needs root). One cluster of ``nodes`` hosts; a no-op
deployed on each node other than the head (``env=rh.env(compute={"node_idx": k})``) and on the
head itself. Per node k: the p50 of sequential calls (``client.call(name, "call",
stream_logs=False)`` each way: only the route differs) through the cluster handle's client (the
head names node k in its answer to the first call, and the handle calls node k's daemon directly
from then on, ``tether/client/routes.py``), forwarded by the head
every time (a head client without direct calls: caller -> SSH tunnel -> head daemon -> TLS ->
node k's daemon -> worker; what every call cost before direct calls, and what a curl caller
and a shared cluster's users get), and directly (caller -> SSH tunnel to node k -> its daemon ->
worker, ``cluster.node_client(k)``). The figure is the median over the nodes; the head's own
objects (no routing) and the CPU time per call of the head's daemon and the node's daemon, each
way, are in the details (where the routing's time goes).
"""

from __future__ import annotations

import statistics
import uuid
from pathlib import Path
from typing import Any

from bench import measure, netns_hosts
from bench.scale import procs


def missing_requirements() -> str | None:
    return netns_hosts.missing_requirements()


def run(count: int, calls: int, workdir: Path, log) -> dict[str, Any]:
    import tether as rh
    from bench.bench_code import noop
    from tether.client.daemon_client import DaemonClient

    hosts = netns_hosts.hosts_module()
    factory = hosts.HostFactory()
    cluster = forwarder = None
    try:
        log(f"scale: {count} test hosts (network namespaces, sshd each)")
        made = netns_hosts.create(factory, count)
        cluster = rh.cluster(name=f"scale-nodes-{uuid.uuid4().hex[:6]}", ips=[f"{h.user}@{h.ip}" for h in made],
                             ssh_creds=made[0].ssh_creds())
        t0 = measure.clock()
        cluster.up_if_not()
        up_s = measure.clock() - t0
        log(f"scale: {count}-node cluster up in {up_s:.1f} s; calls through the head and direct")
        definition = rh.function(noop)
        per_node = []
        definition.to(cluster, name="noop-n0")
        hc = cluster.client
        head_own = measure.latency(lambda: hc.call("noop-n0", "call", stream_logs=False), 50, calls, 30)["p50_ms"]
        head_pid = cluster.status()["pid"]
        forwarder = DaemonClient(hc.host, hc.port, hc.token, cluster=cluster.name, fingerprint=hc.fingerprint)
        for k in range(1, count):
            name = f"noop-n{k}"
            definition.to(cluster, env=rh.env(name=f"on-node-{k}", compute={"node_idx": k}), name=name)
            direct = cluster.node_client(k)
            node_pid = direct.request_json("GET", "/_tether/status")["pid"]  # the hosts share this PID namespace
            ways = {"head": lambda n=name: hc.call(n, "call", stream_logs=False), "forwarded": lambda n=name: forwarder.call(n, "call", stream_logs=False),
                    "direct": lambda c=direct, n=name: c.call(n, "call", stream_logs=False)}
            rounds: dict[str, list] = {way: [] for way in ways}
            cpu: dict[str, list] = {way: [] for way in ways}
            for _ in range(3):  # alternating, so that a drift of the machine's load falls on both
                for way, call in ways.items():
                    before = (procs.cpu_s(head_pid), procs.cpu_s(node_pid))
                    got = measure.latency(call, 50, calls // 3, 30)
                    after = (procs.cpu_s(head_pid), procs.cpu_s(node_pid))
                    rounds[way].append(got["p50_ms"])
                    cpu[way].append([(b - a) / (got["calls"] + 50) * 1e6 for a, b in zip(before, after, strict=True)
                                     if a is not None and b is not None])
            per_node.append({"node": k, "head_p50_ms": statistics.median(rounds["head"]),
                             "forwarded_p50_ms": statistics.median(rounds["forwarded"]),
                             "direct_p50_ms": statistics.median(rounds["direct"]), "rounds": rounds,
                             "cpu_us_per_call": {way: {"head_daemon": statistics.median(c[0] for c in v),
                                                       "node_daemon": statistics.median(c[1] for c in v)}
                                                 for way, v in cpu.items() if all(len(c) == 2 for c in v)}})
        head = statistics.median(p["head_p50_ms"] for p in per_node)
        direct = statistics.median(p["direct_p50_ms"] for p in per_node)
        cpus = [p["cpu_us_per_call"] for p in per_node if len(p["cpu_us_per_call"]) == len(ways)]
        cpu = {f"{way}_{daemon}": statistics.median(c[way][daemon] for c in cpus)
               for way in ways for daemon in ("head_daemon", "node_daemon")} if cpus else {}
        forwarded = statistics.median(p["forwarded_p50_ms"] for p in per_node)
        return {"head_p50_ms": head, "direct_p50_ms": direct, "head_own_objects_p50_ms": head_own,
                "forwarded_p50_ms": forwarded, "forwarded_ratio": forwarded / direct,
                "cpu_us_per_call": cpu,
                "per_node": per_node, "up_s": up_s, "nodes": count,
                "mode": f"{count} nodes: cluster.client.call() (direct to node k after the first "
                        f"call), p50 of {calls} calls, median over nodes 1-{count - 1}",
                "forwarded_mode": "caller -> SSH tunnel -> head -> TLS -> node k (a head client without "
                                  "direct calls)",
                "direct_mode": "caller -> SSH tunnel to node k -> its daemon (cluster.node_client(k))"}
    finally:
        if forwarder is not None:
            forwarder.close()
        if cluster is not None:
            try:
                cluster.teardown()
            except Exception as exc:  # noqa: BLE001 - the hosts go anyway
                log(f"scale: teardown of the node cluster: {type(exc).__name__}: {exc}")
        factory.close()
