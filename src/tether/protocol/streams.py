"""Wire messages on sockets: an incremental parser and scatter/gather sends.

Both ends of the daemon <-> worker socket use these, and so does the caller's HTTP client for
the bodies it reads: one parser, fed by ``recv_into`` (a blocking socket) or by asyncio's
``BufferedProtocol`` (the daemon), so that

* a small message costs one copy out of a reused receive buffer, and
* a big payload (over ``wire.BIG_PAYLOAD``) is received straight into the one buffer it will live
  in: the kernel writes into it, nothing joins pieces.

Like ``wire``, this module is imported by worker processes: standard library only.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from tether.protocol import wire

_LEN = 8
_IOV_MAX = 512  # stays under the kernel's IOV_MAX (1024) for one sendmsg


class MessageParser:
    """Turns a byte stream into ``wire.Message`` objects.

    Use: ``view = parser.buffer()``, receive into ``view``, then ``parser.feed(n)`` returns the
    messages completed by those ``n`` bytes (often none, often one).
    """

    def __init__(self, size: int = 1 << 18) -> None:
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        # a big payload being received in place: [kind, call_id, lens, payload, filled, flags]
        self._big: list | None = None

    def buffer(self) -> memoryview:
        """Where the next received bytes go (never empty)."""
        big = self._big
        if big is not None:
            return memoryview(big[3])[big[4]:]
        if self._end == len(self._buf):
            self._make_room()
        return self._view[self._end:]

    def feed(self, n: int) -> list[wire.Message]:
        """``n`` bytes were written into the last ``buffer()``; the messages they complete."""
        big = self._big
        if big is not None:
            big[4] += n
            if big[4] < len(big[3]):
                return []
            self._big = None
            return [wire.message(big[0], big[1], big[2], big[3], big[5])]
        self._end += n
        return self._parse()

    @property
    def pending(self) -> int:
        """Bytes received that belong to a message not complete yet."""
        if self._big is not None:
            return self._big[4]
        return self._end - self._start

    def _parse(self) -> list[wire.Message]:
        out: list[wire.Message] = []
        view, header = self._view, wire.HEADER_SIZE
        while True:
            start, avail = self._start, self._end - self._start
            if avail < header:
                break
            kind, flags, nframes, call_id = wire.parse_header(view[start:start + header])
            table = header + _LEN * nframes
            if avail < table:
                self._reserve(table)
                break
            lens = wire.parse_lengths(view[start + header:start + table], nframes) if nframes else ()
            total = sum(lens)
            if total > wire.BIG_PAYLOAD:
                payload = wire.receive_buffer(total)
                have = avail - table  # < total: the receive buffer is smaller than a big payload
                payload[:have] = view[start + table:self._end]
                self._start = self._end = 0
                self._big = [kind, call_id, lens, payload, have, flags]
                break
            if avail < table + total:
                self._reserve(table + total)
                break
            body = bytes(view[start + table:start + table + total])
            self._start = start + table + total
            out.append(wire.message(kind, call_id, lens, body, flags))
        if self._start == self._end:
            self._start = self._end = 0
        return out

    def _reserve(self, size: int) -> None:
        """Make sure a message of ``size`` bytes fits once its bytes arrive."""
        if size > len(self._buf):
            self._grow(size)

    def _make_room(self) -> None:
        used = self._end - self._start
        if self._start:
            self._buf[:used] = self._view[self._start:self._end]
            self._start, self._end = 0, used
        if self._end == len(self._buf):
            self._grow(2 * len(self._buf))

    def _grow(self, size: int) -> None:
        used = self._end - self._start
        new = bytearray(max(size, 2 * len(self._buf)))
        new[:used] = self._view[self._start:self._end]
        self._view.release()
        self._buf, self._view = new, memoryview(new)
        self._start, self._end = 0, used


def read_messages(sock: socket.socket, parser: MessageParser | None = None):
    """Yield the messages of a blocking socket until it closes (a clean EOF ends the iterator;
    EOF inside a message raises ``ConnectionResetError``)."""
    parser = parser or MessageParser()
    recv_into = sock.recv_into
    while True:
        n = recv_into(parser.buffer())
        if not n:
            if parser.pending:
                raise ConnectionResetError("the connection closed in the middle of a message")
            return
        yield from parser.feed(n)


def send_parts(sock: socket.socket, parts: Sequence[wire.Buffer]) -> None:
    """Send buffers in order, with as few system calls as the kernel allows (``sendmsg``
    gathers them; nothing is joined or copied here)."""
    views = [v for v in (memoryview(p).cast("B") for p in parts) if v.nbytes]
    sendmsg = sock.sendmsg
    while views:
        sent = sendmsg(views[:_IOV_MAX])
        i = 0
        while sent and i < len(views):
            size = views[i].nbytes
            if sent >= size:
                sent -= size
                i += 1
            else:
                views[i] = views[i][sent:]
                sent = 0
        del views[:i]
