"""``tether logs``: what a call or a service printed (from the daemon: any cluster), or a local
cluster's daemon and worker log files."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Annotated

import typer

from tether.cli._common import (
    CLIError,
    ClusterArg,
        JsonOpt,
    MaybeClusterOpt,
    _check_name,
    _daemon_client,
    _is_remote_unsaved,
    _pick,
    _state_dir,
)

#: lines of a log file shown when -n is not given
FILE_LINES = 50


def logs(
    cluster_arg: ClusterArg = None,
    call: Annotated[str | None, typer.Option(
        "--call", metavar="ID", help="What this call printed (an id from `tether calls`, or its start).")] = None,
    service: Annotated[str | None, typer.Option(
        "--service", "-s", metavar="NAME", help="What the recent calls of this service printed.")] = None,
    env: Annotated[str | None, typer.Option(
        "--env", "-e", metavar="ENV", help="A local cluster's worker log of this env (a file).")] = None,
    lines: Annotated[int | None, typer.Option(
        "--lines", "-n", min=0, show_default=False,
        help="How many lines from the end (of each call's output; of a log file: default 50).")] = None,
    calls: Annotated[int, typer.Option(
        "--calls", min=1, max=1000, help="With --service: how many recent calls.")] = 5,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines as they come (Ctrl-C to stop).")] = False,
    json_out: JsonOpt = False,
    cluster: MaybeClusterOpt = None,
) -> None:
    """Print what calls printed, from the cluster's daemon (any cluster: local, SSH, cloud), or a
    local cluster's daemon log.

    --call ID: that call's output (stdout to stdout, stderr and logging to stderr); with --follow,
    as it prints until it ends. An unknown id is an error that says how to list them.
    --service NAME: the output of that service's last calls (--calls), each under a line naming
    the call; with --follow, then each new call's lines as they come, marked (service id).
    Neither: the end of the daemon log file of a local cluster, or of one env's worker log
    (--env), in $TETHER_HOME/clusters/NAME/.

    With --json (--call or --service): JSON Lines, the daemon's events one per line
    ({"event": "line", "stream": "out", "text": ..., "at": ...}, "dropped", "end";
    with --service each also has "call": its id).

    **Examples**

    ```
    tether logs -n 100
    tether logs dev --call 1a2b3c4d
    tether logs dev --call 1a2b3c4d --follow
    tether logs dev --service embed --calls 3
    tether logs --cluster dev --env default -f
    ```
    """
    name = _pick(cluster_arg, cluster)
    _check_name(name)
    if call is not None and service is not None:
        raise CLIError("--call and --service are two ways to pick calls: give one.", code=2)
    if (call is not None or service is not None) and env is not None:
        raise CLIError("--env reads a worker's log file; --call and --service read what calls printed "
                       "from the daemon: give one of them.", code=2)
    if call is not None or service is not None:
        from tether.cli.call_output import call_logs, service_logs

        client = _daemon_client(name)
        try:
            if call is not None:
                call_logs(client, name, call, follow, lines, json_out)
            else:
                service_logs(client, name, str(service), follow, calls, lines, json_out)
        except KeyboardInterrupt:
            pass
        finally:
            client.close()
        return
    if json_out:
        raise CLIError("--json goes with --call or --service (a log file is plain text).", code=2)
    file_logs(name, env, FILE_LINES if lines is None else lines, follow)


def file_logs(cluster: str, env: str | None, lines: int, follow: bool) -> None:
    """The end of a local cluster's daemon log (or one env's worker log), then new lines."""
    state = _state_dir(cluster)
    if _is_remote_unsaved(cluster) or (state / "nodes.json").exists():
        raise CLIError(f"cluster {cluster!r} runs on other machines: its log files are there.",
                       f"Read what calls printed from its daemon: tether logs {cluster} --service NAME "
                       f"(or --call ID, from `tether calls {cluster}`); or look on the node: tether ssh {cluster}")
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


def _tail_lines(path: Path, lines: int) -> tuple[list[str], int]:
    """The last ``lines`` lines of ``path`` and the offset where it ends."""
    with open(path, "rb") as f:
        last = deque(f, maxlen=lines) if lines else deque()
        end = f.tell() if lines else f.seek(0, os.SEEK_END)
    return [line.decode("utf-8", "replace") for line in last], end
