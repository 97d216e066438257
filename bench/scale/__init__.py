"""The scale rows (``--scale``) and memory at rest (every run with tether).

Each scale series measures one cost at several N, so that its growth is seen, not guessed:

- ``clients.py``: N concurrent client connections, each calling (N = 1 ... 1,000);
- ``objects.py``: N named objects deployed on one local cluster (N = 1 ... 10,000);
- ``envs.py``: N envs, a worker process each, on one local cluster (N = 1 ... 64);
- ``nodes.py``: a 4-node cluster of test hosts called through the head vs a node directly.

``growth.py`` turns each series into a growth exponent (1 = linear) judged in the table, and
draws ``scale.png`` next to the table. ``at_rest.py``: an idle local cluster vs an idle
``ray.init()``, memory summed over their processes. Every series runs on a cluster of its own,
torn down after it; the objects and envs series have a second, ``reference.py``, that does not
grow and is measured in the same moments: their time costs are judged against it (the machine
drifts within a series by more than the bound).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import figures, machine
from bench.scale import growth
from bench.scale.growth import Metric
from bench.scale.reference import Reference


@dataclass(frozen=True)
class ScaleSettings:
    clients: tuple[int, ...] = (1, 10, 100, 1000)
    client_seconds: float = 3.0
    objects: tuple[int, ...] = (1, 10, 100, 1000, 10000)
    object_latency_calls: int = 500
    envs: tuple[int, ...] = (1, 4, 16, 64)
    nodes: int = 4
    node_latency_calls: int = 1000
    max_seconds: float = 600.0  # each series, all N together (10,000 deploys: ~250 s on a busy 2-core VM)
    settle_s: float = 3.0  # memory at rest: how long the process count must hold still

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = ScaleSettings()
QUICK = replace(FULL, clients=(1, 10, 100, 1000), client_seconds=1.0, objects=(1, 10, 100, 1000),
                object_latency_calls=200, envs=(1, 4, 16), node_latency_calls=300, settle_s=2.0)
TINY = replace(FULL, clients=(1, 4), client_seconds=0.3, objects=(1, 5), object_latency_calls=20,
               envs=(1, 2), nodes=2, node_latency_calls=20, max_seconds=60.0, settle_s=0.5)

CLIENT_METRICS = [Metric("p50_ms", "p50 latency (ms)", "total"), Metric("p99_ms", "p99 latency (ms)", "total"),
                  Metric("calls_per_s", "calls/s", "rate"), Metric("daemon_rss_mib", "daemon RSS (MiB)", "total"),
                  Metric("daemon_cpu_us_per_call", "daemon CPU per call (µs)", "per_item"),
                  Metric("workers_cpu_us_per_call", "worker CPU per call (µs)", "per_item"),
                  Metric("client_cpu_us_per_call", "client CPU per call (µs)", "per_item")]
OBJECT_METRICS = [Metric("deploy_ms_median", "deploy time per object (ms)", "per_item"),
                  Metric("daemon_cpu_ms_per_deploy", "daemon CPU per deploy (ms)", "per_item"),
                  Metric("workers_cpu_ms_per_deploy", "worker CPU per deploy (ms)", "per_item"),
                  Metric("client_cpu_ms_per_deploy", "client CPU per deploy (ms)", "per_item"),
                  Metric("daemon_rss_mib", "daemon RSS (MiB)", "total"),
                  Metric("workers_rss_mib", "worker RSS (MiB)", "total"),
                  Metric("call_p50_ms_first", "call p50, first object (ms)", "per_item", judged=False),
                  Metric("call_p50_vs_ref", "call p50, first object / reference cluster's", "per_item"),
                  Metric("call_cpu_us_first", "daemon + worker CPU per call, first object (µs)", "per_item",
                         judged=False),
                  Metric("call_cpu_vs_ref", "CPU per call, first object / reference cluster's", "per_item"),
                  Metric("keys_ms", "keys(): listing all N (ms)", "total")]
ENV_METRICS = [Metric("start_s_median", "worker start time (s)", "per_item", judged=False),
               Metric("start_vs_ref", "worker start / reference cluster's", "per_item"),
               Metric("workers_pss_mib", "workers' PSS, summed (MiB)", "total"),
               Metric("daemon_rss_mib", "daemon RSS (MiB)", "total")]
SERIES = {"clients": ("concurrent clients", "client connections", CLIENT_METRICS),
          "objects": ("named objects", "objects deployed", OBJECT_METRICS),
          "envs": ("envs (workers)", "envs, a worker each", ENV_METRICS)}

Log = Callable[[str], None]


def _growth(results: dict[str, Any], key: str, series: dict[str, Any]) -> None:
    title, _, metrics = SERIES[key]
    judged = growth.judge(series, metrics)
    series["growth"] = judged
    if judged["worst"] is None:
        return
    label = next(m.label for m in metrics if m.key == judged["worst_metric"])
    counted = sum(m.judged and m.key in judged["exponents"] for m in metrics)
    figures.record(results, f"scale_{key}_growth", "tether", lambda: {
        "value": judged["worst"], "mode": f"worst of {counted} costs: {label}, "
        f"N {series['points'][-2]['n']:,} -> {series['points'][-1]['n']:,}", **judged}, lambda _: None)


@contextmanager
def _local(name: str, given: Any = None):
    """A local cluster of the series' own, torn down after it (or ``given``, left as it is)."""
    if given is not None:
        yield given
        return
    import tether as rh

    cluster = rh.cluster(name=name, launcher="local")
    cluster.up_if_not()
    try:
        yield cluster
    finally:
        cluster.teardown()


