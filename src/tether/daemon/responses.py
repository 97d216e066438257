"""Sending wire messages as HTTP responses, at the ASGI level.

The call path is the daemon's hot path, so it speaks ASGI directly (see ``call_route``); the
FastAPI routes that stream messages (deploy, run, a result by id) reuse the same code through
``MessagesResponse``. Three shapes:

* one message (the common small call, or a big result): a body with a Content-Length, written
  from its frames without joining them;
* a stream (log lines, generator items, then the end): chunked, one chunk per message, a big
  frame cut into pieces so that no chunk copies more than ``PIECE`` bytes; a caller that goes
  away mid-stream is noticed at once (``on_abandon``);
* JSON (curl and other languages): the end of the call as plain JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from tether.protocol import wire

CONTENT_TYPE = wire.CONTENT_TYPE.encode()
JSON_TYPE = b"application/json"
PIECE = 1 << 20
WORKER = wire.WORKER_HEADER.encode()

_DISCONNECTED = object()  # put on a call's queue when its caller goes away mid-stream


async def send_json(send, status: int, payload: Any) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", JSON_TYPE), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def send_error(send, status: int, kind: str, message: str, **extra: Any) -> None:
    await send_json(send, status, {"error": kind, "message": message, **extra})


async def send_message(send, msg: wire.Message, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """One message as the whole body: small ones in one write, big ones frame by frame;
    ``extra``: more response headers."""
    parts = msg.parts()
    total = sum(memoryview(p).nbytes for p in parts)
    headers = [(b"content-type", CONTENT_TYPE), (b"content-length", b"%d" % total)]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if total <= wire.BIG_PAYLOAD:
        await send({"type": "http.response.body", "body": b"".join(parts)})
        return
    # A known length keeps uvicorn from chunked encoding, which would join each piece (a copy).
    for part in parts[:-1]:
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": parts[-1]})


async def respond(send, receive, queue: asyncio.Queue, mode: str,
                  on_end: Callable[[wire.Message], None] | None = None,
                  on_abandon: Callable[[bool], None] | None = None,
                  prepare: Callable[[wire.Message], wire.Message] | None = None,
                  source: int | bytes | None = None,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """The HTTP response for the messages a call puts on ``queue``.

    The status is chosen after the first message arrives, so an unknown method is a real 404.
    ``on_end(msg)`` gets the terminal message; ``on_abandon(streaming)`` runs if the caller goes
    away before it (``streaming``: a generator's items were being sent); ``prepare(msg)`` turns
    the terminal message into what is sent (shared memory handed to the caller). ``source``: the
    worker's pid (or ``pid=N node=i`` from a head), sent as ``x-tether-worker`` with a streamed
    answer, so the caller marks the lines it prints (``tether.client.marks``). ``extra``: more
    headers of a 200 answer (a head's ``x-tether-route``).
    """
    first: wire.Message = await queue.get()
    if first.kind == wire.ERROR:
        meta = first.json(0)
        if meta.get("kind") in (wire.NOT_FOUND, wire.BAD_REQUEST):
            if on_end is not None:
                on_end(first)
            status, kind = (404, "not_found") if meta["kind"] == wire.NOT_FOUND else (400, "bad_request")
            await send_error(send, status, kind, meta.get("message", ""))
            return
    if mode == "json":
        msg = first
        while msg.kind not in wire.TERMINAL_KINDS:
            msg = await queue.get()
        if on_end is not None:
            on_end(msg)
        if msg.kind == wire.RESULT:
            body = bytes(msg.frames[0])
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", JSON_TYPE), (b"content-length", b"%d" % len(body))]})
            await send({"type": "http.response.body", "body": body})
            return
        meta = msg.json(0)
        status = 400 if meta.get("kind") == wire.SERIALIZATION else 500
        await send_error(send, status, meta.get("kind", "exception"), meta.get("message", ""),
                         type=meta.get("type"), traceback=meta.get("traceback"))
        return
    if first.kind in wire.TERMINAL_KINDS:
        out = prepare(first) if prepare is not None else first  # before on_end may drop it
        if on_end is not None:
            on_end(first)
        await send_message(send, out, extra)
        return
    await _stream(send, receive, queue, first, on_end, on_abandon, prepare, source, extra)


async def _stream(send, receive, queue: asyncio.Queue, first: wire.Message, on_end, on_abandon,
                  prepare, source: int | bytes | None = None,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        queue.put_nowait(_DISCONNECTED)

    watcher = asyncio.ensure_future(watch())
    headers = [(b"content-type", CONTENT_TYPE)]
    if source is not None:  # once per call, not per line
        headers.append((WORKER, source if type(source) is bytes else b"pid=%d" % source))
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    msg, streaming, ended = first, False, False
    try:
        while True:
            streaming = streaming or msg.kind == wire.STREAM
            if msg.kind in wire.TERMINAL_KINDS:
                ended = True
                out = prepare(msg) if prepare is not None else msg
                if on_end is not None:
                    on_end(msg)
                await _send_chunks(send, out.parts())
                await send({"type": "http.response.body", "body": b""})
                return
            await _send_chunks(send, msg.parts())
            msg = await queue.get()
            if msg is _DISCONNECTED:
                return
    finally:
        watcher.cancel()
        if not ended and on_abandon is not None:
            on_abandon(streaming)


async def _send_chunks(send, parts: list[wire.Buffer]) -> None:
    """A message as body chunks: small parts joined into one, big frames cut into pieces."""
    small: list[wire.Buffer] = []
    for part in parts:
        view = memoryview(part)
        if view.nbytes <= PIECE:
            small.append(part)
            continue
        if small:
            await send({"type": "http.response.body", "body": b"".join(small), "more_body": True})
            small = []
        for offset in range(0, view.nbytes, PIECE):
            await send({"type": "http.response.body", "body": view[offset:offset + PIECE], "more_body": True})
    if small:
        await send({"type": "http.response.body", "body": b"".join(small), "more_body": True})


class MessagesResponse(Response):
    """``respond`` as a Starlette response, for FastAPI routes that stream messages."""

    def __init__(self, queue: asyncio.Queue, on_end=None, on_abandon=None) -> None:
        super().__init__()
        self.queue, self.on_end, self.on_abandon = queue, on_end, on_abandon

    async def __call__(self, scope, receive, send) -> None:
        await respond(send, receive, self.queue, "pickle", self.on_end, self.on_abandon)


class MessageResponse(Response):
    """One message as a Starlette response (a result fetched by call id)."""

    def __init__(self, msg: wire.Message) -> None:
        super().__init__()
        self.msg = msg

    async def __call__(self, scope, receive, send) -> None:
        await send_message(send, self.msg)
