"""``tether run``: a bash command on a cluster, and the guards that let its output be piped."""

import os
import shlex
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from tether.cli._common import ClusterOpt, _cluster, _not_running, err


def run(
    command: Annotated[list[str], typer.Argument(
        show_default=False,
        help="The command. One argument is a bash script; several are an argv, quoted for you.")],
    cluster: ClusterOpt = "local",
) -> None:
    """Run a bash command on the cluster, stream its output, exit with its exit code.

    Options go before the command; everything after the first argument (or after `--`) is the
    command. Pass shell syntax (pipes, &&, $VARS) as one quoted argument. Starts 'local' or a
    saved cluster if it is down.

    **Examples**

    ```
    tether run -- nvidia-smi
    tether run --cluster dev -- ls -la /tmp
    tether run -- 'cd /data && du -sh * | sort -h'
    ```
    """
    script = command[0] if len(command) == 1 else shlex.join(command)
    handle = _cluster(cluster)
    if handle.launcher.endpoint(handle) is None:
        if cluster != "local" and not _is_saved(cluster):  # a typo must not start a daemon
            raise _not_running(cluster)
        with err.status(f"Starting the daemon of cluster {escape(repr(cluster))}...", spinner="dots"):
            handle.up_if_not()
    try:
        with _OutputGuard():
            results = handle.run_bash([script], stream_logs=True)
    except _OutputClosed:  # `tether run ... | head`: the reader left; stop quietly, like `cat`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
        raise typer.Exit(141) from None  # 128 + SIGPIPE
    code = int(results[0][0]) if results else 0
    raise typer.Exit(128 - code if code < 0 else code)  # killed by a signal: 128 + signal, like bash


class _OutputClosed(Exception):
    """Our stdout was closed by its reader (not an OSError: the client would report it as the
    connection to the daemon breaking)."""


class _GuardedStream:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise _OutputClosed() from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise _OutputClosed() from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _OutputGuard:
    """Turns a broken pipe on stdout/stderr into ``_OutputClosed`` while a command streams."""

    def __enter__(self) -> None:
        self._saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _GuardedStream(sys.stdout), _GuardedStream(sys.stderr)

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self._saved


def _is_saved(name: str) -> bool:
    from tether.core.registry import local

    return local.exists(name)
