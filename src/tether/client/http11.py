"""A minimal blocking HTTP/1.1 client connection: the caller's transport for calls.

Why not ``http.client``: on the machine the benchmark runs on, ``http.client`` spent ~230 us of
CPU per request (its header parsing goes through the ``email`` package), more than the daemon
spent answering. This speaks only what tether's daemon needs: one keep-alive connection,
requests with a Content-Length, responses with a Content-Length or chunked, read through one
reused buffer; a big body is received straight into the buffer it will live in.

A daemon reached over the network without a tunnel speaks TLS: given the SHA-256 of its
certificate (``fingerprint``), the connection does the TLS handshake, checks the certificate
presented against it (``tether.protocol.tls``) and only then sends anything.

Errors are the standard library's (``OSError``, ``ConnectionResetError``, ``ValueError`` for a
malformed response; ``tether.protocol.tls.PinMismatch``, an ``OSError`` too);
``tether.client.daemon_client`` translates them.
"""

from __future__ import annotations

import mmap
import socket
from collections.abc import Sequence

from tether.protocol import streams, wire

_BUF = 1 << 16
_MAX_HEAD = 1 << 16
_WORKER = wire.WORKER_HEADER.encode()
_ROUTE = wire.ROUTE_HEADER.encode()


class Closed(ConnectionResetError):
    """The server closed the connection before the response was complete."""


class Connection:
    """One keep-alive connection. Not thread-safe: the client keeps one per thread."""

    def __init__(self, host: str, port: int, connect_timeout: float = 10.0,
                 fingerprint: str | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if fingerprint is not None:
            from tether.protocol import tls  # ssl: imported only by those who need it

            try:  # the handshake runs under the connect timeout too
                sock = tls.client_context().wrap_socket(sock)
                tls.check_pin(sock.getpeercert(binary_form=True), fingerprint,
                              f"the daemon at {host}:{port}")
            except BaseException:
                sock.close()
                raise
        sock.settimeout(None)  # a call may run for hours: no read timeout
        self.sock = sock
        self.tls = fingerprint is not None
        self._buf = bytearray(_BUF)
        self._view = memoryview(self._buf)
        self._start = self._end = 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def dropped(self) -> bool:
        """Whether an idle connection was closed by the server (or holds stray bytes): checked
        before reusing it, so that a call is never sent on a dead connection and retried."""
        if self._end != self._start:
            return True
        try:  # on a TLS socket: the raw bytes under it (SSLSocket.recv takes no flags)
            socket.socket.recv(self.sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # b"": closed
        except BlockingIOError:
            return False  # nothing to read: alive and idle
        except OSError:
            return True
        return not self.tls or self._tls_dropped()

    def _tls_dropped(self) -> bool:
        """Bytes wait under an idle TLS connection: a close (close_notify, FIN), or records that
        carry no data (a server's session tickets) and leave it usable."""
        import ssl

        self.sock.setblocking(False)
        try:
            self.sock.recv(1)  # b"": closed; a byte: stray data. Either way, not reusable
            return True
        except ssl.SSLWantReadError:
            return False  # only TLS housekeeping was there
        except OSError:
            return True
        finally:
            self.sock.setblocking(True)

    def send(self, head: bytes, parts: Sequence[wire.Buffer]) -> None:
        """Write a request: ``head`` (request line and headers, ending with the blank line) and
        the body's parts, gathered by the kernel without joining big ones."""
        size = sum(memoryview(p).nbytes for p in parts)
        if size <= _BUF:
            self.sock.sendall(b"".join([head, *parts]))
        elif self.tls:  # TLS encrypts each write anyway: no gathering (nor sendmsg) there
            self.sock.sendall(head)
            for part in parts:
                self.sock.sendall(part)
        else:
            streams.send_parts(self.sock, [head, *parts])

    def response(self) -> Response:
        """Read a response's status line and headers; its body is read through the result."""
        head = self._read_head()
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split(None, 2)[1])
        except (IndexError, ValueError):
            raise ValueError(f"malformed HTTP status line {lines[0][:100]!r}") from None
        length, chunked, source, route = None, False, None, None
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif key == _WORKER:
                source = value.strip().decode("latin-1")
            elif key == _ROUTE:
                route = value.strip().decode("latin-1")
        resp = Response(self, status, None if chunked else (length or 0), source)
        resp.route = route
        return resp

    # -- buffered reading ----------------------------------------------------------------------

    def _read_head(self) -> bytes:
        return self._read_until(b"\r\n\r\n", "the response headers are too long")

    def _read_until(self, end: bytes, too_long: str) -> bytes:
        """The bytes before the next ``end`` (consumed too)."""
        while True:
            at = self._buf.find(end, self._start, self._end)
            if at >= 0:
                data = bytes(self._view[self._start:at])
                self._start = at + len(end)
                return data
            if self._end - self._start > _MAX_HEAD:
                raise ValueError(too_long)
            self._fill()

    def _fill(self) -> None:
        """Receive more bytes into the buffer (at least one, or Closed)."""
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buf):
            used = self._end - self._start
            self._buf[:used] = self._view[self._start:self._end]
            self._start, self._end = 0, used
        n = self.sock.recv_into(self._view[self._end:])
        if not n:
            raise Closed("the daemon closed the connection")
        self._end += n

    def read_line(self) -> bytes:
        return self._read_until(b"\r\n", "a line of the response is too long")

    def read_into(self, view: memoryview) -> None:
        """Fill ``view`` exactly: from the buffer first, then straight from the socket."""
        need, pos = view.nbytes, 0
        have = min(self._end - self._start, need)
        if have:
            view[:have] = self._view[self._start:self._start + have]
            self._start += have
            pos = have
        while pos < need:
            if need - pos < _BUF:  # a short rest: through the buffer, it may hold what follows
                self._fill()
                take = min(self._end - self._start, need - pos)
                view[pos:pos + take] = self._view[self._start:self._start + take]
                self._start += take
                pos += take
                continue
            n = self.sock.recv_into(view[pos:])
            if not n:
                raise Closed("the daemon closed the connection mid-response")
            pos += n

    def read_bytes(self, n: int) -> bytes | bytearray | mmap.mmap:
        if n > len(self._buf):
            out = wire.receive_buffer(n)
            self.read_into(memoryview(out))
            return out
        while self._end - self._start < n:
            if self._start + n > len(self._buf):  # no room after the unread bytes: move them
                used = self._end - self._start
                self._buf[:used] = self._view[self._start:self._end]
                self._start, self._end = 0, used
            self._fill()
        data = bytes(self._view[self._start:self._start + n])
        self._start += n
        return data


