"""Remote lines marked in the caller's terminal, as Ray marks them: ``(embed pid=4242) epoch 1``.

The daemon names the worker that runs a call once, in the header ``x-tether-worker: pid=4242``
of a streamed answer (a head adds `` node=2`` for a call it forwarded); each line the client
prints is prefixed with ``(<service> <that>)``, dim on a terminal. ``TETHER_LOG_PREFIX=0`` turns
it off (``NO_COLOR`` keeps the prefix, without the dimming). A step's log sink
(``logsink.remote_logs_to``) gets the raw lines: orchestrators add their own context.
"""

from __future__ import annotations

import os
from typing import TextIO

_DIM, _RESET = "\x1b[2m", "\x1b[0m"

#: a stream's last write ended mid-line (its next write continues that line: no prefix)
_open: dict[str, bool] = {"out": False, "err": False}


def enabled() -> bool:
    return os.environ.get("TETHER_LOG_PREFIX", "1").strip().lower() not in ("0", "false", "no", "off")


def label(service: str | None, source: str | None) -> str | None:
    """``(service pid=...)``, or None when the daemon did not say which worker runs the call."""
    if not source or not enabled():
        return None
    return f"({service} {source})" if service else f"({source})"


def mark(stream_name: str, text: str, label: str, stream: TextIO) -> str:
    """``text`` (one write: part of a line, or several) with ``label`` at the start of each line."""
    try:
        tty = stream.isatty() and "NO_COLOR" not in os.environ
    except (AttributeError, ValueError):
        tty = False
    prefix = f"{_DIM}{label}{_RESET} " if tty else f"{label} "
    at_start = not _open[stream_name]
    lines = text.split("\n")
    rest = lines.pop()  # after the last newline: "" when the write ended a line
    out = []
    for line in lines:
        out.append(_line(line, prefix, at_start))
        out.append("\n")
        at_start = True
    if rest:
        out.append(_line(rest, prefix, at_start))
    _open[stream_name] = bool(rest)
    return "".join(out)


def _line(line: str, prefix: str, at_start: bool) -> str:
    if "\r" in line:  # a progress bar redraws its line: the prefix with it (not at a CRLF)
        body = line.rstrip("\r")
        line = body.replace("\r", "\r" + prefix) + line[len(body):]
    return prefix + line if at_start else line
