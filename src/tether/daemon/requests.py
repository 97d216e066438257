"""Reading a request of the call path: its body (a big one into one buffer), a wire message,
JSON arguments from a query string or a body."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from tether.protocol import wire


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


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


async def json_args(scope, receive, length: bytes | None) -> dict[str, Any]:
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
