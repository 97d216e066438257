"""The async HTTP body reader (caller's async path, head -> node forwarding), on bytes fed to a
real asyncio.StreamReader."""

from __future__ import annotations

import asyncio

import pytest

from tether.protocol import wire
from tether.protocol.http_body import Response, read_message


def _read(data: bytes, eof: bool = True):
    async def go():
        reader = asyncio.StreamReader(limit=1 << 16)
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        resp = Response(reader)
        await resp.start()
        messages = []
        while (msg := await read_message(resp)) is not None:
            messages.append(msg)
        return resp, messages
    return asyncio.run(go())


def _chunked(body: bytes, size: int = 7) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


def test_content_length_body_with_messages():
    body = wire.encode_bytes(wire.LOG, [b"out", b"hi\n"]) + wire.encode_bytes(wire.RESULT, [b"x" * 100])
    resp, messages = _read(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    assert resp.status == 200 and resp.eof
    assert [m.kind for m in messages] == [wire.LOG, wire.RESULT]
    assert bytes(messages[1].frames[0]) == b"x" * 100


def test_chunked_body_split_anywhere():
    body = wire.encode_bytes(wire.RESULT, [b"payload" * 50])
    resp, messages = _read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(body))
    assert resp.eof and bytes(messages[0].frames[0]) == b"payload" * 50


def test_an_empty_body():
    resp, messages = _read(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    assert resp.status == 404 and resp.eof and messages == []


@pytest.mark.parametrize("data", [b"", b"HTTP/1.1 200 OK\r\ncontent-le"], ids=["nothing", "half the headers"])
def test_a_connection_closed_before_the_headers_end(data):
    with pytest.raises(ConnectionResetError, match="closed the connection"):
        _read(data)


def test_a_malformed_status_line_is_a_value_error():
    with pytest.raises(ValueError, match="malformed HTTP status line"):
        _read(b"garbage\r\n\r\n")


def test_headers_past_the_reader_limit_are_refused():
    with pytest.raises(ValueError, match="too long"):
        _read(b"HTTP/1.1 200 OK\r\nx: " + b"a" * 100_000 + b"\r\n\r\n", eof=False)


def test_a_body_shorter_than_announced_fails():
    body = wire.encode_bytes(wire.RESULT, [b"abc"])
    with pytest.raises(asyncio.IncompleteReadError):
        _read(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (len(body) + 10) + body)
