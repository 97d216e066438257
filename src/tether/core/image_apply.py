"""Running an Image's steps on a cluster's nodes, once: the one function every launcher uses.

``apply_image(cluster, image)`` runs on each node (nodes in parallel, steps in order) through that
node's daemon: ``install_packages`` with the node's installer (uv, else pip: ``/_tether/run`` kind
``install``), ``run_bash`` as ``cluster.run_bash`` does, ``set_env_vars`` by giving the daemon the
image's env vars (``POST /_tether/image``; its workers restart with them). After each step the
node records it in its cluster state dir (``image/<key>.json``, ``tether.state``), keyed by the
step's content chained to the steps before it (``ImageStep.key``): a step whose record is there
is skipped, a changed step has a new key, and so has every step after it, so they run again.

``Cluster`` calls it when it first connects to a cluster that has an ``image=`` (so on every
launcher, after the launcher's ``up()``). A launcher that wants the steps done before it declares
the cluster up (to tear a half-made cluster down when one fails) calls it from its own bring-up
with ``clients=`` (one ``DaemonClient`` per node, head first); the cluster's later call then finds
every step recorded and skips them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tether import state
from tether.errors import ConfigError, LaunchError, NotFoundError, TetherError, install_hint
from tether.plugins import launchers

if TYPE_CHECKING:
    from tether.client.daemon_client import DaemonClient
    from tether.core.cluster import Cluster
    from tether.core.image import Image, ImageStep


def apply_image(cluster: Cluster, image: Image | None = None, *,
                clients: Sequence[DaemonClient] | None = None) -> list[list[dict[str, Any]]]:
    """Run the steps of ``image`` (default: ``cluster.image``) not yet done on each node.

    Returns, per node, one entry per step: ``{"key", "step", "ran": bool, "seconds",
    "installer"}``. Raises ``LaunchError`` naming the step, the node and its output when a step
    fails; the steps before it stay recorded, so the next ``up_if_not()`` goes on from there.
    """
    image = image if image is not None else getattr(cluster, "image", None)
    if image is None:
        return []
    if clients is None:
        indices = cluster.launcher.select(cluster, "all")
        clients = [cluster.node_client(i) for i in indices]
    names = _names(cluster, len(clients))
    folder = state.cluster_dir(cluster.name)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    say = _Say()
    with state.locked(folder / "image.lock"):  # two processes of this machine never run one step twice
        if len(clients) == 1:
            return [_apply_node(cluster.name, image, clients[0], names[0], say)]
        with ThreadPoolExecutor(max_workers=min(16, len(clients)), thread_name_prefix="tether-image") as pool:
            futures = [pool.submit(_apply_node, cluster.name, image, c, n, say)
                       for c, n in zip(clients, names, strict=True)]
        failures = [f.exception() for f in futures if f.exception() is not None]
        if failures:
            for other in failures[1:]:
                failures[0].add_note(f"also: {other}")
            raise failures[0]
        return [f.result() for f in futures]


def check_docker(cluster: Cluster) -> None:
    """A docker base needs a launcher that makes the machines (``Launcher.docker_images``): a
    ConfigError at definition otherwise, naming the launchers that can."""
    image = cluster.image
    if image is None or not image.docker_image or getattr(cluster.launcher, "docker_images", False):
        return
    able = sorted(name for name, cls in launchers().items() if getattr(cls, "docker_images", False))
    raise ConfigError(
        f"cluster {cluster.name!r} uses the {cluster.launcher_name!r} launcher, whose machine already "
        f"runs: it cannot start it from the docker image {image.docker_image!r} (Image.from_docker). "
        + (f"Launchers that can: {', '.join(able)} (e.g. tether.ondemand_cluster(..., image=...)). "
           if able else "None of the installed launchers can (on-demand clusters can, with SkyPilot: "
           f"{install_hint('sky')}). ")
        + "Or drop from_docker() and keep the image's other steps, which run on any launcher."
        + (f" (image={image.docker_image!r} is not the name of a saved tether.Image either.)"
           if image.name is None and not image.steps else ""),
        cluster=cluster.name)


def image_status(image: Image | None, clients: Sequence[tuple[str, DaemonClient | Exception]]) -> dict[str, Any]:
    """What ``cluster.status()["image"]`` says: per node, which of ``image``'s steps are done
    there (from the node's own records: when, how long, with which installer) and the names of
    the image env vars its daemon has. ``clients``: ``(node name, its client, or why there is
    none)``, head first. Reads only; a node that cannot answer says why."""
    steps = image.keyed_steps() if image is not None else []
    nodes: list[dict[str, Any]] = []
    for node, client in clients:
        entry: dict[str, Any] = {"node": node}
        nodes.append(entry)
        try:
            if isinstance(client, Exception):
                raise client
            known = client.request_json("GET", "/_tether/image")
        except NotFoundError:
            entry["error"] = "its daemon predates Images: cluster.restart_server() restarts it"
            continue
        except TetherError as exc:
            entry["error"] = str(exc)
            continue
        records = known.get("records") or {}
        entry["steps"] = []
        for number, (key, step) in enumerate(steps, start=1):
            record = records.get(key)
            done = {"at": record.get("at"), "seconds": record.get("seconds"),
                    "installer": record.get("installer")} if record is not None else {}
            entry["steps"].append({"number": number, "kind": step.kind, "step": step.describe(),
                                   "done": record is not None, **done})
        entry["done"] = sum(1 for s in entry["steps"] if s["done"])
        entry["recorded"] = len(records)  # this image's steps and any other image's
        entry["env_vars"] = sorted(known.get("env_vars") or {})
    return {"name": image.name if image is not None else None, "steps": len(steps), "nodes": nodes}


def forget_image(clients: Sequence[DaemonClient]) -> None:
    """Forget every step recorded on these nodes and the image's env vars, so that the next
    bring-up runs every step again (``cluster.reset_image()``)."""
    for client in clients:
        client.request_json("POST", "/_tether/image", body={"forget": True})
        client.request_json("POST", "/_tether/image", body={"env_vars": {}})


def _apply_node(cluster: str, image: Image, client: DaemonClient, node: str,
                say: _Say) -> list[dict[str, Any]]:
    try:
        known = client.request_json("GET", "/_tether/image")
    except NotFoundError:
        raise LaunchError(f"the daemon on {node} of cluster {cluster!r} predates Images: "
                          "cluster.restart_server() restarts it with this tether", cluster=cluster,
                          node=node) from None
    records = known.get("records") or {}
    current = known.get("env_vars") or {}  # the image env vars the node's daemon has now
    steps = image.keyed_steps()
    title = f"image {image.name!r}" if image.name else "image"
    done: list[dict[str, Any]] = []
    if steps and all(key in records for key, _ in steps):  # the usual warm bring-up: one line
        say(f"{node}: {title}: all {len(steps)} step(s) done before, skipped")
    for number, (key, step) in enumerate(steps, start=1):
        where = f"{node}: {title} step {number}/{len(steps)} {step.describe()}"
        if key in records:
            if not all(k in records for k, _ in steps):
                say(f"{where}: done before, skipped")
            done.append({"key": key, "step": step.kind, "ran": False, "seconds": 0.0,
                         "installer": records[key].get("installer")})
            continue
        begin = time.monotonic()
        installer = _run_step(cluster, image, step, number, client, where)
        if step.kind == "set_env_vars":
            current = _env_vars_up_to(image, number)
        seconds = time.monotonic() - begin
        record = {"key": key, "index": number - 1, "kind": step.kind, "step": step.describe(),
                  "image": image.name, "seconds": round(seconds, 3), "at": time.time(),
                  "installer": installer}
        client.request_json("POST", "/_tether/image", body={"record": record})
        say(f"{where}{f' (with {installer})' if installer else ''}", seconds)
        done.append({"key": key, "step": step.kind, "ran": True, "seconds": seconds, "installer": installer})
    wanted = image.env_vars()
    if current != wanted:  # steps skipped (changed back to an older image), or none sets them now
        client.request_json("POST", "/_tether/image", body={"env_vars": wanted})
    return done


def _env_vars_up_to(image: Image, number: int) -> dict[str, str]:
    """The env vars of the image's first ``number`` steps (later steps win)."""
    merged: dict[str, str] = {}
    for step in image.steps[:number]:
        if step.kind == "set_env_vars":
            merged.update(step.args["env_vars"])
    return merged


def _run_step(cluster: str, image: Image, step: ImageStep, number: int, client: DaemonClient,
              where: str) -> str | None:
    """Run one step on one node; the installer's label for ``install_packages``."""
    if step.kind == "set_env_vars":  # the env vars so far: the steps after it see them
        client.request_json("POST", "/_tether/image", body={"env_vars": _env_vars_up_to(image, number)})
        return None
    if step.kind == "install_packages":
        results = client.run(list(step.args["reqs"]), "install", stream_logs=False)
    else:
        results = client.run(list(step.args["commands"]), "bash", stream_logs=False, stop_on_error=True)
    expected = 1 if step.kind == "install_packages" else len(step.args["commands"])
    failed = next((r for r in results if r[0]), None)
    if failed is not None or len(results) < expected:
        code, out, err = failed or (None, "", "")
        tail = "\n".join((out + err).strip().splitlines()[-15:])
        raise LaunchError(
            f"{where} failed (exit code {code}):\n{tail}\nFix the step and call up_if_not() again: the "
            "steps before it are recorded as done and are skipped.", cluster=cluster)
    if step.kind == "install_packages":
        first = (results[0][1] or "").splitlines()[:1]
        return first[0].rsplit(" with ", 1)[-1] if first and " with " in first[0] else None
    return None


def _names(cluster: Cluster, count: int) -> list[str]:
    try:
        names = cluster.ips
    except TetherError:
        names = []
    return [f"node {i} ({names[i]})" if i < len(names) else f"node {i}" for i in range(count)]


class _Say:
    """One line per step on stderr (``TETHER_QUIET=1`` silences them), safe across threads."""

    def __init__(self) -> None:
        self.quiet = os.environ.get("TETHER_QUIET", "") not in ("", "0")
        self._lock = threading.Lock()
        self._console: Any = None

    def __call__(self, text: str, seconds: float | None = None) -> None:
        if self.quiet:
            return
        from rich.console import Console
        from rich.markup import escape

        with self._lock:
            if self._console is None:
                self._console = Console(stderr=True, highlight=False,
                                        width=None if sys.stderr.isatty() else 200)
            took = f" [dim]({seconds:.1f} s)[/]" if seconds is not None else ""
            self._console.print(f"[green]✓[/] {escape(text)}{took}")
