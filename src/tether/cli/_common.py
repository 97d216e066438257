"""What the commands share: the consoles, ``CLIError``, options (``--cluster``, ``--json``,
``--yes``), the clusters this machine knows, and finding a cluster and its daemon."""

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from tether.client.daemon_client import DaemonClient
    from tether.core.cluster import Cluster

EXIT_ERROR = 1
EXIT_DOWN = 3  # like LSB `status`: "program is not running"


def _complete_cluster(incomplete: str) -> list[str]:
    """Shell completion of a cluster name: the clusters this machine knows."""
    try:
        return [name for name in known_clusters() if name.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return []


ClusterOpt = Annotated[str, typer.Option(
    "--cluster", "-c", metavar="NAME", autocompletion=_complete_cluster,
    help="The cluster: a saved one (see `tether ls`), 'local', or any name for a local daemon.")]
#: a cluster named by the command's first argument (``tether calls dev``)
ClusterArg = Annotated[str | None, typer.Argument(
    metavar="[CLUSTER]", show_default=False, autocompletion=_complete_cluster,
    help="The cluster (see `tether status`); default 'local'.")]
#: ``--cluster NAME`` where the cluster is also the first argument (the older form, still taken)
MaybeClusterOpt = Annotated[str | None, typer.Option(
    "--cluster", "-c", metavar="NAME", autocompletion=_complete_cluster, show_default=False,
    help="The cluster, as the CLUSTER argument (the older form).")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Machine-readable output: JSON on stdout, nothing else (see docs/cli.md).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _console(stderr: bool = False) -> Console:
    # Piped output (scripts, tests) must not be folded at 80 columns: paths are long.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, width=width, highlight=False)


out = _console()
err = _console(stderr=True)


# -- errors --------------------------------------------------------------------------------------


class CLIError(Exception):
    """An expected failure: printed as a message and a hint, never as a traceback."""

    def __init__(self, message: str, hint: str = "", code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code


def _report(message: str, hint: str = "") -> None:
    err.print(f"[bold red]Error:[/] {escape(message)}")
    if hint:
        err.print(escape(hint))


# -- clusters ------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*$")


def _check_name(name: str) -> None:
    # The name becomes a folder under $TETHER_HOME/clusters/: no '..', no absolute path.
    if not _NAME_RE.match(name):
        raise CLIError(f"bad cluster name {name!r}",
                       "Use letters, digits, '_', '-' and '.', starting with a letter or a digit.")


def _cluster(name: str) -> "Cluster":
    """The saved cluster ``name``, the local default, or a local cluster of that name."""
    from tether.core.cluster import cluster
    from tether.errors import NotFoundError

    _check_name(name)
    try:
        return cluster(name)
    except NotFoundError:
        return cluster(name=name, launcher="local")


def _is_known(name: str) -> bool:
    """Saved, the local default, or started from this machine before (it has a state dir)."""
    from tether.core.cluster import DEFAULT_CLUSTER
    from tether.core.registry import local
    from tether.state import cluster_dir

    return name == DEFAULT_CLUSTER or local.exists(name) or cluster_dir(name).is_dir()


def _record(cluster: "Cluster") -> dict[str, Any]:
    """What the launcher knows without starting anything: up, and for a local daemon its pid etc."""
    if cluster.launcher_name == "local":
        from tether.launchers.local import LocalLauncher

        return LocalLauncher().status(cluster)
    return {"up": cluster.launcher.endpoint(cluster) is not None}


def _running_client(cluster: "Cluster") -> "DaemonClient | None":
    """A client of the cluster's daemon if it is running, else None. Never starts a daemon."""
    from tether.client.daemon_client import DaemonClient

    endpoint = cluster.launcher.endpoint(cluster)
    if endpoint is None:
        return None
    return DaemonClient(endpoint.host, endpoint.port, endpoint.token, cluster=cluster.name,
                        fingerprint=endpoint.fingerprint)


def _not_running(name: str) -> CLIError:
    hint = f"Start it with: tether daemon start --cluster {name}"
    if not _is_known(name):
        hint = (f"No cluster named {name!r} is saved or was started here (see `tether ls`). "
                f"To start a local one: tether daemon start --cluster {name}")
    return CLIError(f"cluster {name!r} is not running.", hint)


def known_clusters() -> list[str]:
    """Every cluster this machine knows: saved ones, and those with a state dir (started from
    here, saved or not)."""
    from tether.core.registry import local
    from tether.state import tether_home

    names = set()
    for name in local.names():
        try:
            if local.load(name).get("type") == "cluster":
                names.add(name)
        except (OSError, ValueError, AttributeError):
            continue
    root = tether_home() / "clusters"
    markers = {"token", "daemon.json", "nodes.json"}
    for folder, subfolders, files in os.walk(root):
        if markers & set(files):  # a cluster's state dir: its venvs and logs are not clusters
            names.add(str(Path(folder).relative_to(root)))
            subfolders.clear()
        elif len(Path(folder).relative_to(root).parts) >= 4:  # names are a few folders deep at most
            subfolders.clear()
    return sorted(names)


def _pick(argument: str | None, option: str | None) -> str:
    """The cluster named by a command's argument or its ``--cluster`` option (the older form)."""
    if argument and option and argument != option:
        raise CLIError(f"two clusters given: {argument!r} and --cluster {option!r}", "Name one.", code=2)
    return argument or option or "local"


def _daemon_client(name: str) -> "DaemonClient":
    """A client of the running head daemon of cluster ``name``, or a CLIError saying it is down.
    Never starts anything. An SSH cluster used from Python without ``.save()`` is found by the
    records of its state dir (its tunnel)."""
    from tether.client.daemon_client import DaemonClient

    _check_name(name)
    if _is_remote_unsaved(name):
        endpoint = _unsaved_remote_endpoint(name)
        if endpoint is None:
            raise CLIError(f"cluster {name!r} is not reachable: its daemon is down, or its SSH tunnel from "
                           "this machine closed.",
                           "Bring it up from Python with its handle (cluster.up_if_not()); save it "
                           "(.save()) to manage it from here.")
        return DaemonClient(endpoint.host, endpoint.port, endpoint.token, cluster=name)
    client = _running_client(_cluster(name))
    if client is None:
        raise _not_running(name)
    return client


def _unsaved_remote_endpoint(name: str) -> Any:
    """The tunnel endpoint of a remote cluster known only by its state dir (nodes.json), if its
    tunnel runs; None otherwise."""
    from tether.launchers.ssh import tunnels
    from tether.state import read_json

    nodes = (read_json(_state_dir(name) / "nodes.json") or {}).get("nodes") or []
    if not nodes:
        return None
    return tunnels.known(_state_dir(name), nodes[0])


def _is_remote_unsaved(name: str) -> bool:
    from tether.core.registry import local

    return not local.exists(name) and (_state_dir(name) / "nodes.json").exists()


def emit_json(value: Any) -> None:
    """One JSON document (or one line of a JSON Lines stream) on stdout, flushed."""
    import json

    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


def confirm(question: str, yes: bool, what: str) -> None:
    """Go on after a yes: ``--yes``, or the user's answer on a terminal. Without a terminal and
    without ``--yes``, refuse (a script must say it means it)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CLIError(f"not confirmed: {what} needs --yes when stdin is not a terminal.",
                       f"Run it again with --yes to {what}.")
    if not typer.confirm(question, default=False, err=True):
        raise typer.Exit(EXIT_ERROR)


def _state_dir(name: str) -> Path:
    from tether.state import cluster_dir

    return cluster_dir(name)


# -- output --------------------------------------------------------------------------------------


def _objects_table(objects: Any) -> Table:
    """The objects on a daemon (``tether keys``, ``tether daemon status``)."""
    table = Table(title="Objects", title_justify="left")
    for col in ("name", "kind", "env", "type"):
        table.add_column(col, overflow="fold")
    for obj in sorted(objects, key=lambda o: str(o.get("name"))):
        table.add_row(*(escape(str(obj.get(k) or "-")) for k in ("name", "kind", "env", "type")))
    return table
