"""``tether keys``, ``ls``, ``logs`` and ``version``: look at clusters without changing them."""

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tether._version import __version__
from tether.cli._common import (
    CLIError,
    ClusterOpt,
    _check_name,
    _cluster,
    _not_running,
    _objects_table,
    _record,
    _running_client,
    _state_dir,
    err,
    out,
)

# -- tether keys / ls ------------------------------------------------------------------------------


def keys(cluster: ClusterOpt = "local") -> None:
    """List the objects living on a running cluster: name, kind, env and type.

    Does not start the cluster: if it is down, says so and how to start it.

    **Examples**

    ```
    tether keys
    tether keys --cluster dev
    ```
    """
    handle = _cluster(cluster)
    client = _running_client(handle)
    if client is None:
        raise _not_running(cluster)
    try:
        objects = client.request_json("GET", "/_tether/keys")
    finally:
        client.close()
    if not objects:
        out.print(f"No objects on cluster {escape(repr(cluster))}. Deploy one from Python, e.g. "
                  f"tether.function(fn).to(tether.cluster({escape(repr(cluster))})).")
        return
    out.print(_objects_table(objects))


def list_resources() -> None:
    """List the resources saved in the local registry (clusters, functions, modules, envs).

    Resources are saved from Python with .save() and loaded by name with tether.load(name).

    **Example**

    ```
    tether ls
    ```
    """
    from tether.core.registry import local
    from tether.state import resources_dir

    names = local.names()
    if not names:
        out.print(f"No resources saved in {escape(str(resources_dir()))}. Save one from Python, e.g. "
                  "tether.cluster(name='dev', launcher='local').save().")
        return
    out.print(f"Saved in {escape(str(resources_dir()))}:")
    table = Table()
    table.add_column("name", overflow="fold")
    table.add_column("type")
    for name in names:
        try:
            kind = str(local.load(name).get("type") or "?")
        except (OSError, ValueError, AttributeError):
            kind = "unreadable"
        table.add_row(escape(name), escape(kind))
    out.print(table)


# -- tether logs -----------------------------------------------------------------------------------


def _tail_lines(path: Path, lines: int) -> tuple[list[str], int]:
    """The last ``lines`` lines of ``path`` and the offset where it ends."""
    with open(path, "rb") as f:
        last = deque(f, maxlen=lines) if lines else deque()
        end = f.tell() if lines else f.seek(0, os.SEEK_END)
    return [line.decode("utf-8", "replace") for line in last], end


def logs(
    cluster: ClusterOpt = "local",
    env: Annotated[str | None, typer.Option(
        "--env", "-e", metavar="ENV", help="Show this env's worker log instead of the daemon's.")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many lines from the end.")] = 50,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines (Ctrl-C to stop).")] = False,
) -> None:
    """Print the end of a local cluster's daemon log, or of one env's worker log.

    The daemon log is $TETHER_HOME/clusters/NAME/daemon.log; worker logs (what your code prints,
    also streamed to callers) are in $TETHER_HOME/clusters/NAME/logs/worker-ENV.log.

    **Examples**

    ```
    tether logs -n 100
    tether logs --cluster dev --env default -f
    ```
    """
    _check_name(cluster)
    state = _state_dir(cluster)
    if env is None:
        path = state / "daemon.log"
        if not path.exists():
            raise CLIError(f"no daemon log for cluster {cluster!r} ({path} does not exist).",
                           f"Its daemon was never started here: tether daemon start --cluster {cluster}")
    else:
        path = state / "logs" / f"worker-{env}.log"
        if not path.exists():
            found = sorted(p.stem[len("worker-"):] for p in (state / "logs").glob("worker-*.log"))
            raise CLIError(
                f"no worker log for env {env!r} on cluster {cluster!r} ({path} does not exist).",
                f"Envs with a worker log: {', '.join(found)}." if found else
                "No worker has started on this cluster yet: deploy something to it first.")
    text, offset = _tail_lines(path, lines)
    sys.stdout.write("".join(text))
    sys.stdout.flush()
    if not follow:
        return
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.25)
    except KeyboardInterrupt:
        pass


# -- tether version --------------------------------------------------------------------------------


def version(cluster: ClusterOpt = "local") -> None:
    """Print the client's tether version, and the daemon's when the cluster is running.

    **Examples**

    ```
    tether version
    tether version --cluster dev
    ```
    """
    from tether.errors import TetherError
    from tether.protocol import wire

    out.print(f"client: tether {__version__} (protocol {wire.PROTOCOL_VERSION})")
    handle = _cluster(cluster)
    client = _running_client(handle)
    if client is None:
        out.print(f"daemon of cluster {escape(repr(cluster))}: not running")
        return
    try:
        health = client.health()
    except TetherError:  # e.g. another protocol: the daemon's own record still has its version
        health = _record(handle)
    finally:
        client.close()
    out.print(f"daemon of cluster {escape(repr(cluster))}: tether {escape(str(health.get('tether', '?')))} "
              f"(protocol {escape(str(health.get('protocol', '?')))}), pid {health.get('pid', '?')}")
    if health.get("tether") != __version__ or health.get("protocol") != wire.PROTOCOL_VERSION:
        err.print(f"[yellow]Versions differ:[/] restart the daemon with this client's version: "
                  f"tether daemon restart --cluster {escape(cluster)}")
