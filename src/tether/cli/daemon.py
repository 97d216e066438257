"""``tether daemon start|stop|restart|status|rotate-token``: the process that serves a cluster's
objects, and its bearer token."""

import time
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from tether._version import __version__
from tether.cli._common import (
    EXIT_DOWN,
    ClusterOpt,
    _cluster,
    _is_known,
    _not_running,
    _objects_table,
    _record,
    _running_client,
    _state_dir,
    err,
    out,
)
from tether.cli._group import SuggestingGroup

if TYPE_CHECKING:
    from tether.core.cluster import Cluster

daemon_app = typer.Typer(
    cls=SuggestingGroup,
    suggest_commands=False,
    help="Start, stop and inspect a cluster's daemon (the process that serves its objects).",
    no_args_is_help=True,
)


def _uptime(started: Any) -> str:
    if not isinstance(started, (int, float)):
        return "?"
    seconds = max(0, int(time.time() - started))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts + [f"{secs}s"])


def _grid(rows: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column(overflow="fold")
    for key, value in rows:
        if value is not None:
            grid.add_row(key, escape(str(value)))
    return grid


def _endpoint_rows(cluster: "Cluster") -> list[tuple[str, Any]]:
    record = _record(cluster)
    endpoint = cluster.launcher.endpoint(cluster)
    state = _state_dir(cluster.name)
    version = record.get("tether")
    if version and record.get("protocol") is not None:
        version = f"tether {version} (protocol {record['protocol']})"
    local = cluster.launcher_name == "local"
    return [
        ("address", f"{endpoint.host}:{endpoint.port}" if endpoint else None),
        ("pid", record.get("pid")),
        ("version", version),
        ("state dir", state if local else None),
        ("log file", state / "daemon.log" if local else None),
    ]


def _unresponsive(cluster: str, env: str, worker: dict[str, Any]) -> str:
    """What to say about a worker that stopped answering, and what to do about it."""
    report = worker["unresponsive"]
    pid = report.get("pid", worker.get("pid"))
    return (f"[yellow]The worker of env {escape(repr(env))} (pid {pid}) has not answered for "
            f"{report.get('seconds', '?')} s with {report.get('calls', '?')} call(s) in flight:[/] it is "
            f"stopped (SIGSTOP, a debugger), deadlocked or starved. Look at it (`py-spy dump --pid {pid}`, "
            f"its log {escape(str(worker.get('log', '')))}); a forced cancel (handle.cancel(force=True)) or "
            f"`cluster.delete({env!r})` restarts it.")


def _warn_if_other_version(cluster: str, daemon_version: Any) -> None:
    if daemon_version and daemon_version != __version__:
        err.print(f"[yellow]The daemon runs tether {escape(str(daemon_version))} and this client "
                  f"{__version__}:[/] restart it with `tether daemon restart --cluster {escape(cluster)}`.")


@daemon_app.command("start")
def daemon_start(cluster: ClusterOpt = "local") -> None:
    """Start the cluster's daemon, detached, if it is not running.

    Prints its address, pid, state dir and log file. A name that is not saved (and not 'local')
    gets a new local cluster of that name.

    **Examples**

    ```
    tether daemon start
    tether daemon start --cluster dev
    ```
    """
    handle = _cluster(cluster)
    if handle.launcher.endpoint(handle) is not None:
        out.print(f"Cluster {escape(repr(cluster))} is already up.")
        _warn_if_other_version(cluster, _record(handle).get("tether"))
    else:
        with err.status(f"Starting the daemon of cluster {escape(repr(cluster))}...", spinner="dots"):
            handle.up_if_not()
        took = handle._last_up_seconds
        out.print(f"[green]✓[/] Cluster {escape(repr(cluster))} is up"
                  + (f" (started in {took:.1f} s)." if took is not None else "."))
    out.print(_grid(_endpoint_rows(handle)))


@daemon_app.command("stop")
def daemon_stop(cluster: ClusterOpt = "local") -> None:
    """Stop the cluster's daemon and its worker processes; what was deployed is forgotten.

    **Examples**

    ```
    tether daemon stop
    tether daemon stop --cluster dev
    ```
    """
    handle = _cluster(cluster)
    if handle.launcher.endpoint(handle) is None:
        out.print(f"Cluster {escape(repr(cluster))} is not running; nothing to stop.")
        return
    pid = _record(handle).get("pid")
    with err.status(f"Stopping the daemon of cluster {escape(repr(cluster))}...", spinner="dots"):
        handle.teardown()
    out.print(f"[green]✓[/] Stopped cluster {escape(repr(cluster))}" + (f" (pid {pid})." if pid else "."))


@daemon_app.command("restart")
def daemon_restart(cluster: ClusterOpt = "local") -> None:
    """Stop the cluster's daemon (if it runs), then start it again with this tether version and
    this interpreter.

    What was deployed comes back: functions, classes, values put with put(), and instances made
    again from their constructor arguments, with fresh state. This is also the fix for a version
    or interpreter mismatch between this client and a daemon.

    **Examples**

    ```
    tether daemon restart
    tether daemon restart --cluster dev
    ```
    """
    handle = _cluster(cluster)
    pid = _record(handle).get("pid") if handle.launcher.endpoint(handle) is not None else None
    with err.status(f"Restarting the daemon of cluster {escape(repr(cluster))}...", spinner="dots"):
        handle.restart_server()
    out.print(f"[green]✓[/] Restarted cluster {escape(repr(cluster))}"
              + (f" (was pid {pid})." if pid else "."))
    out.print(_grid(_endpoint_rows(handle)))


@daemon_app.command("status")
def daemon_status(cluster: ClusterOpt = "local") -> None:
    """Show whether the cluster's daemon is up, with its pid, port, version, uptime, workers and
    objects. Never starts anything. A worker with calls in flight that has not answered the daemon
    for longer than TETHER_WORKER_STUCK_SECONDS (set on the daemon; default 30) is flagged
    unresponsive, with how long and how many calls wait on it.

    Exits with code 0 when the daemon is up and 3 when it is down.

    **Examples**

    ```
    tether daemon status
    tether daemon status --cluster dev || tether daemon start --cluster dev
    ```
    """
    from tether.errors import TetherError

    handle = _cluster(cluster)
    record = _record(handle)
    state = _state_dir(cluster)
    if not record.get("up"):
        note = ""
        if record.get("pid"):
            note = f" (a stale record names pid {record['pid']}, which is not its daemon any more)"
        out.print(f"Cluster {escape(repr(cluster))}: [bold red]down[/]{escape(note)}")
        rows: list[tuple[str, Any]] = [("state dir", state if state.is_dir() else None)]
        if (state / "daemon.log").exists():
            rows.append(("log file", state / "daemon.log"))
        out.print(_grid(rows))
        out.print(f"Start it with: tether daemon start --cluster {escape(cluster)}")
        raise typer.Exit(EXIT_DOWN)

    client = _running_client(handle)
    info: dict[str, Any] = {}
    problem = ""
    try:
        info = client.request_json("GET", "/_tether/status") if client else {}
    except TetherError as exc:
        problem = str(exc)
    finally:
        if client is not None:
            client.close()
    out.print(f"Cluster {escape(repr(cluster))}: [bold green]up[/]")
    rows = _endpoint_rows(handle)
    rows.insert(3, ("uptime", _uptime(info.get("started", record.get("started")))))
    if info.get("python"):
        rows.insert(4, ("python", info["python"]))
    out.print(_grid(rows))
    if problem:
        err.print(f"[yellow]Cannot read the daemon's status:[/] {escape(problem)}")
        return
    _warn_if_other_version(cluster, info.get("tether"))

    envs = info.get("envs") or {}
    if envs:
        table = Table(title="Envs and their workers", title_justify="left")
        for col in ("env", "worker pid", "alive", "calls in flight", "log"):
            table.add_column(col, overflow="fold")
        stuck = []
        for name, env in sorted(envs.items()):
            worker = env.get("worker") or {}
            alive = {True: "yes", False: "no"}.get(worker.get("alive"), "-")
            if worker.get("unresponsive"):
                stuck.append((name, worker))
                alive = f"[bold red]unresponsive {worker['unresponsive'].get('seconds', '?')} s[/]"
            table.add_row(escape(name), str(worker.get("pid", "-")), alive,
                          str(worker.get("in_flight", "-")), escape(str(worker.get("log", "-"))))
        out.print(table)
        for name, worker in stuck:
            err.print(_unresponsive(cluster, name, worker))
    objects = info.get("objects") or {}
    if objects:
        out.print(_objects_table({n: {"name": n, **o} for n, o in objects.items()}.values()))
    else:
        out.print("No objects deployed.")


@daemon_app.command("rotate-token")
def daemon_rotate_token(cluster: ClusterOpt = "local") -> None:
    """Give the cluster's daemons a new bearer token, at once, and refuse the old one.

    The token is what lets a process run code on the cluster (a call carries pickles: running
    any code as the daemon's user). Rotate it when it may have leaked: a copied state dir, a
    log, a former colleague's machine.

    Each daemon writes its new token (mode 0600) to its state dir and requires it from then on.
    On an SSH cluster every node is rotated (the head rotates the other nodes' tokens, which it
    uses to forward calls to them) and this machine's records are updated. This machine's
    processes pick the new token up when they reconnect; one that still holds the old token
    gets an authentication error saying the token was rotated and to reconnect
    (`cluster.up_if_not()`). Objects, workers and calls in flight are not touched.

    A local cluster that is down gets a new token file, which its next daemon uses.

    **Examples**

    ```
    tether daemon rotate-token
    tether daemon rotate-token --cluster rack
    ```
    """
    handle = _cluster(cluster)
    handle.launcher.require("rotate_token")
    local = handle.launcher_name == "local"
    up = not local or handle.launcher.endpoint(handle) is not None
    if not up and not _is_known(cluster):
        raise _not_running(cluster)
    with err.status(f"Rotating the token of cluster {escape(repr(cluster))}...", spinner="dots"):
        handle.rotate_token()
    state = _state_dir(cluster)
    if up:
        out.print(f"[green]✓[/] Rotated the token of cluster {escape(repr(cluster))}: the old one is refused "
                  "from now on.")
    else:
        out.print(f"[green]✓[/] Cluster {escape(repr(cluster))} is not running: wrote a new token, which its "
                  "next daemon uses.")
    if local:
        out.print(_grid([("token file", state / "token")]))
    out.print("Processes that hold the old token reconnect with cluster.up_if_not().")
