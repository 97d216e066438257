"""The caller's HTTP/1.1 connection against a real socket server in a thread: Content-Length and
chunked bodies, messages split across chunks, keep-alive reuse, a server that closes. No network
beyond loopback."""

from __future__ import annotations

import socket
import threading

import pytest

from tether.client import http11
from tether.protocol import wire


class Server:
    """Answers each request (read up to its blank line, with any Content-Length body) with the
    next canned response."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses = list(responses)
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        buf = b""
        with conn:
            while self.responses:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(buf) < length:
                    buf += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buf[:length])
                buf = buf[length:]
                response = self.responses.pop(0)
                if response == b"CLOSE":
                    return
                conn.sendall(response)


def _chunked(data: bytes, size: int) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size))
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + out + b"0\r\n\r\n"


def _sized(data: bytes, status: int = 200) -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s" % (status, len(data), data)


LOG = wire.encode_bytes(wire.LOG, [b"out", b"hello\n"], call_id=4)
RESULT = wire.encode_bytes(wire.RESULT, [b"x" * 70_000, b"y" * (2 * wire.BIG_PAYLOAD)], call_id=4)


def _messages(resp: http11.Response) -> list[tuple[int, list[bytes]]]:
    out = []
    while (msg := resp.read_message()) is not None:
        out.append((msg.kind, [bytes(f) for f in msg.frames]))
    return out


@pytest.mark.parametrize("chunk", [1, 5, 4096, 1 << 30], ids=lambda c: f"chunk{c}")
def test_messages_across_chunk_boundaries(chunk):
    server = Server([_chunked(LOG + RESULT, chunk)])
    conn = http11.Connection("127.0.0.1", server.port)
    conn.send(b"POST /f/call HTTP/1.1\r\nContent-Length: 3\r\n\r\n", [b"abc"])
    resp = conn.response()
    assert resp.status == 200 and resp.chunked
    assert _messages(resp) == [(wire.LOG, [b"out", b"hello\n"]),
                               (wire.RESULT, [b"x" * 70_000, b"y" * (2 * wire.BIG_PAYLOAD)])]
    assert resp.at_end()
    assert server.requests[0].endswith(b"\r\n\r\nabc")


def test_keep_alive_reuse_and_a_big_request_body():
    body = [b"head", memoryview(b"z" * (3 << 20))]
    server = Server([_sized(RESULT), _sized(b'{"error": "not_found"}', 404)])
    conn = http11.Connection("127.0.0.1", server.port)
    conn.send(b"POST /a HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (4 + (3 << 20)), body)
    resp = conn.response()
    assert _messages(resp)[0][0] == wire.RESULT
    assert not conn.dropped()  # idle, alive: reusable
    conn.send(b"GET /b HTTP/1.1\r\n\r\n", [])
    resp = conn.response()
    assert resp.status == 404 and resp.read_rest() == b'{"error": "not_found"}'
    assert server.requests[0].endswith(b"z" * 100)


def test_a_closed_connection_is_seen_before_reuse_and_mid_response():
    server = Server([_sized(b"ok"), b"CLOSE"])
    conn = http11.Connection("127.0.0.1", server.port)
    conn.send(b"GET / HTTP/1.1\r\n\r\n", [])
    assert conn.response().read_rest() == b"ok"
    conn.send(b"GET / HTTP/1.1\r\n\r\n", [])
    with pytest.raises(http11.Closed):
        conn.response()
    server.thread.join(10)
    assert conn.dropped()


def test_a_body_cut_short_raises():
    server = Server([b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + LOG])  # then closes
    conn = http11.Connection("127.0.0.1", server.port)
    conn.send(b"GET / HTTP/1.1\r\n\r\n", [])
    resp = conn.response()
    assert resp.read_message().kind == wire.LOG
    with pytest.raises((http11.Closed, ConnectionResetError)):
        resp.read_message()


def test_a_payload_past_the_mapped_size_is_received_into_a_mapping_that_outlives_the_response(monkeypatch):
    # wire.receive_buffer: from MAPPED_RECEIVE up (32 MiB; 2 MiB here to keep the test small) a
    # payload lands in an anonymous mapping, not a zero-filled bytearray; what views it keeps it
    import json
    import mmap
    import pickle

    np = pytest.importorskip("numpy")
    monkeypatch.setattr(wire, "MAPPED_RECEIVE", 2 << 20)
    array = np.arange((3 << 20) // 8, dtype=np.float64)
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(array, protocol=5, buffer_callback=buffers.append)
    result = wire.encode_bytes(wire.RESULT, [head, bytes(buffers[0].raw())], call_id=9)
    big_json = json.dumps({"keys": ["k" * 60] * 40_000}).encode()  # > 2 MiB: a read_rest past the size
    for response in (_sized(result), _chunked(result, 1 << 20)):
        server = Server([response, _sized(big_json)])
        conn = http11.Connection("127.0.0.1", server.port)
        conn.send(b"POST /f/call HTTP/1.1\r\nContent-Length: 0\r\n\r\n", [])
        resp = conn.response()
        msg = resp.read_message()
        assert resp.at_end() and isinstance(msg.frames[1].obj, mmap.mmap)
        got = pickle.loads(msg.frames[0], buffers=msg.frames[1:])
        conn.send(b"GET /keys HTTP/1.1\r\n\r\n", [])
        rest = conn.response().read_rest()
        assert type(rest) is bytes and json.loads(rest)["keys"][0] == "k" * 60
        conn.close()
        del msg
        got[0] = -1.0  # writable, and still mapped with the response and the connection gone
        assert got[1:].tolist() == array[1:].tolist() and got[0] == -1.0
