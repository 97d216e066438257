"""Progress of launcher steps on stderr: one line per finished step, a spinner on a terminal.

Off a terminal (CI, an orchestrator's task log) the lines are plain text; ``TETHER_QUIET=1``
silences them. Errors are never shown here: they are raised.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any


class Progress:
    """``with Progress("bringing up 'rack'") as p: ... p.step("node 1: installed tether")``."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.quiet = os.environ.get("TETHER_QUIET", "") not in ("", "0")
        self._console: Any = None
        self._status: Any = None
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        if not self.quiet:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False,
                                    width=None if sys.stderr.isatty() else 200)
            if self._console.is_terminal:
                self._status = self._console.status(self.title)
                self._status.start()
        return self

    def update(self, text: str) -> None:
        """What is being done now (the spinner's text on a terminal; nothing elsewhere)."""
        if self._status is not None:
            with self._lock:
                self._status.update(f"{self.title}: {text}")

    def step(self, text: str, seconds: float | None = None) -> None:
        """A finished step, printed as one line."""
        if self._console is None:
            return
        from rich.markup import escape

        took = f" [dim]({seconds:.1f} s)[/]" if seconds is not None else ""
        with self._lock:
            self._console.print(f"[green]✓[/] {escape(text)}{took}")

    def __exit__(self, *exc: Any) -> None:
        if self._status is not None:
            self._status.stop()
