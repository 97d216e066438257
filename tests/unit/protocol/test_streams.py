"""Wire messages on sockets: the incremental parser, fed any way the kernel splits the bytes,
and scatter/gather sends. Real sockets (socketpairs), no network."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from tether.protocol import streams, wire

SMALL = [wire.encode_bytes(wire.LOG, [b"err", b"line\n"], call_id=1),
         wire.encode_bytes(wire.RESULT, [b"value", b""], call_id=1, flags=wire.SHARED),
         wire.encode_bytes(wire.CANCEL, [], call_id=2)]
BIG = wire.encode_bytes(wire.CALL, [b"meta", bytes(range(256)) * (wire.BIG_PAYLOAD // 128)], call_id=3)


def _feed(parser: streams.MessageParser, data: bytes, step: int) -> list[wire.Message]:
    out, pos = [], 0
    while pos < len(data):
        view = parser.buffer()
        n = min(step, view.nbytes, len(data) - pos)
        view[:n] = data[pos:pos + n]
        pos += n
        out.extend(parser.feed(n))
    return out


def _plain(msgs):
    return [(m.kind, m.call_id, m.flags, [bytes(f) for f in m.frames]) for m in msgs]


@pytest.mark.parametrize("step", [1, 7, 16, 100, 1 << 16, 1 << 30], ids=lambda s: f"step{s}")
def test_parser_finds_every_message_however_the_bytes_are_split(step):
    data = b"".join(SMALL) + BIG + SMALL[0]
    got = _feed(streams.MessageParser(size=64), data, step)
    assert _plain(got) == _plain([wire.decode(m) for m in (*SMALL, BIG, SMALL[0])])
    assert got[1].flags == wire.SHARED


def test_a_big_payload_is_received_in_place():
    parser = streams.MessageParser(size=4096)
    head = BIG[:wire.HEADER_SIZE + 16 + 10]
    assert _feed(parser, head, 1 << 20) == []
    view = parser.buffer()  # the rest goes straight into the payload's own buffer
    assert view.nbytes == len(BIG) - len(head)
    view[:] = BIG[len(head):]
    (msg,) = parser.feed(view.nbytes)
    assert bytes(msg.frames[1]) == bytes(range(256)) * (wire.BIG_PAYLOAD // 128)


def test_a_payload_past_the_mapped_size_lands_in_an_anonymous_mapping(monkeypatch):
    import mmap

    monkeypatch.setattr(wire, "MAPPED_RECEIVE", wire.BIG_PAYLOAD)  # BIG's payload is past it here
    (msg,) = _feed(streams.MessageParser(size=4096), BIG, 1 << 16)
    assert isinstance(msg.frames[1].obj, mmap.mmap)
    assert bytes(msg.frames[1]) == bytes(range(256)) * (wire.BIG_PAYLOAD // 128)
    monkeypatch.setattr(wire, "MAPPED_RECEIVE", 32 << 20)
    (msg,) = _feed(streams.MessageParser(size=4096), BIG, 1 << 16)
    assert type(msg.frames[1].obj) is bytearray  # below it: glibc's heap hands back warm memory


def test_a_mapping_that_cannot_be_had_is_a_memory_error():
    # no room in the address space (a child process capped at 1 GiB asks for 2): bytearray says
    # MemoryError, and so does the mapping (an OSError would read as a dropped connection)
    code = ("import resource; from tether.protocol import wire\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.RLIM_INFINITY))\n"
            "try:\n    wire.receive_buffer(2 << 30)\nexcept MemoryError as exc:\n    print('MemoryError', exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("MemoryError no memory for a payload of 2,147,483,648 bytes"), out.stderr


def test_read_messages_until_a_clean_eof():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"".join(SMALL))
        a.shutdown(socket.SHUT_WR)
        assert _plain(streams.read_messages(b)) == _plain([wire.decode(m) for m in SMALL])


def test_eof_inside_a_message_is_an_error():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(SMALL[0][:-2])
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ConnectionResetError):
            list(streams.read_messages(b))


def test_send_parts_survives_partial_sends():
    """A reader slower than the writer makes sendmsg send part of the buffers each time."""
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = bytes(range(256)) * 40_000
    parts = [b"head", memoryview(big)[3:], bytearray(b"tail"), b""]
    got = bytearray()

    def read():
        while chunk := b.recv(1000):
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    streams.send_parts(a, parts)
    a.close()
    reader.join(30)
    b.close()
    assert bytes(got) == b"head" + big[3:] + b"tail"
