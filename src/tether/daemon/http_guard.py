"""The daemon's HTTP edge: what a connection may cost before anyone knows who opened it, and the
one answer to an unexpected error.

The bearer token is checked once a request's headers are complete (``app.DaemonApp``, before any
body is read), so everything up to that point is open to whoever reaches the port. uvicorn's
httptools protocol bounds none of it: a header may be any size (and httptools joins its pieces
with ``bytes +=``, a cost that grows with the square of its length: 64 MiB took 3 s of the
daemon's CPU, stalling every other caller), a connection may take forever to send its headers
(slowloris), and idle connections are kept until the open-files limit locks everyone out.
``GuardedProtocol`` is uvicorn's protocol with these bounds (env knobs, read at daemon start):

====================================  =======  ==================================================
``TETHER_MAX_HEADER_BYTES``           64 KiB   request line + headers; more is answered 431
``TETHER_MAX_HEADERS``                100      header fields; more is answered 431
``TETHER_HEADER_TIMEOUT``             20 s     from connecting, or from a request's first byte,
                                               to the end of its headers: 408 then closed (a
                                               connection that sent nothing is just closed)
``TETHER_KEEP_ALIVE``                 75 s     idle time between requests on a connection
``TETHER_MAX_CONNECTIONS``            4096     open connections in all (at most the open-files
                                               limit less a reserve for workers and files)
``TETHER_MAX_CONNECTIONS_PER_PEER``   2048     open connections from one address
====================================  =======  ==================================================

A connection over a cap first makes room: the connection (of that peer, then anyone's) that has
been idle the longest, with no request in progress, is closed, as a keep-alive timeout would
(tether's clients check a pooled connection before reusing it). Only when every connection is
busy is the newcomer answered 503 and closed. A refused connection is answered, its write side
shut, and its input discarded for ``LINGER_SECONDS`` before the close, so that a client still
sending reads the answer instead of a reset.

Why these numbers: tether's own clients send a head of a few hundred bytes in one write, keep one
connection per thread and up to 256 idle ones per event loop, and ``make bench`` runs 16 threads,
64 async calls and ``wrk -c64`` at once (150 connections); the round-two target is 1,000
concurrent clients. Every limit sits well above that; curl and browsers stay under 8 KiB of head.
The daemon raises its open-files soft limit to the hard limit at start (``raise_open_files``).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import os
import resource
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("tether.daemon")

LINGER_SECONDS = 2.0
MAX_LINGERING = 64  # refused connections kept reading at once; beyond that, closed at once
OPEN_FILES_CEILING = 1 << 20  # a soft limit higher than this slows tools that walk every fd


@dataclass(frozen=True)
class EdgeLimits:
    """The bounds of the HTTP edge (see the module's docstring)."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 20.0
    keep_alive: float = 75.0
    max_connections: int = 4096
    max_per_peer: int = 2048

    @classmethod
    def from_env(cls, open_files: int | None = None) -> EdgeLimits:
        """The limits from ``TETHER_*`` knobs; ``open_files`` (the soft limit) caps the connections,
        keeping a reserve of a quarter (at least 256) for workers, logs and shared memory, and room
        for the refused connections still lingering."""
        d = cls()
        total = _knob("TETHER_MAX_CONNECTIONS", d.max_connections, int)
        if open_files:
            total = min(total, max(16, open_files - max(256, open_files // 4) - MAX_LINGERING))
        return cls(max_header_bytes=_knob("TETHER_MAX_HEADER_BYTES", d.max_header_bytes, int),
                   max_headers=_knob("TETHER_MAX_HEADERS", d.max_headers, int),
                   header_timeout=_knob("TETHER_HEADER_TIMEOUT", d.header_timeout, float),
                   keep_alive=_knob("TETHER_KEEP_ALIVE", d.keep_alive, float),
                   max_connections=total,
                   max_per_peer=min(total, _knob("TETHER_MAX_CONNECTIONS_PER_PEER", d.max_per_peer, int)))

    def protocol(self) -> type[GuardedProtocol]:
        """The protocol class to pass as ``uvicorn.Config(http=...)``: one per server, sharing
        the server's book of connections."""
        book = _Book(self)
        return type("GuardedProtocol", (GuardedProtocol,), {
            "limits": self, "book": book, "idle": book.idle, "max_head": self.max_header_bytes,
            "max_headers": self.max_headers})


def _knob(name: str, default, kind):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a positive {'integer' if kind is int else 'number'}, not {raw!r}")
    return value


def raise_open_files() -> int:
    """Raise this process's open-files soft limit to its hard limit (capped at 2^20); the soft
    limit now. Each connection is a file: under the common 1024, a thousand idle connections
    locked every new client out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_CEILING)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
    return soft


class _Peer:
    __slots__ = ("address", "count", "idle")

    def __init__(self, address: str) -> None:
        self.address, self.count = address, 0
        self.idle: dict[GuardedProtocol, None] = {}  # insertion order: idle the longest first


class _Book:
    """A server's connections: how many in all and per peer, and which are idle (no request in
    progress), the longest idle first."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.total = 0
        self.peers: dict[str, _Peer] = {}
        self.idle: dict[GuardedProtocol, None] = {}
        self.lingering = 0

    def admit(self, conn: GuardedProtocol, address: str) -> str | None:
        """Count a new connection in, closing the longest idle one over a cap; the reason to
        refuse it when every connection is busy."""
        limits = self.limits
        peer = self.peers.get(address)
        if peer is None:
            peer = self.peers[address] = _Peer(address)
        if peer.count >= limits.max_per_peer:
            if not peer.idle:
                return (f"too many connections from {address}: {peer.count} open, each with a request "
                        f"in progress (TETHER_MAX_CONNECTIONS_PER_PEER={limits.max_per_peer} on the "
                        "daemon); retry when one ends")
            next(iter(peer.idle)).evict()
        if self.total >= limits.max_connections:
            if not self.idle:
                return (f"too many connections to this daemon: {self.total} open, each with a request "
                        f"in progress (TETHER_MAX_CONNECTIONS={limits.max_connections} on the daemon, "
                        "bounded by its open-files limit); retry when one ends")
            next(iter(self.idle)).evict()
        peer.count += 1
        self.total += 1
        self.idle[conn] = peer.idle[conn] = None
        conn.peer = peer
        return None

    def forget(self, conn: GuardedProtocol) -> None:
        peer = conn.peer
        if peer is None:
            return
        conn.peer = None
        peer.count -= 1
        self.total -= 1
        self.idle.pop(conn, None)
        peer.idle.pop(conn, None)
        if not peer.count:
            del self.peers[peer.address]


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of the module's docstring.

    Head bytes are counted as they arrive, before the parser sees them, while a request's head is
    incomplete (``in_head``): at most one read (256 KiB) past the limit is ever parsed. Timers: the
    header timer runs from connecting, or from the first bytes of a request that did not complete
    its head in one read; uvicorn's keep-alive timer runs from a response to the next request
    (bytes of a request body nobody reads any more, after an early answer, do not restart it).
    """

    limits: ClassVar[EdgeLimits]
    book: ClassVar[_Book]
    idle: ClassVar[dict]  # the book's, and the limits read per request: one lookup each
    max_head: ClassVar[int]
    max_headers: ClassVar[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keep_alive
        self.peer: _Peer | None = None
        self.in_head = True
        self.head_bytes = 0
        self.header_timer: asyncio.TimerHandle | None = None
        self.refused: tuple[int, str, str] | None = None
        self.lingering = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.out = _HeadWithBody(transport, self.loop)
        reason = self.book.admit(self, self.client[0] if self.client else "")
        if reason is not None:
            self.refuse(503, "too_many_connections", reason)
            return
        self.header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.book.forget(self)
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        if self.lingering:
            self.lingering = False
            self.book.lingering -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused is not None:
            return  # answered: the rest is discarded until the close
        if self.in_head:
            self.head_bytes += len(data)
            if self.timeout_keep_alive_task is not None:  # a new request: no longer idle
                self.timeout_keep_alive_task.cancel()
                self.timeout_keep_alive_task = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.refused is not None:  # decided in a parser callback
                status, kind, message = self.refused
                self.refused = None
                self.refuse(status, kind, message)
            else:  # uvicorn's answer, without its log line (anyone could fill the log)
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # the daemon serves no websockets
            return
        if self.in_head and self.head_bytes:
            if self.head_bytes > self.max_head:
                self.refuse(431, "headers_too_large",
                            f"the request line and headers exceed {self.limits.max_header_bytes} bytes "
                            "(TETHER_MAX_HEADER_BYTES on the daemon)")
            elif self.header_timer is None:
                self.header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)

    # The three below run on every request (the base class is named, not super(): this is the
    # daemon's hot path).

    def on_headers_complete(self) -> None:
        if len(self.headers) > self.max_headers:
            self.refused = (431, "headers_too_large",
                            f"{len(self.headers)} header fields, more than {self.max_headers} "
                            "(TETHER_MAX_HEADERS on the daemon)")
            raise _Refused
        self.in_head = False
        self.head_bytes = 0
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        peer = self.peer
        if peer is not None:  # busy until its response is complete
            self.idle.pop(self, None)  # (not there when pipelined behind a running request)
            peer.idle.pop(self, None)
        HttpToolsProtocol.on_headers_complete(self)
        cycle = self.cycle
        if cycle is not None:
            cycle.transport = self.out  # its response's head goes out with the body that follows

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        self.in_head = True  # what comes next is the next request's head
        self.head_bytes = 0

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        HttpToolsProtocol.on_response_complete(self)
        peer = self.peer
        if peer is not None and not pipelined:
            self.idle[self] = peer.idle[self] = None

    def _unsupported_upgrade_warning(self) -> None:
        self.logger.debug("an upgrade request was ignored")

    def _header_timeout(self) -> None:
        self.header_timer = None
        if self.transport.is_closing() or not self.in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # bytes after a request whose answer is still being made (a pipelined head, a stray
            # CRLF): its clock starts once that answer is out, a long call is never cut for them
            self.header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)
            return
        if self.head_bytes:
            self.refuse(408, "request_timeout",
                        f"the request's headers did not arrive within {self.limits.header_timeout:g} s "
                        "(TETHER_HEADER_TIMEOUT on the daemon)")
        else:  # connected and sent nothing: closed like an idle keep-alive connection
            self.evict()

    def evict(self) -> None:
        """Close this connection, idle, to make room (or after its idle time)."""
        self.book.forget(self)
        if not self.transport.is_closing():
            self.out.flush()  # the end of its last response may still be held
            self.transport.close()

    def shutdown(self) -> None:
        self.out.flush()
        super().shutdown()

    def refuse(self, status: int, kind: str, message: str) -> None:
        """Answer ``status`` and close: the answer first, then input discarded for a moment."""
        if self.refused is not None or self.transport.is_closing():
            return
        self.refused = (status, kind, message)
        self.book.forget(self)
        for timer in (self.header_timer, self.timeout_keep_alive_task):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.timeout_keep_alive_task = None
        transport = self.transport
        if self.cycle is not None and not self.cycle.response_complete:
            transport.close()  # a response is under way on this connection: it cannot be answered
            return
        self.out.flush()  # what is held of the previous response goes first
        transport.write(answer(status, kind, message))
        if self.book.lingering >= MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.flow.resume_reading()
        self.lingering = True
        self.book.lingering += 1
        self.loop.call_later(LINGER_SECONDS, transport.close)


class _HeadWithBody:
    """A connection's transport as its responses see it: a small write (a response's head) is
    held until the next write, which takes it along, or until the event loop's next turn.

    uvicorn writes a response's status line and headers, then its body, in two writes: two
    system calls and two TCP segments for every small answer, and a caller that may wake up
    for each. A call's answer is sent as both at once (``responses.send_message``), so here it
    becomes one write. At most ``HOLD`` bytes are ever held, never past the loop's turn."""

    HOLD = 4096
    __slots__ = ("transport", "loop", "held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport, self.loop = transport, loop
        self.held: bytes | None = None

    def write(self, data) -> None:
        held = self.held
        if held is not None:
            self.held = None
            if len(data) <= 1 << 16:
                self.transport.write(held + data)
                return
            self.transport.write(held)
        elif len(data) <= self.HOLD and not self.transport.is_closing():
            self.held = bytes(data)
            self.loop.call_soon(self.flush)
            return
        self.transport.write(data)

    def flush(self) -> None:
        held = self.held
        if held is not None:
            self.held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.flush()
        self.transport.close()


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; ``GuardedProtocol.refused`` says why."""


# -- an unexpected error: one answer, one log line --------------------------------------------------


def internal_error(exc: BaseException, scope: dict[str, Any]) -> dict[str, Any]:
    """Log ``exc`` with its traceback under a new error id; the JSON body of the 500 that says
    which id to look for in the daemon's log."""
    error_id = uuid.uuid4().hex[:12]
    where = f"{scope.get('method', '?')} {scope.get('path', '?')}"
    log.error("internal error on %s, error id %s", where, error_id, exc_info=exc)
    text = str(exc)[:300]
    return {"error": "internal", "error_id": error_id,
            "message": f"the daemon failed on {where} with {type(exc).__name__}{': ' + text if text else ''} "
                       f"(error id {error_id}: the daemon's log, daemon.log in the cluster's state dir, "
                       "has its traceback)"}


async def answer_internal_error(send, exc: BaseException, scope: dict[str, Any]) -> bool:
    """Answer 500 with an error id (logged with the traceback); False when the response had
    already started (then only the connection's close can tell the caller)."""
    body = json.dumps(internal_error(exc, scope)).encode()
    try:
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"%d" % len(body))]})
    except RuntimeError:  # uvicorn: a response is already under way
        return False
    await send({"type": "http.response.body", "body": body})
    return True


def answer(status: int, kind: str, message: str) -> bytes:
    """A whole HTTP response that closes the connection, written before any app runs."""
    body = json.dumps({"error": kind, "message": message}).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, http.HTTPStatus(status).phrase.encode(), len(body))) + body
