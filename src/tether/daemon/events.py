"""What happened to a cluster besides its calls, for the dashboard's timeline (docs/dashboard.md):
workers started and died, OOM kills, and ladder climbs the caller reports.

One log per daemon process (``EVENTS``): a worker (``daemon/workers.py``) records its start and
death without knowing the app. It is a bounded ring in memory, appended to ``events.jsonl`` in the
state dir so that a restarted daemon still shows what killed its predecessor's workers; the file
is rewritten with the newest ``max_count`` events when it holds twice that. None of this is on the
call path: events come from worker starts and deaths, and from ``POST /_tether/events``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("tether.daemon")

#: kinds the daemon records itself, and the ones a caller may post
KINDS = ("worker_started", "worker_died", "oom_kill", "climb", "note", "secrets")
POSTED_KINDS = ("climb", "note")
MAX_MESSAGE = 2000
MAX_FIELDS = 20
FILE = "events.jsonl"


class Events:
    """The ring of events (newest last), each ``{"seq", "t", "kind", "message", ...fields}``."""

    def __init__(self, max_count: int = 1000) -> None:
        self.max_count = max_count
        self.ring: deque[dict[str, Any]] = deque(maxlen=max_count)
        self.path: Path | None = None
        self.seq = 0
        self._lines = 0

    def configure(self, state_dir: Path | None, max_count: int | None = None) -> None:
        """Keep the events in ``state_dir`` from now on, after those a previous daemon left there
        (the events this process recorded before, e.g. its first worker's start, come after)."""
        if max_count:
            self.max_count = max_count
        early = list(self.ring)
        self.ring = deque(maxlen=self.max_count)
        self.path = state_dir / FILE if state_dir is not None else None
        kept = self._load()
        self.seq = max([e.get("seq", 0) for e in kept] + [0])
        self._lines = len(kept)
        for event in kept:
            self.ring.append(event)
        for event in early:
            self.record(event["kind"], event["message"], **{k: v for k, v in event.items()
                                                            if k not in ("seq", "t", "kind", "message")})

    def _load(self) -> list[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return []
        out = []
        try:
            for line in self.path.read_text(errors="replace").splitlines()[-self.max_count:]:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and "kind" in event:
                    out.append(event)
        except OSError as exc:
            log.warning("could not read the events of %s: %s", self.path, exc)
        return out

    def record(self, kind: str, message: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        event = {"seq": self.seq, "t": time.time(), "kind": kind, "message": message, **fields}
        self.ring.append(event)
        self._persist(event)
        return event

    def _persist(self, event: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(event, separators=(",", ":")) + "\n")
            self._lines += 1
            if self._lines >= 2 * self.max_count:  # keep the file bounded: the ring is the newest
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in self.ring))
                os.replace(tmp, self.path)
                self._lines = len(self.ring)
        except OSError as exc:  # a full disk stops persisting, never the daemon
            log.warning("could not write an event to %s: %s", self.path, exc)

    def since(self, after: int = 0, kinds: list[str] | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Events with ``seq > after`` (oldest first), at most the newest ``limit``."""
        got = [e for e in self.ring if e["seq"] > after and (not kinds or e["kind"] in kinds)]
        return got[-limit:]


def check_posted(body: Any) -> tuple[str, str, dict[str, Any]]:
    """A caller's event (``POST /_tether/events``): kind, message and small scalar fields, or
    ValueError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    kind, message = body.get("kind"), body.get("message")
    if kind not in POSTED_KINDS:
        raise ValueError(f"kind must be one of {', '.join(POSTED_KINDS)}, not {str(kind)[:50]!r}")
    if not isinstance(message, str) or not message or len(message) > MAX_MESSAGE:
        raise ValueError(f"message must be a non-empty string of at most {MAX_MESSAGE} characters")
    fields = {k: v for k, v in body.items() if k not in ("kind", "message")}
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"at most {MAX_FIELDS} fields besides kind and message")
    for key, value in fields.items():
        if key in ("seq", "t") or len(key) > 64:
            raise ValueError(f"field {key[:64]!r} is reserved or too long")
        if not (value is None or isinstance(value, (bool, int, float))
                or (isinstance(value, str) and len(value) <= MAX_MESSAGE)):
            raise ValueError(f"field {key!r} must be a number, a short string, a boolean or null")
    return kind, message, fields


#: the daemon's log (one daemon per process)
EVENTS = Events()


def record(kind: str, message: str, **fields: Any) -> None:
    """Record an event in the daemon's log; never raises (an event is never worth a failure)."""
    try:
        EVENTS.record(kind, message, **fields)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not record a %s event: %s", kind, exc)
