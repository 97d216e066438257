"""The async call path: HTTP/1.1 over raw asyncio streams, a keep-alive pool per event loop.

Measured here, httpx's AsyncClient managed a tenth of the calls/s of a lean client with 64 calls
in flight (DESIGN.md); asyncio streams are that lean client, with no dependency. Only what tether's
daemon speaks is implemented (``tether.protocol.http_body``): Content-Length and chunked
responses, no redirects; TLS pinned to the daemon's certificate when the client has a
``fingerprint`` (checked before the request is written, as in ``http11``). Messages are read
through the same ``Reply`` as the sync client's (``tether.client.replies``).

A call with a timeout (``acall_within``) runs under ``asyncio.timeout``: on expiry the task's
cancellation cancels the remote call (as any cancellation does) and ``tether.CallTimeoutError``
is raised; a generator's next item gets the timeout again, each.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tether.client.replies import Reply
from tether.protocol import shm, wire
from tether.protocol.http_body import Response, read_message

if TYPE_CHECKING:
    from tether.client.daemon_client import DaemonClient

_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> {client id: _Pool}
_MAX_IDLE = 256


class _Pool:
    def __init__(self, host: str, port: int, fingerprint: str | None = None) -> None:
        self.host, self.port, self.fingerprint = host, port, fingerprint
        self.ssl = None
        if fingerprint:
            from tether.protocol import tls  # ssl: imported only by those who need it

            self.ssl = tls.client_context()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing() and not reader._buffer:  # noqa: SLF001
                return reader, writer
            writer.close()
        if self.ssl is None:
            return await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        from tether.protocol import tls

        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20, ssl=self.ssl)
        try:  # before the request (and its token) is written
            tls.check_pin(writer.get_extra_info("ssl_object").getpeercert(binary_form=True),
                          self.fingerprint, f"the daemon at {self.host}:{self.port}")
        except tls.PinMismatch:
            writer.transport.abort()
            raise
        return reader, writer

    def close(self) -> None:
        """Forget the idle connections (to a daemon this client no longer uses)."""
        while self.idle:
            self.idle.pop()[1].close()

    def put(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.idle) < _MAX_IDLE and not writer.is_closing():
            self.idle.append((reader, writer))
        else:
            writer.close()


def _pool(client: DaemonClient) -> _Pool:
    loop = asyncio.get_running_loop()
    pools = _pools.setdefault(loop, {})
    pool = pools.get(id(client))
    if pool is None or pool.port != client.port or pool.host != client.host:  # new, or moved
        if pool is not None:
            pool.close()
        pool = pools[id(client)] = _Pool(client.host, client.port, client.fingerprint)
    return pool


async def _request(client: DaemonClient, pool: _Pool, path: str, parts: Sequence[wire.Buffer],
                   headers: dict[str, str], verb: str = "POST"):
    length = sum(memoryview(p).nbytes for p in parts)
    head = "".join([f"{verb} {path} HTTP/1.1\r\nContent-Type: {wire.CONTENT_TYPE}\r\nContent-Length: {length}\r\n",
                    *[f"{k}: {v}\r\n" for k, v in headers.items()]])
    try:
        reader, writer = await pool.get()
    except OSError as exc:
        tried = (pool.host, pool.port)
        if not isinstance(exc, ConnectionRefusedError) or not await asyncio.to_thread(client.relocate, tried):
            raise client._unsent(exc) from exc
        # the daemon moved (restarted elsewhere) and nothing was sent: once more, at its new address
        return await _request(client, _pool(client), path, parts, headers, verb)
    if client._token_source is not None and time.time() >= client._renew_at:
        await asyncio.to_thread(client.renew)  # a shared cluster's grant, renewed before it expires
    # the headers every request carries (host, token, protocol, accept) were encoded once
    writer.writelines([head.encode("latin-1") + client._fixed_headers + b"\r\n", *parts])
    await writer.drain()
    resp = Response(reader)
    await resp.start()
    return reader, writer, resp


async def _next(resp: Response, reply: Reply) -> wire.Message:
    """The next message the caller acts on (LOGs printed, an ERROR raised on the way), as in the
    sync client; after a RESULT or an ERROR the body is read to its end."""
    while True:
        with reply.transport():
            msg = await read_message(resp)
            if msg is not None and msg.kind in wire.TERMINAL_KINDS:
                await resp.at_end()
        msg = reply.take(msg)
        if msg is not None:
            return msg


async def acall_within(client: DaemonClient, name: str, method: str, args: Sequence[Any],
                       kwargs: dict | None, stream_logs: bool, call_id: str, timeout: float) -> Any:
    """``acall`` bounded by ``timeout`` seconds (to its result, or to a generator's first item)."""
    try:
        async with asyncio.timeout(timeout) as scope:
            return await acall(client, name, method, args, kwargs, stream_logs, call_id, timeout)
    except TimeoutError:
        if not scope.expired():
            raise  # the remote code's own TimeoutError
        raise _timed_out(client, name, method, call_id, stream_logs, timeout) from None


def _timed_out(client: DaemonClient, name: str, method: str, call_id: str, stream_logs: bool,
               timeout: float, item: bool = False):
    return client.reply({"service": name, "method": method, "call_id": call_id},
                        stream_logs).within(timeout, item).expired()


async def acall(client: DaemonClient, name: str, method: str, args: Sequence[Any], kwargs: dict | None,
                stream_logs: bool, call_id: str, item_timeout: float | None = None) -> Any:
    reply = client.reply({"service": name, "method": method, "call_id": call_id}, stream_logs)
    headers = {wire.CALL_ID_HEADER: call_id}
    if not stream_logs:
        headers[wire.STREAM_LOGS_HEADER] = "0"
    frames, flags, shared = client.call_frames(args, kwargs, headers)
    pool = _pool(client)
    writer = None
    reusable = False
    try:
        with reply.transport():
            reader, writer, resp = await _request(client, pool, f"/{name}/{method}",
                                                  wire.encode(wire.CALL, frames, 0, flags), headers)
            if pool.port != client.port or pool.host != client.host:  # it followed the daemon
                pool = _pool(client)
            if resp.status != 200:
                body = await resp.read_rest()
                reusable = True
            else:  # most calls answer one message: read it here, under the same boundary
                msg = await read_message(resp)
                if msg is not None and msg.kind in wire.TERMINAL_KINDS:
                    await resp.at_end()
        if resp.status != 200:
            error = reply.http_error(resp.status, body)
            error.http_status = resp.status  # answered before anything ran (client/routes.py)
            raise error
        if resp.route is not None and client.router is not None:
            client.router.learn(name, resp.route.decode("latin-1"))
        if resp.source is not None:
            reply.source = resp.source.decode("latin-1")
            if client.mark is not None:
                reply.source += f" {client.mark}"
        try:
            msg = reply.take(msg) or await _next(resp, reply)
        finally:
            reusable = resp.eof  # read whole (a RESULT, or an ERROR raised): the connection is reusable
        if msg.kind == wire.STREAM:
            owned, writer = writer, None  # the async iterator owns the connection now
            return _aiterate(client, pool, reader, owned, resp, reply, item_timeout)
        if msg.kind != wire.RESULT:
            raise reply.lost(ValueError(f"a {msg.kind} message before the call's result"))
        return client.value(msg, f"the result of {name}.{method}", reply.context)
    except asyncio.CancelledError:
        _cancel_in_background(client, call_id)
        raise
    finally:
        shm.discard(client.shm, shared)
        if writer is not None:
            if reusable:
                pool.put(reader, writer)
            else:
                writer.close()


async def _aiterate(client: DaemonClient, pool: _Pool, reader, writer, resp: Response, reply: Reply,
                    timeout: float | None = None):
    try:
        while True:
            if timeout is None:
                msg = await _next(resp, reply)
            else:
                msg = await _next_within(client, resp, reply, timeout)
            if msg.kind == wire.ITEM:
                yield wire.loads(msg.frames, "a generator item")
            elif msg.kind == wire.RESULT:
                return
    finally:
        if resp.eof:  # read whole
            pool.put(reader, writer)
        else:  # closing early: the daemon sees the connection go and stops the remote generator
            writer.close()


async def _next_within(client: DaemonClient, resp: Response, reply: Reply, timeout: float) -> wire.Message:
    """A generator's next item within ``timeout``: else the remote call is cancelled, and
    CallTimeoutError raised (the iterator then closes its connection)."""
    try:
        async with asyncio.timeout(timeout) as scope:
            return await _next(resp, reply)
    except TimeoutError:
        if not scope.expired():
            raise
        ctx = reply.context
        _cancel_in_background(client, ctx["call_id"])
        raise _timed_out(client, ctx["service"], ctx["method"], ctx["call_id"], reply.stream_logs,
                         timeout, item=True) from None


def _cancel_in_background(client: DaemonClient, call_id: str) -> None:
    """A cancelled task cancels its remote call (in a thread: we are being cancelled ourselves)."""
    import threading

    threading.Thread(target=client.cancel, args=(call_id,), kwargs={"quiet": True}, daemon=True).start()
