"""``tether ...``: the command line (typer + rich).

It runs in the caller's process and drives clusters through the same API a program uses
(``tether.cluster(...)``, the launchers, the daemon's HTTP client). It never imports the daemon
(FastAPI, uvicorn): ``tether daemon start`` starts the daemon as a detached subprocess.

Exit codes: 0 success; 1 an error (the message says what to do next); 2 a usage error;
3 ``tether daemon status`` of a cluster that is down; ``tether run`` exits with the command's code.

The commands live in ``status``, ``calls``, ``logs`` (with ``call_output``: what calls printed),
``manage`` (``down``, ``rm``, ``ssh``, ``notebook``), ``dashboard``, ``daemon`` (``tether daemon ...``),
``info`` (``keys``, ``ls``, ``version``), ``registry`` (``tether registry ...``, ``login``,
``logout``) and ``run``; what they share (consoles, errors, cluster
lookup, ``--json``) in ``_common``; ``_group`` suggests the command meant for a typo. This module
builds the root app from them, in the order ``tether --help`` lists them.
"""

import sys
from typing import Annotated, NoReturn

import typer

from tether._version import __version__
from tether.cli import calls, daemon, dashboard, info, logs, manage, registry, run, status
from tether.cli._common import EXIT_DOWN, EXIT_ERROR, CLIError, _report, err, out
from tether.cli._group import SuggestingGroup

__all__ = ["EXIT_DOWN", "EXIT_ERROR", "CLIError", "app", "main"]

app = typer.Typer(
    name="tether",
    cls=SuggestingGroup,
    help="Send your own Python functions and classes to a cluster as live, named services.\n\n"
         "Start with `tether daemon start`, then deploy from Python "
         "(`tether.function(fn).to(tether.here)`); see what runs with `tether status`, "
         "`tether calls` and `tether logs`.",
    rich_markup_mode="markdown",
    no_args_is_help=True,
    add_completion=True,
    suggest_commands=False,  # SuggestingGroup's: one command, sub-apps' too
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(status.status)
app.command()(calls.calls)
app.command()(logs.logs)
app.command()(dashboard.dashboard)
app.add_typer(daemon.daemon_app, name="daemon")
app.command()(info.keys)
app.command("ls")(info.list_resources)
app.command()(manage.down)
app.command()(manage.rm)
app.command()(manage.ssh)
app.command()(manage.notebook)
app.add_typer(registry.registry_app, name="registry")
app.command()(registry.login)
app.command()(registry.logout)
app.command()(info.version)
# Everything after the command's first argument is the command's own: `tether run ls -la`.
app.command(context_settings={"allow_interspersed_args": False})(run.run)


def main() -> NoReturn:
    """The ``tether`` console script."""
    from tether.errors import TetherError

    try:
        app()
    except CLIError as exc:
        _report(exc.message, exc.hint)
        sys.exit(exc.code)
    except TetherError as exc:
        _report(str(exc))
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        err.print("Interrupted.")
        sys.exit(130)
    sys.exit(0)


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"tether {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_version_callback, is_eager=True,
        help="Print the client's version and exit.")] = False,
) -> None:
    pass
