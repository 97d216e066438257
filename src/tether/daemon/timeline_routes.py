"""The routes of the dashboard's timeline (docs/dashboard.md): the workers' CPU and memory over
time (``GET /_tether/usage``) and the events log (``GET``/``POST /_tether/events``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query, Request

from tether.daemon import events
from tether.daemon.requests import parse_json_body, read_body
from tether.daemon.usage import Usage


def register(app: FastAPI, usage: Usage, log: events.Events, error) -> None:
    """Add the routes to ``app``; ``error(status, kind, message)`` builds the HTTPError raised."""

    @app.get("/_tether/usage")
    async def get_usage(since: float | None = None) -> dict[str, Any]:
        """Each worker's samples ``[t, cpu_percent, rss_bytes]`` (oldest first), after ``since``."""
        return usage.info(since)

    @app.get("/_tether/events")
    async def get_events(after: int = 0, kind: Annotated[list[str] | None, Query()] = None,
                         limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict[str, Any]:
        """Events with ``seq > after``, oldest first (poll with the last ``seq`` seen)."""
        bad = [k for k in kind or [] if k not in events.KINDS]
        if bad:
            raise error(400, "bad_request", f"unknown kind {bad[0][:50]!r}: use one of {', '.join(events.KINDS)}")
        return {"events": log.since(after, kind, limit), "last": log.seq}

    @app.post("/_tether/events")
    async def post_event(request: Request) -> dict[str, Any]:
        """Record a caller's event (a ladder climb): ``{"kind": "climb", "message": ...}``."""
        body = parse_json_body(await read_body(request.receive, request.headers.get("content-length")))
        try:
            kind, message, fields = events.check_posted(body)
        except ValueError as exc:
            raise error(400, "bad_request", f"event: {exc}") from None
        return log.record(kind, message, **fields)
