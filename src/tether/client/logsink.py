"""Where the remote output of a call goes: this process's stdout/stderr, or a step's logger.

By default the client prints a call's remote stdout/stderr as it arrives. An orchestrator step wants
it in its own log instead (Airflow's task log, Prefect's run logger, Dagster's ``context.log``)::

    with remote_logs_to(lambda line, stream: log.info("%s", line)):
        trainer.fit()        # each remote line goes to log.info, live, as it is printed

The sink is a context variable: it applies to calls made in this thread or task (and its awaits),
not to other threads. Output is cut into whole lines; a last line without a newline is flushed when
the block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

#: receives (line without its newline, "out" or "err")
Sink = Callable[[str, str], None]

_current: ContextVar[_Lines | None] = ContextVar("tether_remote_log_sink", default=None)


class _Lines:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.partial = {"out": "", "err": ""}

    def write(self, stream: str, text: str) -> None:
        text = self.partial[stream] + text
        *lines, self.partial[stream] = text.split("\n")
        for line in lines:
            self.sink(line.rstrip("\r"), stream)

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self.partial[stream] = ""
                self.sink(rest.rstrip("\r"), stream)


@contextlib.contextmanager
def remote_logs_to(sink: Sink) -> Iterator[None]:
    """Send the remote output of calls made inside the block to ``sink(line, stream)``."""
    lines = _Lines(sink)
    token = _current.set(lines)
    try:
        yield
    finally:
        _current.reset(token)
        lines.flush()


def deliver(stream: str, text: str) -> bool:
    """Hand remote output to the current sink; False when there is none (the caller prints it)."""
    lines = _current.get()
    if lines is None:
        return False
    lines.write(stream, text)
    return True