def measure_clients(results: dict[str, Any], s: ScaleSettings, log: Log, cluster: Any = None) -> None:
    from bench.scale import clients

    with _local("scale-clients", cluster) as cluster:
        got = clients.run(cluster, list(s.clients), s.client_seconds, log)
    results["scale"]["clients"] = got
    top = got["points"][-1]
    mode = (f"{top['n']:,} connections, a task each on one event loop awaiting fn.aio(); the calls that ended "
            f"in a {top['window_s']:.1f} s steady-state window")
    for fig, key in (("p50_ms", "p50_ms"), ("p99_ms", "p99_ms"), ("calls_per_s", "calls_per_s"),
                     ("daemon_mib", "daemon_rss_mib")):
        figures.record(results, f"scale_clients_{fig}", "tether", lambda k=key: {"value": top[k], "mode": mode}, log)
    _growth(results, "clients", got)


def measure_objects(results: dict[str, Any], s: ScaleSettings, log: Log, cluster: Any = None) -> None:
    from bench.scale import objects

    with _local("scale-objects", cluster) as cluster, _local("scale-objects-ref") as ref_cluster:
        ref = Reference(ref_cluster)
        got = objects.run(cluster, list(s.objects), s.object_latency_calls, s.max_seconds, log, ref)
    results["scale"]["objects"] = got
    pts, base = got["points"], got["base"]
    top, one = pts[-1], pts[0]
    n = top["n"]
    mode = f"{n:,} functions deployed one by one, median of the last {top['deploys']:,} deploys"
    figures.record(results, "scale_objects_deploy_ms", "tether",
                   lambda: {"value": top["deploy_ms_median"], "mode": mode}, log)
    per = f"(memory at {n:,} objects - with none) / {n:,}"
    figures.record(results, "scale_objects_daemon_kib", "tether", lambda: {
        "value": (top["daemon_rss_mib"] - base["daemon_rss_mib"]) * 1024 / n, "mode": f"daemon RSS {per}"}, log)
    figures.record(results, "scale_objects_worker_kib", "tether", lambda: {
        "value": (top["workers_rss_mib"] - base["workers_rss_mib"]) * 1024 / n, "mode": f"worker RSS {per}"}, log)
    figures.record(results, "scale_objects_call_ratio", "tether", lambda: {
        "value": top["call_p50_vs_ref"] / one["call_p50_vs_ref"],
        "mode": f"p50 of {s.object_latency_calls} calls to the first object (median of {objects.ROUNDS} rounds "
                f"alternating with the newest and a reference cluster of one object), with {n:,} deployed / "
                "with 1, each against the reference's p50 of the same rounds (raw: "
                f"{top['call_p50_ms_first']:.3f} / {one['call_p50_ms_first']:.3f} ms; reference "
                f"{top['ref_call_p50_ms']:.3f} / {one['ref_call_p50_ms']:.3f} ms)",
        "raw_ratio": top["call_p50_ms_first"] / one["call_p50_ms_first"],
        "p50_ms_at_1": one["call_p50_ms_first"], f"p50_ms_at_{n}": top["call_p50_ms_first"],
        "ref_p50_ms_at_1": one["ref_call_p50_ms"], f"ref_p50_ms_at_{n}": top["ref_call_p50_ms"]}, log)
    _growth(results, "objects", got)


def measure_envs(results: dict[str, Any], s: ScaleSettings, log: Log, cluster: Any = None) -> None:
    from bench.scale import envs

    with _local("scale-envs", cluster) as cluster, _local("scale-envs-ref") as ref_cluster:
        got = envs.run(cluster, list(s.envs), s.max_seconds, log, Reference(ref_cluster))
    results["scale"]["envs"] = got
    top = got["points"][-1]
    n = top["n"]
    figures.record(results, "scale_envs_start_s", "tether", lambda: {
        "value": top["start_s_median"], "mode": f"deploy + first call in a new env, median of envs "
        f"{got['points'][-2]['n'] + 1 if len(got['points']) > 1 else 1}-{n}"}, log)
    figures.record(results, "scale_envs_worker_mib", "tether", lambda: {
        "value": top["workers_pss_mib"] / n, "mode": f"PSS of {n} env workers summed / {n} "
        f"(RSS: {top['workers_rss_mib'] / n:.1f} MiB each)"}, log)
    _growth(results, "envs", got)


