"""The async call path: HTTP/1.1 over raw asyncio streams, a keep-alive pool per event loop.

Measured here, httpx's AsyncClient managed a tenth of the calls/s of a lean client with 64 calls
in flight (DESIGN.md); asyncio streams are that lean client, with no dependency. Only what tether's
daemon speaks is implemented: Content-Length and chunked responses, no redirects, no TLS yet.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tether.core import errors, shm, wire

if TYPE_CHECKING:
    from tether.core.client import DaemonClient

_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> {client id: _Pool}
_MAX_IDLE = 256


class _Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing() and not reader._buffer:  # noqa: SLF001
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    def put(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.idle) < _MAX_IDLE and not writer.is_closing():
            self.idle.append((reader, writer))
        else:
            writer.close()


def _pool(client: DaemonClient) -> _Pool:
    loop = asyncio.get_running_loop()
    pools = _pools.setdefault(loop, {})
    pool = pools.get(id(client))
    if pool is None:
        pool = pools[id(client)] = _Pool(client.host, client.port)
    return pool


class Response:
    """Status, headers, and a body read exactly, through Content-Length or chunked framing."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.status = 0
        self.chunked = False
        self.remaining = 0  # Content-Length left, or bytes left in the current chunk
        self.eof = False

    async def start(self) -> None:
        line = await self.reader.readline()
        if not line:
            raise ConnectionResetError("the daemon closed the connection")
        self.status = int(line.split(None, 2)[1])
        while True:
            header = await self.reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            key, _, value = header.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                self.remaining = int(value.strip())
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
        self.eof = not self.chunked and self.remaining == 0

    async def read_exact(self, n: int) -> bytes:
        if n == 0:
            return b""
        if not self.chunked:
            if n > self.remaining:
                raise asyncio.IncompleteReadError(b"", n)
            data = await self.reader.readexactly(n)
            self.remaining -= n
            self.eof = self.remaining == 0
            return data
        parts, need = [], n
        while need:
            if self.remaining == 0 and not await self._next_chunk():
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            take = min(need, self.remaining)
            parts.append(await self.reader.readexactly(take))
            self.remaining -= take
            need -= take
            if self.remaining == 0:
                await self.reader.readexactly(2)  # the chunk's CRLF
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _next_chunk(self) -> bool:
        if self.eof:
            return False
        size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            self.eof = True
            return False
        self.remaining = size
        return True

    async def read_rest(self) -> bytes:
        if not self.chunked:
            return await self.read_exact(self.remaining)
        out = []
        while self.remaining or await self._next_chunk():
            out.append(await self.read_exact(self.remaining))
        return b"".join(out)

    async def at_end(self) -> bool:
        """True once the body is fully read (reads the final empty chunk if that is all that's left)."""
        if self.chunked and not self.eof and self.remaining == 0:
            await self._next_chunk()
        return self.eof


async def read_message(resp: Response) -> wire.Message | None:
    if await resp.at_end():
        return None
    kind, flags, nframes, call_id = wire.parse_header(await resp.read_exact(wire.HEADER_SIZE))
    lens = wire.parse_lengths(await resp.read_exact(8 * nframes), nframes) if nframes else ()
    total = sum(lens)
    return wire.message(kind, call_id, lens, await resp.read_exact(total) if total else b"", flags)


async def _request(client: DaemonClient, pool: _Pool, path: str, parts: Sequence[wire.Buffer],
                   headers: dict[str, str]):
    length = sum(memoryview(p).nbytes for p in parts)
    head = [f"POST {path} HTTP/1.1", f"Host: {client.host}:{client.port}",
            f"Authorization: {client._auth}", f"Content-Type: {wire.CONTENT_TYPE}",
            f"Content-Length: {length}", f"{wire.VERSION_HEADER}: {wire.PROTOCOL_VERSION}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    try:
        reader, writer = await pool.get()
    except OSError as exc:
        raise client._unreachable(exc) from exc
    writer.writelines([("\r\n".join(head) + "\r\n\r\n").encode(), *parts])
    await writer.drain()
    resp = Response(reader)
    await resp.start()
    return reader, writer, resp


async def acall(client: DaemonClient, name: str, method: str, args: Sequence[Any], kwargs: dict | None,
                stream_logs: bool, call_id: str) -> Any:
    from tether.core.client import _print_log

    context = {"cluster": client.cluster, "service": name, "method": method, "call_id": call_id}
    headers = {wire.CALL_ID_HEADER: call_id}
    if not stream_logs:
        headers[wire.STREAM_LOGS_HEADER] = "0"
    frames, flags, shared = client.call_frames(args, kwargs, headers)
    pool = _pool(client)
    writer = None
    reusable = False
    remote_error = None
    try:
        reader, writer, resp = await _request(client, pool, f"/{name}/{method}",
                                              wire.encode(wire.CALL, frames, 0, flags), headers)
        if resp.status != 200:
            body = await resp.read_rest()
            reusable = True
            raise client._http_error(resp.status, body, service=name, method=method, call_id=call_id)
        while True:
            msg = await read_message(resp)
            if msg is None:
                raise errors.ConnectionError(
                    f"the connection to cluster {client.cluster!r} closed before the call finished", **context)
            if msg.kind == wire.LOG:
                if stream_logs:
                    _print_log(msg)
            elif msg.kind == wire.STREAM:
                owned, writer = writer, None  # the async iterator owns the connection now
                return _aiterate(client, pool, reader, owned, resp, stream_logs, context)
            elif msg.kind == wire.RESULT:
                reusable = await resp.at_end()
                return client.value(msg, f"the result of {name}.{method}", context)
            elif msg.kind == wire.ERROR:
                reusable = await resp.at_end()
                remote_error = msg
                break
    except asyncio.CancelledError:
        _cancel_in_background(client, call_id)
        raise
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        if isinstance(exc, errors.TetherError):
            raise
        raise errors.ConnectionError(
            f"lost the connection to cluster {client.cluster!r} ({client.url}) during the call: {exc}",
            **context) from exc
    finally:
        shm.discard(client.shm, shared)
        if writer is not None:
            if reusable:
                pool.put(reader, writer)
            else:
                writer.close()
    # raised here, outside the transport's error handling: a remote OSError is not a lost connection
    raise wire.exception_from_error(remote_error, **context)


async def _aiterate(client: DaemonClient, pool: _Pool, reader, writer, resp: Response,
                    stream_logs: bool, context: dict[str, Any]):
    from tether.core.client import _print_log

    finished = False
    try:
        while True:
            msg = await read_message(resp)
            if msg is None:
                raise errors.ConnectionError(
                    f"the connection to cluster {client.cluster!r} closed mid-stream", **context)
            if msg.kind == wire.LOG:
                if stream_logs:
                    _print_log(msg)
            elif msg.kind == wire.ITEM:
                yield wire.loads(msg.frames, "a generator item")
            elif msg.kind == wire.RESULT:
                finished = await resp.at_end()
                return
            elif msg.kind == wire.ERROR:
                finished = await resp.at_end()
                raise wire.exception_from_error(msg, **context)
    finally:
        if finished:
            pool.put(reader, writer)
        else:  # closing early: the daemon sees the connection go and stops the remote generator
            writer.close()


def _cancel_in_background(client: DaemonClient, call_id: str) -> None:
    """A cancelled task cancels its remote call (in a thread: we are being cancelled ourselves)."""
    import threading

    threading.Thread(target=client.cancel, args=(call_id,), kwargs={"quiet": True}, daemon=True).start()
