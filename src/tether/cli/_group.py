"""A command group that answers a mistyped command with the one meant.

``tether staus`` -> "No such command 'staus'. Did you mean 'status'?"; ``tether start`` ->
"... Did you mean 'daemon start'?" (the commands of sub-apps count too). Exit code 2, as any
usage error. Typer has its own suggestions (0.20+), off here: this one also looks into sub-apps
and names one command, not a list.
"""

from __future__ import annotations

import difflib
from typing import Any

from typer.core import TyperGroup

try:  # newer typers carry their own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typers use click itself
    from click.exceptions import UsageError


class SuggestingGroup(TyperGroup):
    """``resolve_command`` with a "Did you mean ...?" when the command does not exist."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            if not args or ctx.resilient_parsing or "No such command" not in exc.message:
                raise
            meant = suggest(self, ctx, args[0])
            if meant:
                exc.message = f"No such command {args[0]!r}. Did you mean {meant!r}?"
            raise


def suggest(group: Any, ctx: Any, typo: str) -> str | None:
    """The command (``status``, or ``daemon start`` from a sub-app) closest to ``typo``."""
    candidates: dict[str, str] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        candidates.setdefault(name, name)
        if hasattr(command, "list_commands"):  # a sub-app
            for sub in command.list_commands(ctx):
                candidates.setdefault(sub, f"{name} {sub}")  # a top-level name wins
    prefixed = [name for name in candidates if name.startswith(typo.lower())]
    if len(prefixed) == 1:  # `tether stat` is the start of one command: that one
        return candidates[prefixed[0]]
    match = difflib.get_close_matches(typo.lower(), list(candidates), n=1, cutoff=0.6)
    return candidates[match[0]] if match else None
