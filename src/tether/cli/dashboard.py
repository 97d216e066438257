"""``tether dashboard``: open the daemon's web page (``/_tether/dashboard/``) in a browser.

The token goes in the URL's fragment (``#token=...``): a browser never sends a fragment to the
server, and the page exchanges it for a same-site cookie and clears it from the address bar. A
local cluster's daemon is on this machine's loopback already; a remote one is reached through
an SSH tunnel this command opens and keeps open until Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape

from tether.cli._common import (
    CLIError,
    ClusterArg,
    _check_name,
    _cluster,
    _is_remote_unsaved,
    _not_running,
    _state_dir,
    _unsaved_remote_endpoint,
    err,
)

if TYPE_CHECKING:
    from tether.core.cluster import Cluster

PATH = "/_tether/dashboard/"


def dashboard(
    cluster_arg: ClusterArg = None,
    no_browser: Annotated[bool, typer.Option(
        "--no-browser", help="Only print the URL (e.g. to open it on another machine).")] = False,
    port: Annotated[int, typer.Option(
        "--port", "-p", min=0, max=65535,
        help="The local port of the SSH tunnel to a remote cluster (0: a free one).")] = 0,
) -> None:
    """Open the cluster's dashboard (its daemon's web page) in a browser.

    Prints the URL on stdout: http://127.0.0.1:PORT/_tether/dashboard/#token=TOKEN. The token
    is in the fragment, which browsers never send: the page trades it for a cookie. For a local
    cluster PORT is its daemon's, and the command returns. For a remote (SSH) cluster it opens
    an SSH tunnel to the head's daemon on PORT (--port, or a free one) and keeps it open until
    Ctrl-C. Never starts the cluster. Without a display, or with --no-browser, open the URL
    yourself (from another machine: `ssh -L PORT:127.0.0.1:PORT` to this one first).

    **Examples**

    ```
    tether dashboard
    tether dashboard rack --port 8265
    tether dashboard rack --no-browser
    ```
    """
    name = cluster_arg or "local"
    _check_name(name)
    if _is_remote_unsaved(name):  # no definition: the daemon's own tunnel, while it runs
        endpoint = _unsaved_remote_endpoint(name)
        if endpoint is None:
            raise _not_running(name)
        _show(url(endpoint.port, endpoint.token), no_browser, f"cluster {name!r}'s tunnel to its daemon")
        return
    handle = _cluster(name)
    endpoint = handle.launcher.endpoint(handle)
    if endpoint is None:
        raise _not_running(name)
    if handle.launcher_name == "local":
        if port and port != endpoint.port:
            err.print(f"[dim]--port is for a tunnel; a local cluster's daemon is on port {endpoint.port}.[/]")
        _show(url(endpoint.port, endpoint.token), no_browser, f"the daemon of cluster {name!r}")
        return
    _serve_through_tunnel(handle, endpoint, port, no_browser)


def url(port: int, token: str) -> str:
    return f"http://127.0.0.1:{port}{PATH}#token={quote(token, safe='')}"


def _show(link: str, no_browser: bool, serving: str) -> None:
    sys.stdout.write(link + "\n")
    sys.stdout.flush()
    err.print(f"The dashboard of {escape(serving)}: the URL above holds the cluster's token, keep it to yourself.")
    if no_browser:
        return
    if not _has_display():
        err.print("No display here: open the URL in a browser on this machine (or tunnel to it).")
        return
    import webbrowser

    if not webbrowser.open(link):
        err.print("Could not start a browser: open the URL yourself.")


def _has_display() -> bool:
    """A browser can show here (not a text browser taking over this terminal)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _serve_through_tunnel(handle: Cluster, endpoint: Any, port: int, no_browser: bool) -> None:
    from tether.errors import ConfigError
    from tether.state import read_json

    nodes = (read_json(_state_dir(handle.name) / "nodes.json") or {}).get("nodes") or []
    remote_port = nodes[0].get("port") if nodes else None
    try:
        handle.launcher.require("ssh_tunnel")
    except ConfigError:
        remote_port = None
    if remote_port is None:  # no tunnel of our own: the address this machine reaches it at
        if endpoint.host not in ("127.0.0.1", "localhost"):
            raise CLIError(f"cluster {handle.name!r} ({handle.launcher_name}) is reached at "
                           f"{endpoint.host}:{endpoint.port}, not through a tunnel this command can open.",
                           f"Open https://{endpoint.host}:{endpoint.port}{PATH} and paste its token.")
        _show(url(endpoint.port, endpoint.token), no_browser, f"cluster {handle.name!r}'s tunnel to its daemon")
        return
    with err.status(f"Opening an SSH tunnel to the daemon of cluster {escape(repr(handle.name))}...", spinner="dots"):
        tunnel = handle.ssh_tunnel(port, int(remote_port))
    try:
        _show(url(tunnel.local_port, endpoint.token), no_browser, f"cluster {handle.name!r}")
        err.print(f"Serving it through an SSH tunnel on 127.0.0.1:{tunnel.local_port}: Ctrl-C to stop.")
        while tunnel.proc.poll() is None:
            time.sleep(0.5)
        raise CLIError(f"the SSH tunnel to cluster {handle.name!r} ended (exit code {tunnel.proc.returncode}).",
                       f"Run `tether dashboard {handle.name}` again; `tether status` shows whether it is up.")
    except KeyboardInterrupt:
        err.print("Closed the tunnel.")
    finally:
        tunnel.close()
