"""The other nodes of a multi-node cluster, as the head daemon reaches them.

The caller talks only to the head; an object placed on node ``i`` (``tether.env(compute=
{"node_idx": i})``) lives in a worker of node ``i``'s daemon, and the head forwards its deploy,
its calls, its deletion. A non-head daemon listens on its cluster address as well as on its
loopback (``--cluster-host``); the launcher tells the head where each one is and its token
(``POST /_tether/nodes``) once they are all up.

A node's cluster listener speaks TLS with a certificate the node's daemon made at start; the
launcher passes its SHA-256 (``fingerprint``) with the node's address. Every connection to the
node checks the certificate presented against it after the handshake and before the first byte
of a request (so before the node's token) is written; a mismatch is a ``NodeError`` naming the
node, and nothing is sent. A node registered without a fingerprint (a daemon of an older tether,
or started with ``--tls off``) is reached in plain HTTP.

Connections to a node are kept alive and pooled. TCP keepalive (5 s idle, 2 s apart, 3 probes)
and TCP_USER_TIMEOUT bound how long a call waits on a node whose link went down: its caller gets
``tether.ConnectionError`` naming the node within ~15 s instead of hanging, and the other nodes
keep serving. ``TETHER_NODE_LINK_TIMEOUT`` (seconds, in the head daemon's environment) scales
those 15 s (the tests cut links with 3). The head also sends each node a health request now and
then, so that a node's autostop does not stop it while the head is in use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.protocol import tls, wire
from tether.protocol.http_body import Response, read_message

log = logging.getLogger("tether.daemon")

CONNECT_TIMEOUT = 10.0
LINK_TIMEOUT = 15.0
_MAX_IDLE = 32


class NodeError(Exception):
    """A node cannot be reached, or its link dropped mid-request."""

    def __init__(self, link: NodeLink, what: str, exc: BaseException | None = None) -> None:
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        super().__init__(f"node {link.index} ({link.label}, {link.host}:{link.port}) {what}{detail}. "
                         "The other nodes keep serving; check the node, then cluster.up_if_not().")
        self.index, self.label = link.index, link.label


class UnknownNode(LookupError):
    pass


@dataclass
class NodeLink:
    index: int
    host: str
    port: int
    token: str
    label: str = ""
    fingerprint: str | None = None  # the SHA-256 of the node's TLS certificate; None: plain HTTP
    _idle: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.label = self.label or self.host
        if self.fingerprint is not None:
            self.fingerprint = tls.normalize(self.fingerprint)
        self._ssl = tls.client_context() if self.fingerprint else None
        self.set_token(self.token)

    def set_token(self, token: str) -> None:
        """Use ``token`` from the next request on (after the node's token was rotated)."""
        self.token = token
        self._fixed = (f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
                       f"{wire.VERSION_HEADER}: {wire.PROTOCOL_VERSION}\r\n")

    def info(self) -> dict[str, Any]:
        return {"index": self.index, "host": self.host, "port": self.port, "label": self.label,
                "tls": self.fingerprint is not None}

    async def _connect(self):
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing() and not reader._buffer:  # noqa: SLF001
                return reader, writer
            writer.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=1 << 20, ssl=self._ssl), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise NodeError(self, "cannot be reached" if self._ssl is None else
                            "cannot be reached over TLS", exc) from exc
        if self.fingerprint is not None:
            try:  # before anything is written: the token goes to the pinned node only
                tls.check_pin(writer.get_extra_info("ssl_object").getpeercert(binary_form=True),
                              self.fingerprint, f"node {self.index} ({self.label}, {self.host}:{self.port})")
            except tls.PinMismatch as exc:
                writer.transport.abort()
                log.error("%s", exc)
                raise NodeError(self, "is not the daemon the launcher registered (TLS pin mismatch)",
                                exc) from exc
        _keepalive(writer.get_extra_info("socket"))
        return reader, writer

    async def request(self, verb: str, target: str, headers: Sequence[tuple[str, str]],
                      parts: Sequence[wire.Buffer]) -> Upstream:
        """Send a request (``target``: path and query) and read the response's head."""
        upstream = await self.send(verb, target, headers, parts)
        await upstream.begin()
        return upstream

    async def send(self, verb: str, target: str, headers: Sequence[tuple[str, str]],
                   parts: Sequence[wire.Buffer]) -> Upstream:
        """Send a request; ``await upstream.begin()`` reads the answer's head (a call's answer
        starts when its first message is ready, which may be long)."""
        reader, writer = await self._connect()
        length = sum(memoryview(p).nbytes for p in parts)
        head = f"{verb} {target} HTTP/1.1\r\n{self._fixed}Content-Length: {length}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        try:
            if length <= 1 << 16:  # one TLS record and one system call (writelines: one per part)
                writer.write(b"".join([head.encode("latin-1"), *parts]))
            else:
                writer.writelines([head.encode("latin-1"), *parts])
            await writer.drain()
        except OSError as exc:
            writer.close()
            raise NodeError(self, "dropped the connection while receiving the request", exc) from exc
        return Upstream(self, reader, writer, Response(reader))

    def _release(self, reader, writer) -> None:
        if len(self._idle) < _MAX_IDLE and not writer.is_closing():
            self._idle.append((reader, writer))
        else:
            writer.close()

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class Upstream:
    """A node's response being read: its wire messages, or its whole body."""

    def __init__(self, link: NodeLink, reader, writer, resp: Response) -> None:
        self.link, self.reader, self.writer, self.resp = link, reader, writer, resp
        self.status = 0
        self._done = False

    async def begin(self) -> int:
        """Read the answer's status line and headers; returns the status."""
        try:
            await self.resp.start()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            raise NodeError(self.link, "stopped answering (its connection dropped or timed out)", exc) from exc
        self.status = self.resp.status
        return self.status

    async def message(self) -> wire.Message | None:
        try:
            msg = await read_message(self.resp)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            raise NodeError(self.link, "dropped the connection mid-call", exc) from exc
        if msg is None:
            self._finish()
        return msg

    async def body(self) -> bytes:
        try:
            data = await self.resp.read_rest()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            raise NodeError(self.link, "dropped the connection mid-answer", exc) from exc
        self._finish()
        return data

    async def chunks(self):
        """The body as it comes, piece by piece (a follow stream passed through); the connection
        goes back to the pool at its end, and is dropped if the reader stops before."""
        ended = False
        try:
            while not await self.resp.at_end():
                yield await self.resp.read_exact(self.resp.remaining)
            ended = True
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise NodeError(self.link, "dropped the connection mid-answer", exc) from exc
        finally:
            if ended:
                self._finish()
            else:
                self.close()

    async def end(self) -> None:
        """After the last message: read the body's end, so that the connection goes back to the
        pool (without this, every forwarded call opened a new connection: a TLS handshake each)."""
        try:
            ended = await self.resp.at_end()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            ended = False
        if ended:
            self._finish()
        else:
            self.close()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.link._release(self.reader, self.writer)  # noqa: SLF001

    def close(self) -> None:
        """Drop the connection (the node sees its caller go: a generator there stops)."""
        if not self._done:
            self._done = True
            self.writer.close()


