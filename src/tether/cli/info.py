"""``tether keys``, ``ls`` and ``version``: look at clusters without changing them."""

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tether._version import __version__
from tether.cli._common import (
    ClusterOpt,
    JsonOpt,
    _cluster,
    _daemon_client,
    _objects_table,
    _record,
    _running_client,
    emit_json,
    err,
    out,
)

# -- tether keys / ls ------------------------------------------------------------------------------


def keys(cluster: ClusterOpt = "local", json_out: JsonOpt = False) -> None:
    """List the objects living on a running cluster: name, kind, env and type.

    Does not start the cluster: if it is down, says so and how to start it. With --json: a JSON
    array of {"name", "kind", "env", "type", ...} objects.

    **Examples**

    ```
    tether keys
    tether keys --cluster dev --json
    ```
    """
    client = _daemon_client(cluster)
    try:
        objects = client.request_json("GET", "/_tether/keys")
    finally:
        client.close()
    if json_out:
        emit_json(sorted(objects, key=lambda o: str(o.get("name"))))
        return
    if not objects:
        out.print(f"No objects on cluster {escape(repr(cluster))}. Deploy one from Python, e.g. "
                  f"tether.function(fn).to(tether.cluster({escape(repr(cluster))})).")
        return
    out.print(_objects_table(objects))


def list_resources(json_out: JsonOpt = False, registry: Annotated[bool, typer.Option(
        "--registry", help="List the team registry's resources you may read instead "
                           "(`tether login`; docs/registry.md).")] = False) -> None:
    """List the resources saved in the local registry (clusters, functions, modules, envs).

    Resources are saved from Python with .save() and loaded by name with tether.load(name);
    `tether rm NAME` deletes one. With --json: a JSON array of {"name", "type"} objects.
    With --registry: the team registry's resources you may read (yours and shared with you),
    with their owner, current version and your access.

    **Example**

    ```
    tether ls
    ```
    """
    from tether.state import resources_dir

    if registry:
        from tether.cli.registry import list_registry

        list_registry(json_out)
        return
    saved = saved_resources()
    if json_out:
        emit_json([{"name": name, "type": kind} for name, kind in saved])
        return
    if not saved:
        out.print(f"No resources saved in {escape(str(resources_dir()))}. Save one from Python, e.g. "
                  "tether.cluster(name='dev', launcher='local').save().")
        return
    out.print(f"Saved in {escape(str(resources_dir()))}:")
    table = Table()
    table.add_column("name", overflow="fold")
    table.add_column("type")
    for name, kind in saved:
        table.add_row(escape(name), escape(kind))
    out.print(table)


def saved_resources() -> list[tuple[str, str]]:
    """(name, type) of every resource in the local registry ("unreadable" for a broken file)."""
    from tether.core.registry import local

    found = []
    for name in local.names():
        try:
            kind = str(local.load(name).get("type") or "?")
        except (OSError, ValueError, AttributeError):
            kind = "unreadable"
        found.append((name, kind))
    return found


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
