"""``POST|GET /{name}/{method}``: a call, forwarded to the worker that holds ``name``.

This is the daemon's hot path, written against ASGI directly: FastAPI's routing, dependency
injection and middleware stack cost more than the rest of a call here (measured: a bare
FastAPI route used ~2x the CPU of the same answer from a raw ASGI callable on this machine). The
FastAPI routes of the same paths call this too, so the OpenAPI schema still lists them.

A Python client posts a wire message and gets a stream of wire messages back (its logs as they
happen, then the result or the error). curl and other languages use query parameters or a JSON
body and get plain JSON back.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qsl

from tether.core import shm, wire
from tether.daemon import responses
from tether.daemon.calls import CallRecord, CallTable
from tether.daemon.store import Store, UnknownName

_CTYPE = wire.CONTENT_TYPE.encode()
_STREAM_LOGS = wire.STREAM_LOGS_HEADER.encode()
_CALL_ID = wire.CALL_ID_HEADER.encode()
_KEEP = wire.KEEP_HEADER.encode()
_REFS = wire.REFS_HEADER.encode()
_SHM = wire.SHM_HEADER.encode()


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


class CallRoute:
    """The ASGI handler of calls; ``spawn`` runs background tasks that end with the daemon."""

    def __init__(self, store: Store, calls: CallTable, spawn) -> None:
        self.store, self.calls, self.spawn = store, calls, spawn

    async def __call__(self, scope, receive, send, name: str, method: str) -> None:
        try:
            await self._call(scope, receive, send, name, method)
        except BadRequest as exc:
            await responses.send_error(send, 400, "bad_request", exc.message)

    async def _call(self, scope, receive, send, name: str, method: str) -> None:
        ctype = length = stream_logs = call_id = keep = refs = shared = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                ctype = value
            elif key == b"content-length":
                length = value
            elif key == _CALL_ID:
                call_id = value
            elif key == _STREAM_LOGS:
                stream_logs = value
            elif key == _KEEP:
                keep = value
            elif key == _REFS:
                refs = value
            elif key == _SHM:
                shared = value
        flags = 0
        if scope["method"] == "POST" and ctype is not None and ctype.startswith(_CTYPE):
            msg = decode_message(await read_body(receive, length), wire.CALL)
            frames, flags = msg.frames, msg.flags
            del msg
            mode, logs = "pickle", stream_logs != b"0"
        else:
            frames = [wire.json_frame(await _json_args(scope, receive, length))]
            mode, logs = "json", False
        call_id = call_id.decode("latin-1") if call_id else uuid.uuid4().hex
        meta: dict[str, Any] = {"object": name, "method": method, "mode": mode, "stream_logs": logs}
        if keep == b"1":
            keep = meta["keep"] = f"ref-{call_id}"[:200]
        else:
            keep = None
        store = self.store
        if shared == b"1" and store.shm is not None and mode == "pickle":
            meta["shm"] = True  # the caller maps big results from shared memory
        try:
            if refs:
                await store.bring_refs([r for r in refs.decode("latin-1").split(",") if r], name)
            worker, ipc_id, queue = await store.call(name, [wire.json_frame(meta), *frames], flags)
        except UnknownName as exc:
            await responses.send_error(send, 404, "not_found", str(exc))
            return
        except RuntimeError as exc:
            await responses.send_error(send, 503, "worker_unavailable", str(exc))
            return
        del frames  # the arguments are on their way to the worker: don't hold them while waiting
        tracker = _CallTracker(self, self.calls.start(call_id, name, method, worker, ipc_id), queue)
        if keep:
            tracker.on_result = lambda: store.register_ref(keep, worker.spec.name)
        handout = (lambda msg: shm.handout(msg, store.shm)) if meta.get("shm") else None
        try:
            await responses.respond(send, receive, queue, mode, on_end=tracker.end,
                                    on_abandon=tracker.abandon, prepare=handout)
        finally:
            if not tracker.record.done.is_set() and not tracker.draining:
                tracker.abandon(False)  # the response failed: the call still ends in the table


class _CallTracker:
    """Keeps a call's result in the call table, even when its caller went away mid-call."""

    __slots__ = ("route", "record", "queue", "on_result", "draining")

    def __init__(self, route: CallRoute, record: CallRecord, queue) -> None:
        self.route, self.record, self.queue = route, record, queue
        self.on_result = None  # a kept result (RemoteRef) is registered as an object
        self.draining = False

    def end(self, msg: wire.Message) -> None:
        if msg.kind == wire.RESULT and self.on_result is not None:
            self.on_result()
        self.route.calls.finish(self.record, msg)

    def abandon(self, streaming: bool) -> None:
        # A generator whose reader went away is stopped (closing the local iterator early stops
        # the remote one); any other call runs to its end and its result is kept for fetching.
        if streaming and self.record.worker is not None:
            self.record.worker.cancel(self.record.ipc_id)
        self.draining = True
        self.route.spawn(self._drain())

    async def _drain(self) -> None:
        while True:
            msg = await self.queue.get()
            if msg is not responses._DISCONNECTED and msg.kind in wire.TERMINAL_KINDS:  # noqa: SLF001
                self.end(msg)
                return


async def read_body(receive, length: bytes | None) -> bytes | bytearray:
    """The request body; a big one goes straight into one preallocated buffer (joining chunks
    would hold two copies of a 1 GB argument)."""
    try:
        expected = int(length) if length is not None else -1
    except ValueError:
        raise BadRequest("bad Content-Length") from None
    if 0 <= expected <= wire.BIG_PAYLOAD or expected < 0:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("the caller went away while sending the request")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    buf = bytearray(expected)
    view, pos = memoryview(buf), 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the caller went away while sending the request")
        chunk = message.get("body", b"")
        end = pos + len(chunk)
        if end > expected:
            raise BadRequest("the body is longer than its Content-Length")
        view[pos:end] = chunk
        pos = end
        if not message.get("more_body", False):
            break
    if pos != expected:
        raise BadRequest("the body is shorter than its Content-Length")
    return buf


def decode_message(body: bytes | bytearray, kind: int) -> wire.Message:
    try:
        msg = wire.decode(body)
    except ValueError as exc:
        raise BadRequest(f"malformed tether message: {exc}") from None
    if msg.kind != kind:
        raise BadRequest(f"expected a message of kind {kind}, got kind {msg.kind}")
    if not msg.frames:
        raise BadRequest(f"the message of kind {kind} has no frames")
    return msg


def parse_json_body(body: bytes | bytearray) -> Any:
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None


async def _json_args(scope, receive, length: bytes | None) -> dict[str, Any]:
    """Arguments of a curl-style call: query parameters and/or a JSON body."""
    kwargs: dict[str, Any] = {}
    query = scope.get("query_string") or b""
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    args: list[Any] = []
    if scope["method"] == "POST":
        body = parse_json_body(await read_body(receive, length))
        if isinstance(body, dict) and set(body) <= {"args", "kwargs"} and body:
            if not isinstance(body.get("args", []), list) or not isinstance(body.get("kwargs", {}), dict):
                raise BadRequest("'args' must be a list and 'kwargs' an object")
            args = body.get("args", [])
            kwargs.update(body.get("kwargs", {}))
        elif isinstance(body, dict):
            kwargs.update(body)
        elif isinstance(body, list):
            args = body
        else:
            args = [body]
    return {"args": args, "kwargs": kwargs}
