"""``tether status``: every cluster this machine knows, at a glance, without starting any.

Each running daemon is asked for its ``/_tether/status`` with a short timeout, all at once; a
cluster that does not answer in time is shown as unreachable with the reason, one that is down
as down.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.markup import escape
from rich.table import Table

from tether.cli._common import (
    JsonOpt,
    _cluster,
    _is_remote_unsaved,
    _state_dir,
    emit_json,
    known_clusters,
    out,
)

#: seconds a daemon has to answer ``/_tether/status``
TIMEOUT = 3.0
_COLOURS = {"up": "green", "down": "dim", "unreachable": "yellow", "error": "red"}


def status(json_out: JsonOpt = False) -> None:
    """Show every cluster this machine knows: launcher, nodes, up or down, autostop, daemon
    version, services, and workers with their memory.

    Known clusters are the saved ones (`tether ls`) and those started from here (a state dir
    under $TETHER_HOME/clusters). Never starts anything: a cluster that is down is shown as down;
    a running daemon that does not answer within a few seconds is shown as unreachable, with why.

    With --json: one JSON object, {"clusters": [...]}, with the keys listed in docs/cli.md.

    **Examples**

    ```
    tether status
    tether status --json | jq '.clusters[] | select(.status == "up") | .name'
    ```
    """
    names = known_clusters()
    entries = probe_all(names)
    if json_out:
        emit_json({"clusters": entries})
        return
    if not entries:
        out.print("No clusters known here. Start one with: tether daemon start  (or save one from Python "
                  "with .save()).")
        return
    out.print(_table(entries))
    for entry in entries:
        if entry["reason"]:
            out.print(f"[{_COLOURS[entry['status']]}]{escape(entry['name'])}:[/] {escape(entry['reason'])}")


def probe_all(names: list[str], timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """``probe`` of every name at once; one that takes longer than ``timeout`` (+ a second to
    find its endpoint) is reported unreachable without waiting for it."""
    results: dict[str, dict[str, Any]] = {}

    def run(name: str) -> None:
        results[name] = probe(name, timeout)

    threads = [threading.Thread(target=run, args=(n,), daemon=True, name=f"status-{n}") for n in names]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 1.0
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [results.get(name) or {**_blank(name), "status": "unreachable",
                                  "reason": f"timed out: no answer within {timeout + 1:.0f} s"} for name in names]


def _blank(name: str) -> dict[str, Any]:
    return {"name": name, "launcher": None, "nodes": [], "status": "down", "reason": None,
            "autostop_mins": None, "version": None, "pid": None, "address": None, "started": None,
            "services": [], "workers": []}


def probe(name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """What is known of cluster ``name``: from its records when it is down, from its daemon's
    ``/_tether/status`` when it runs. Never raises: a problem is the entry's ``reason``."""
    from tether.client.daemon_client import DaemonClient
    from tether.errors import TetherError

    entry = _blank(name)
    try:
        endpoint = _definition(name, entry)
    except TetherError as exc:
        entry.update(status="error", reason=str(exc))
        return entry
    if endpoint is None:
        return entry
    entry["address"] = f"{endpoint.host}:{endpoint.port}"
    client = DaemonClient(endpoint.host, endpoint.port, endpoint.token, cluster=name,
                          fingerprint=endpoint.fingerprint)
    try:
        info = client.request_json("GET", "/_tether/status", timeout=timeout)
    except TetherError as exc:
        entry.update(status="unreachable", reason=str(exc))
        return entry
    finally:
        client.close()
    entry.update(_running(info))
    return entry


def _definition(name: str, entry: dict[str, Any]) -> Any:
    """Fill in the launcher, nodes and autostop from the cluster's definition; its endpoint (or
    None when down)."""
    from tether.state import read_json

    if _is_remote_unsaved(name):  # used from Python without .save(): its records only
        from tether.cli._common import _unsaved_remote_endpoint

        nodes = (read_json(_state_dir(name) / "nodes.json") or {}).get("nodes") or []
        entry.update(launcher="ssh", nodes=[n.get("ip") for n in nodes])
        return _unsaved_remote_endpoint(name)
    handle = _cluster(name)
    entry["launcher"] = handle.launcher_name
    entry["autostop_mins"] = handle.autostop_mins
    try:
        entry["nodes"] = list(handle.ips)
    except Exception:  # noqa: BLE001 - a launcher that must ask its cloud: not for a glance
        entry["nodes"] = []
    return handle.launcher.endpoint(handle)


def _running(info: dict[str, Any]) -> dict[str, Any]:
    autostop = info.get("autostop_mins")
    services = [{"name": name, "kind": obj.get("kind"), "env": obj.get("env"), "type": obj.get("type"),
                 "node": obj.get("node", 0)} for name, obj in sorted((info.get("objects") or {}).items())]
    workers = []
    for env, spec in sorted((info.get("envs") or {}).items()):
        worker = spec.get("worker") or {}
        if not worker:
            continue
        workers.append({"env": env, "pid": worker.get("pid"), "alive": worker.get("alive"),
                        "in_flight": worker.get("in_flight"), "memory": _memory(worker)})
    return {"status": "up", "version": info.get("tether"), "pid": info.get("pid"),
            "started": info.get("started"),
            "autostop_mins": None if not isinstance(autostop, (int, float)) or autostop < 0 else autostop,
            "services": services, "workers": workers}


def _memory(worker: dict[str, Any]) -> int | None:
    """The worker's resident memory in bytes, as its daemon reports it (``rss``); None when unknown."""
    rss = worker.get("rss")
    return rss if isinstance(rss, int) else None


def human_bytes(size: Any) -> str:
    if not isinstance(size, (int, float)):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


def _table(entries: list[dict[str, Any]]) -> Table:
    table = Table(title="Clusters", title_justify="left")
    for col in ("cluster", "launcher", "nodes", "status", "autostop", "version", "services", "workers"):
        table.add_column(col, overflow="fold")
    for e in entries:
        colour = _COLOURS.get(e["status"], "white")
        autostop = f"{e['autostop_mins']:g} min" if e["autostop_mins"] is not None else "-"
        workers = "\n".join(
            f"{w['env']}: pid {w['pid']}, {human_bytes(w['memory']) if w['memory'] is not None else 'memory ?'}"
            + ("" if w.get("alive") else " (dead)") for w in e["workers"])
        table.add_row(escape(e["name"]), escape(e["launcher"] or "?"),
                      escape(", ".join(map(str, e["nodes"])) or "-"), f"[{colour}]{e['status']}[/]",
                      autostop, escape(e["version"] or "-"),
                      escape(", ".join(s["name"] for s in e["services"]) or "-"), escape(workers or "-"))
    return table