class Nodes:
    """The table the launcher sends: node index -> link. Index 0 (the head itself) is absent."""

    def __init__(self) -> None:
        self.links: dict[int, NodeLink] = {}
        self.ping_seconds: float | None = None
        self._pinger: asyncio.Task | None = None

    def set(self, nodes: list[dict[str, Any]], ping_seconds: float | None = None) -> None:
        """Replace the table; a ValueError (before anything changed) for a malformed pin."""
        links = {int(n["index"]): NodeLink(int(n["index"]), str(n["host"]), int(n["port"]),
                                           str(n["token"]), str(n.get("label") or ""),
                                           n.get("fingerprint") or None)
                 for n in nodes if int(n["index"]) != 0}  # a bad pin raises before anything changes
        for link in self.links.values():
            link.close()
        self.links = links
        self.ping_seconds = ping_seconds
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        if ping_seconds and self.links:
            self._pinger = asyncio.ensure_future(self._ping_forever(ping_seconds))

    def get(self, index: int) -> NodeLink:
        link = self.links.get(index)
        if link is None:
            known = ", ".join(str(i) for i in sorted(self.links)) or "none"
            raise UnknownNode(f"this cluster's head knows no node {index} (other nodes: {known}); "
                              "cluster.up_if_not() registers every node with the head")
        return link

    def info(self) -> list[dict[str, Any]]:
        return [link.info() for _, link in sorted(self.links.items())]

    async def rotate_tokens(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Rotate every node's token (``POST /_tether/token`` there), in parallel; each link
        uses its node's new token as soon as it has it. Returns ([{index, token}], [{index,
        error}]): a node that failed keeps its old token, and so does its link."""

        async def one(link: NodeLink) -> dict[str, Any]:
            upstream = await link.request("POST", "/_tether/token", [], [])
            body = await upstream.body()
            try:
                token = json.loads(body)["token"] if upstream.status == 200 else None
            except (ValueError, KeyError, TypeError):
                token = None
            if not isinstance(token, str) or not token:
                raise NodeError(link, f"did not rotate its token (HTTP {upstream.status}: "
                                f"{body[:300].decode(errors='replace')})")
            link.set_token(token)
            return {"index": link.index, "token": token}

        links = [link for _, link in sorted(self.links.items())]
        results = await asyncio.gather(*(one(link) for link in links), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, NodeError):
                raise r  # not a node's failure: a bug, or this request being cancelled
        rotated = [r for r in results if isinstance(r, dict)]
        failed = [{"index": link.index, "error": str(r)} for link, r in zip(links, results, strict=True)
                  if isinstance(r, NodeError)]
        return rotated, failed

    async def _ping_forever(self, seconds: float) -> None:
        """Keep the nodes' autostop from stopping them while the head itself is alive."""
        while True:
            await asyncio.sleep(seconds)
            for link in list(self.links.values()):
                try:
                    upstream = await link.request("GET", "/health", [], [])
                    await upstream.body()
                except NodeError as exc:
                    log.warning("%s", exc)

    def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        for link in self.links.values():
            link.close()


def link_timeout() -> float:
    """Seconds a silent link to a node is given (``TETHER_NODE_LINK_TIMEOUT``, default 15)."""
    raw = os.environ.get("TETHER_NODE_LINK_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else LINK_TIMEOUT
    except ValueError:
        value = LINK_TIMEOUT
    return value if value >= 1 else LINK_TIMEOUT


def _keepalive(sock: socket.socket | None) -> None:
    if sock is None:
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    limit = link_timeout()  # 15 s: 5 s idle, then 3 probes 2 s apart; a shorter one scales them
    idle, interval = max(1, round(limit / 3)), max(1, round(limit * 2 / 15))
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 3),
                        ("TCP_USER_TIMEOUT", int(limit * 1000))):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
