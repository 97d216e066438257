"""``tether down``, ``rm``, ``ssh`` and ``notebook``: tear a cluster down, delete a saved
resource, open a shell or JupyterLab on a node."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer
from rich.markup import escape

from tether.cli._common import (
    CLIError,
    YesOpt,
    _check_name,
    _cluster,
    _complete_cluster,
    _is_known,
    _is_remote_unsaved,
    confirm,
    err,
    known_clusters,
    out,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", show_default=False, autocompletion=_complete_cluster,
                                        help="The cluster (see `tether status`).")]


def _known(name: str) -> None:
    """A CLIError naming the known clusters unless ``name`` is one of them (a typo must not
    start nor stop anything)."""
    _check_name(name)
    if _is_remote_unsaved(name):
        raise CLIError(f"cluster {name!r} was used from Python without .save(): this command needs its "
                       "definition (addresses, SSH credentials).",
                       f"Save it from Python (tether.cluster(name={name!r}, ips=[...], ...).save()), or use "
                       "the handle in Python.")
    if not _is_known(name):
        names = known_clusters()
        raise CLIError(f"no cluster named {name!r} is saved or was started here.",
                       f"Known clusters: {', '.join(names)}." if names else
                       "No cluster is known here: see `tether status`.")


def down(name: NameArg, yes: YesOpt = False) -> None:
    """Tear a cluster down: stop its daemons and workers, forget what was deployed, and delete
    machines that were made for it (on-demand clusters). Your own machines (SSH) stay.

    Asks first on a terminal; --yes skips the question. Without a terminal (a script, CI) --yes
    is required: nothing is torn down by accident. The saved definition stays (`tether rm NAME`
    deletes it).

    **Examples**

    ```
    tether down dev
    tether down dev --yes
    ```
    """
    _known(name)
    handle = _cluster(name)
    up = handle.launcher.endpoint(handle) is not None
    what = {"local": "its daemon on this machine"}.get(handle.launcher_name, f"its {handle.launcher_name} daemons")
    confirm(f"Tear down cluster {name!r}: stop {what} and forget what was deployed?", yes,
            f"tear down cluster {name!r}")
    with err.status(f"Tearing down cluster {escape(repr(name))}...", spinner="dots"):
        handle.teardown()
    out.print(f"[green]✓[/] Cluster {escape(repr(name))} is down"
              + ("." if up else " (it was not running; what it had deployed is forgotten)."))


def rm(
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False,
                                        help="The saved resource (see `tether ls`).")],
    yes: YesOpt = False,
) -> None:
    """Delete a resource saved in the local registry (a cluster, function, module or env
    definition). It does not stop anything: `tether down NAME` tears a running cluster down.

    Asks first on a terminal; --yes skips the question, and is required without a terminal.

    **Examples**

    ```
    tether rm old-gpu
    tether rm team/embedder --yes
    ```
    """
    from tether.cli.info import saved_resources
    from tether.core.registry import local
    from tether.errors import ConfigError

    try:
        exists = local.exists(name)
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    if not exists:
        saved = [n for n, _ in saved_resources()]
        raise CLIError(f"no resource named {name!r} is saved.",
                       f"Saved: {', '.join(saved)}." if saved else "Nothing is saved here (`tether ls`).")
    kind = next((k for n, k in saved_resources() if n == name), "resource")
    confirm(f"Delete the saved {kind} {name!r}?", yes, f"delete {name!r}")
    running = kind == "cluster" and _running(name)
    local.delete(name)
    out.print(f"[green]✓[/] Deleted the saved {escape(kind)} {escape(repr(name))}.")
    if running:
        out.print("It still runs: this machine may lose track of it. Tear it down first next time "
                  "(`tether down NAME`).")


def _running(name: str) -> bool:
    from tether.errors import TetherError

    try:
        handle = _cluster(name)
        return handle.launcher.endpoint(handle) is not None
    except TetherError:
        return False


def ssh(
    name: NameArg,
    command: Annotated[list[str] | None, typer.Argument(
        show_default=False, help="A command to run there instead of a shell (after `--`).")] = None,
    node: Annotated[str | None, typer.Option(
        "--node", "-i", metavar="I", help="The node: its index (0 is the head) or its address.")] = None,
) -> None:
    """Open an interactive shell on a node of the cluster (the ssh binary, with the cluster's
    user and key), or run a command there, and exit with its exit code.

    A local cluster is this machine: a shell opens here ($SHELL) in the cluster's state dir
    (its logs, records and token), saying so.

    **Examples**

    ```
    tether ssh rack
    tether ssh rack --node 1
    tether ssh rack -- nvidia-smi
    ```
    """
    script = shlex.join(command) if command else None
    _known(name)
    handle = _cluster(name)
    index: int | str | None = int(node) if node is not None and node.isdigit() else node
    raise typer.Exit(handle.ssh(node=index, command=script))


def notebook(
    name: NameArg,
    port: Annotated[int, typer.Option("--port", "-p", metavar="PORT",
                                      help="The local port (the next free one of the 10 from it).")] = 8888,
    node: Annotated[str | None, typer.Option(
        "--node", "-i", metavar="I", help="The node: its index (0 is the head) or its address.")] = None,
    persist: Annotated[bool, typer.Option(
        "--persist", help="Leave Jupyter running on the cluster after Ctrl-C.")] = False,
) -> None:
    """Start JupyterLab on a node of the cluster, reached from here (an SSH tunnel to it), and
    print its URL with the token; Ctrl-C stops it and its kernels. The same as
    `cluster.notebook()` in Python (docs/notebooks.md).

    **Examples**

    ```
    tether notebook rack
    tether notebook rack --node 1 --port 9999
    ```
    """
    _known(name)
    handle = _cluster(name)
    index: int | str | None = int(node) if node is not None and node.isdigit() else node
    handle.notebook(port_forward=port, node=index, persist=persist)