class Response:
    """A response body, read exactly: through its Content-Length, or its chunks."""

    __slots__ = ("conn", "status", "left", "chunked", "ended", "source", "route")

    def __init__(self, conn: Connection, status: int, length: int | None, source: str | None = None) -> None:
        self.conn, self.status, self.source = conn, status, source
        self.route: str | None = None  # a head's x-tether-route: "<node> <name>" (client/routes.py)
        self.chunked = length is None
        self.left = 0 if self.chunked else length  # bytes left in the body, or the current chunk
        self.ended = not self.chunked and length == 0

    def _next_chunk(self) -> bool:
        """Move to the next chunk; False at the last (empty) one."""
        line = self.conn.read_line()
        if not line:  # the CRLF that ends the previous chunk
            line = self.conn.read_line()
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while self.conn.read_line():
                pass  # trailers, up to the blank line
            self.ended = True
            return False
        self.left = size
        return True

    def at_end(self) -> bool:
        """True once the whole body was read (reads the last chunk marker if that is all left)."""
        if not self.ended and self.chunked and self.left == 0:
            self._next_chunk()
        return self.ended

    def read(self, n: int) -> bytes | bytearray:
        """Exactly ``n`` bytes of the body (raises Closed if it ends first)."""
        if n == 0:
            return b""
        if not self.chunked and n <= self.left:
            data = self.conn.read_bytes(n) if n <= wire.BIG_PAYLOAD else self._read_big(n)
            self.left -= n
            self.ended = self.left == 0
            return data
        if not self.chunked:
            raise Closed(f"the response body ended {n - self.left} bytes short")
        if n > wire.BIG_PAYLOAD:
            return self._read_big(n)
        parts, need = [], n
        while need:
            if self.left == 0 and not self._next_chunk():
                raise Closed("the response body ended in the middle of a message")
            take = min(need, self.left)
            parts.append(self.conn.read_bytes(take))
            self.left -= take
            need -= take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_big(self, n: int) -> bytearray | mmap.mmap:
        out = wire.receive_buffer(n)
        view, pos = memoryview(out), 0
        if not self.chunked:
            self.conn.read_into(view)
            return out
        while pos < n:
            if self.left == 0 and not self._next_chunk():
                raise Closed("the response body ended in the middle of a message")
            take = min(n - pos, self.left)
            self.conn.read_into(view[pos:pos + take])
            self.left -= take
            pos += take
        return out

    def read_rest(self) -> bytes:
        """The rest of the body (an error's JSON, or what is left after the last message)."""
        if not self.chunked:
            data = self.read(self.left) if self.left else b""
            return data[:] if type(data) is mmap.mmap else data  # bytes for json.loads: a copy past 32 MiB
        out = []
        while self.left or self._next_chunk():
            out.append(self.read(self.left))
        return b"".join(out)

    def read_some(self) -> bytes | bytearray:
        """The next piece of the body as it arrives (one chunk, or the rest), b"" at its end: for
        a stream read as it is written (newline-delimited JSON)."""
        if not self.chunked:
            return self.read(self.left) if self.left else b""
        if self.left == 0 and not self._next_chunk():
            return b""
        return self.read(self.left)

    def read_message(self) -> wire.Message | None:
        """The next wire message of the body, or None at its end."""
        if self.at_end():
            return None
        kind, flags, nframes, call_id = wire.parse_header(self.read(wire.HEADER_SIZE))
        lens = wire.parse_lengths(self.read(8 * nframes), nframes) if nframes else ()
        total = sum(lens)
        return wire.message(kind, call_id, lens, self.read(total) if total else b"", flags)