def measure_nodes(results: dict[str, Any], s: ScaleSettings, workdir: Path, log: Log) -> None:
    from bench.scale import nodes

    why = nodes.missing_requirements()
    if why:
        for key in ("scale_nodes_head_p50_ms", "scale_nodes_forwarded_p50_ms", "scale_nodes_direct_p50_ms",
                    "scale_nodes_head_ratio"):
            figures.skip(results, key, "tether", why)
        log(f"scale: the {s.nodes}-node rows skipped: {why}")
        return
    got: dict[str, Any] = {}

    def run() -> dict[str, Any]:
        got.update(nodes.run(s.nodes, s.node_latency_calls, workdir, log))
        return {"value": got["head_p50_ms"], "mode": got["mode"]}

    figures.record(results, "scale_nodes_head_p50_ms", "tether", run, log)
    if got:
        results["scale"]["nodes"] = got
        figures.record(results, "scale_nodes_forwarded_p50_ms", "tether",
                       lambda: {"value": got["forwarded_p50_ms"], "mode": got["forwarded_mode"]}, log)
        figures.record(results, "scale_nodes_direct_p50_ms", "tether",
                       lambda: {"value": got["direct_p50_ms"], "mode": got["direct_mode"]}, log)
        figures.record(results, "scale_nodes_head_ratio", "tether", lambda: {
            "value": got["head_p50_ms"] / got["direct_p50_ms"],
            "mode": "p50 through the cluster handle (direct after the first call) / p50 direct"}, log)


def measure_at_rest(results: dict[str, Any], peers: list[str], workdir: Path, s: ScaleSettings, log: Log,
                    cluster: Any = None) -> None:
    import importlib.util

    from bench.scale import at_rest

    got: dict[str, Any] = {}
    log("memory at rest: an idle local cluster")
    figures.record(results, "at_rest_rss_mib", "tether",
                   lambda: {**got.setdefault("tether", at_rest.tether_idle(s.settle_s, cluster)),
                            "value": got["tether"]["rss_mib"], "mode": "daemon + the processes below it (default worker, reaper), idle"}, log)
    if "tether" in got:
        figures.record(results, "at_rest_pss_mib", "tether",
                       lambda: {"value": got["tether"]["pss_mib"], "mode": "daemon + the processes below it (default worker, reaper), idle"}, log)
    if "ray" in peers and importlib.util.find_spec("ray"):
        log("memory at rest: an idle ray.init() (in a child process)")
        mode = "every process ray.init() started (not the driver), idle"
        figures.record(results, "at_rest_rss_mib", "ray", lambda: {
            **got.setdefault("ray", at_rest.ray_idle(workdir, s.settle_s)), "value": got["ray"]["rss_mib"],
            "mode": mode}, log)
        if "ray" in got:
            figures.record(results, "at_rest_pss_mib", "ray",
                           lambda: {"value": got["ray"]["pss_mib"], "mode": mode}, log)


def record(results: dict[str, Any], peers: list[str], scale: bool, quick: bool, workdir: Path, out: Path | None,
           log: Log, settings: ScaleSettings | None = None) -> None:
    """``run.py``'s one call: memory at rest when tether is measured; with ``scale``, the scale
    series too, and their chart (``out``: scale.png, or None)."""
    s = settings or (QUICK if quick else FULL)
    results.setdefault("scale", {})["settings"] = s.as_dict()
    if "tether" not in peers:
        return
    measure_at_rest(results, peers, workdir, s, log)
    if not scale:
        return
    for fn in (measure_clients, measure_objects, measure_envs):
        machine.settle(log)
        try:
            fn(results, s, log)
        except Exception as exc:  # noqa: BLE001 - a series that fails must not lose the others
            key = fn.__name__.removeprefix("measure_")
            results["errors"].setdefault(f"scale_{key}_growth", {})["tether"] = f"{type(exc).__name__}: {exc}"
            log(f"scale: {key} failed: {type(exc).__name__}: {exc}")
    machine.settle(log)
    measure_nodes(results, s, workdir, log)
    if out is not None:
        try:
            chart(results, out)
        except Exception as exc:  # noqa: BLE001 - the table and JSON still come out
            log(f"scale: chart not drawn: {type(exc).__name__}: {exc}")


def chart(results: dict[str, Any], path: Path) -> None:
    panels = [(title, xlabel, results["scale"][key], metrics) for key, (title, xlabel, metrics) in SERIES.items()
              if key in results.get("scale", {})]
    growth.chart(panels, path, f", {results.get('when', '')}")
