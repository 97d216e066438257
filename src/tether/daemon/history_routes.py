"""The routes of the call records (docs/calls.md): a listing with filters, one record, a call's
output, and follow streams of new calls and of one call's output (newline-delimited JSON)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import StreamingResponse

from tether.daemon import fanout
from tether.daemon.calls import CallTable
from tether.daemon.history import COLUMNS, OUTCOMES, CallOutput, History
from tether.daemon.nodes import Nodes

NDJSON = fanout.NDJSON
PING = 15.0
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM calls"


class NotRecorded(LookupError):
    pass


def _db_row(values: tuple) -> dict[str, Any]:
    row = dict(zip(COLUMNS, values, strict=True))
    row["caller"] = json.loads(row["caller"] or "{}")
    row["output"] = {"lines": row.pop("lines"), "dropped": row.pop("dropped")}
    return row


def _read(history: History, sql: str, args: tuple) -> list[tuple]:
    """A read on a connection of its own (the writer thread owns the other)."""
    if not history.kept or not history.path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{history.path}?mode=ro", uri=True, timeout=2)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []


def _filter(service: list[str], outcome: list[str], failed: bool, since: float | None,
            before: float | None) -> Callable[[dict[str, Any]], bool]:
    def wanted(row: dict[str, Any]) -> bool:
        return ((not service or row["object"] in service)
                and (not outcome or row["outcome"] in outcome)
                and (not failed or row["outcome"] not in ("ok", "running"))
                and (since is None or row["started"] >= since)
                and (before is None or row["started"] < before))
    return wanted


def register(app: FastAPI, history: History, calls: CallTable, error, fleet: Nodes | None = None) -> None:
    """Add the routes to ``app``; ``error(status, kind, message)`` builds the HTTPError raised;
    ``fleet``: a multi-node head's other nodes (``?nodes=all``, and the output of a call one ran)."""

    def memory_rows() -> list[dict[str, Any]]:
        rows = [history.running_row(r) for r in list(calls.running.values())]
        rows += [history._row(item, None) for item in list(history.ended)]
        return rows

    async def listing(service, outcome, failed, since, before, limit) -> list[dict[str, Any]]:
        where, args = ["1=1"], []
        if since is not None:
            where.append("started >= ?")
            args.append(since)
        if before is not None:
            where.append("started < ?")
            args.append(before)
        if service:
            where.append(f"object IN ({','.join('?' * len(service))})")
            args += service
        if outcome:
            where.append(f"outcome IN ({','.join('?' * len(outcome))})")
            args += outcome
        if failed:
            where.append("outcome NOT IN ('ok', 'running')")
        sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY started DESC LIMIT ?"
        stored = await asyncio.to_thread(_read, history, sql, (*args, limit))
        wanted = _filter(service, outcome, failed, since, before)
        rows = {r["id"]: r for r in map(_db_row, stored)}
        rows.update({r["id"]: r for r in memory_rows() if wanted(r)})
        return sorted(rows.values(), key=lambda r: r["started"], reverse=True)[:limit]

    recording = history.info

    @app.get("/_tether/calls")
    async def list_calls(request: Request, service: Annotated[list[str] | None, Query()] = None,
                         outcome: Annotated[list[str] | None, Query()] = None,
                         failed: bool = False, since: float | None = None, before: float | None = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100, follow: bool = False,
                         nodes: str | None = None):
        """The records of calls, newest first (``follow``: then new calls as they start and end;
        ``nodes=all`` on a multi-node head: every node's records, merged)."""
        service, outcome = service or [], outcome or []
        bad = [o for o in outcome if o not in OUTCOMES]
        if bad:
            raise error(400, "bad_request", f"unknown outcome {bad[0]!r}: use one of {', '.join(OUTCOMES)}")
        if nodes not in (None, "all"):
            raise error(400, "bad_request", f"nodes={nodes!r}: the only value is 'all' (every node's records)")
        if nodes and follow:
            raise error(400, "bad_request", "follow=1 reads this daemon's calls only (the head sees the calls "
                        "it forwards): follow without nodes=all, or follow each node")
        rows = await listing(service, outcome, failed, since, before, limit)
        if not follow:
            answer = {"calls": rows, "next": None, "recording": recording()}
            if nodes:
                answer["unreachable"] = []
            if nodes and fleet is not None and fleet.links:
                query = [(k, v) for k, v in request.query_params.multi_items() if k != "nodes"]
                rows, answer["unreachable"] = await fanout.merged(fleet, query, rows, limit)
                answer["calls"] = rows
            if len(rows) == limit:
                answer["next"] = {"before": rows[-1]["started"]}
            return answer
        wanted = _filter(service, outcome, failed, None, None)
        queue: asyncio.Queue = asyncio.Queue()
        history.followers.append((queue, wanted))

        async def stream() -> AsyncIterator[bytes]:
            try:
                for row in reversed(rows):
                    yield _line({"event": "call", "call": row})
                while True:
                    dropped = getattr(queue, "dropped", 0)
                    if dropped:
                        queue.dropped = 0
                        yield _line({"event": "dropped", "count": dropped})
                    try:
                        event = await asyncio.wait_for(queue.get(), PING)
                    except TimeoutError:
                        event = {"event": "ping"}
                    yield _line(event)
            finally:
                history.followers.remove((queue, wanted))

        return StreamingResponse(stream(), media_type=NDJSON)

    def _missing(call_id: str) -> Exception:
        return error(404, "not_found", f"no call with id {call_id!r} is recorded on this daemon (records "
                     f"are kept for the last {history.max_count} calls, {history.max_age:.0f} s): list "
                     "them with GET /_tether/calls (`tether calls`)")

    async def find(call_id: str) -> dict[str, Any]:
        record = calls.running.get(call_id)
        if record is not None and hasattr(record, "output"):
            return history.running_row(record)
        for item in list(history.ended):
            if item[0] == call_id:
                return history._row(item, None)
        stored = await asyncio.to_thread(_read, history, f"{_SELECT} WHERE id = ? ORDER BY seq DESC LIMIT 1", (call_id,))
        if stored:
            return _db_row(stored[0])
        raise _missing(call_id)

    @app.get("/_tether/calls/{call_id}/record")
    async def call_record(call_id: str) -> dict[str, Any]:
        """One call's record."""
        return await find(call_id)

    @app.get("/_tether/calls/{call_id}/output")
    async def call_output(request: Request, call_id: str, follow: bool = False,
                          tail: int | None = Query(default=None, ge=0)):
        """What a call printed; ``follow``: lines as they come until the call ends. A call this
        head forwarded to another node: that node's answer, passed through."""
        row = await find(call_id)  # 404 before the stream starts
        if row["node"] != history.node and fleet is not None and row["node"] in fleet.links:
            return await fanout.output(fleet.links[row["node"]], call_id, request.url.query)
        live = calls.running.get(call_id)
        out = getattr(live, "output", None)
        if out is None and live is not None:
            out = live.output = CallOutput()  # followed before its first line
        if out is None:  # ended, maybe not written yet
            out = next((item[9] for item in list(history.ended) if item[0] == call_id), None)
        queue: asyncio.Queue | None = None
        if out is not None:
            lines, dropped = list(out.lines), out.dropped
            ended = row["outcome"] != "running"
            if follow and not ended:
                queue = asyncio.Queue()
                if out.followers is None:
                    out.followers = []
                out.followers.append(queue)
        else:
            stored = await asyncio.to_thread(_read, history, "SELECT lines FROM output WHERE id = ? ORDER BY seq DESC LIMIT 1", (call_id,))
            lines = json.loads(stored[0][0]) if stored else []
            dropped = row["output"]["dropped"] + (row["output"]["lines"] - len(lines))
            ended = True
        if tail is not None and tail < len(lines):
            dropped += len(lines) - tail
            lines = lines[len(lines) - tail:] if tail else []

        async def stream() -> AsyncIterator[bytes]:
            try:
                if dropped:
                    yield _line({"event": "dropped", "lines": dropped})
                for stream_name, text, at in lines:
                    yield _line({"event": "line", "stream": stream_name, "text": text, "at": at})
                if queue is not None:
                    while True:
                        try:
                            event = await asyncio.wait_for(queue.get(), PING)
                        except TimeoutError:
                            yield _line({"event": "ping"})
                            continue
                        if event is None:
                            break
                        yield _line(event)
                    yield _line({"event": "end", "outcome": out.ended})
                elif ended:
                    yield _line({"event": "end", "outcome": (await find(call_id))["outcome"]})
            finally:
                if queue is not None and out.followers and queue in out.followers:
                    out.followers.remove(queue)

        return StreamingResponse(stream(), media_type=NDJSON)


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"
