"""HTTP/1.1 response bodies that carry wire messages, read from asyncio streams.

Both ends that speak to a daemon asynchronously read responses this way: the caller's async call
path (``tether.client.aio``) and a head daemon forwarding a call to another node
(``tether.daemon.nodes``). Only what a tether daemon sends is understood: a status line, headers,
and a body framed by Content-Length or chunked. Errors are the standard library's
(``asyncio.IncompleteReadError``, ``ConnectionResetError``, ``ValueError``); each side maps them.
"""

from __future__ import annotations

import asyncio

from tether.protocol import wire

_WORKER = wire.WORKER_HEADER.encode()
_ROUTE = wire.ROUTE_HEADER.encode()


class Response:
    """Status, headers, and a body read exactly, through Content-Length or chunked framing."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.status = 0
        self.chunked = False
        self.remaining = 0  # Content-Length left, or bytes left in the current chunk
        self.eof = False
        self.source: bytes | None = None  # x-tether-worker: which worker runs the call
        self.route: bytes | None = None  # x-tether-route: the node a head forwarded the call to

    async def start(self) -> None:
        """Read the status line and the headers: one read up to the blank line (a readline per
        header cost the async call path ~10 us)."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("the daemon closed the connection"
                                       + (" in the middle of the response headers" if exc.partial else "")) from None
        except asyncio.LimitOverrunError:
            raise ValueError("the response headers are too long") from None
        lines = head.split(b"\r\n")
        try:
            self.status = int(lines[0].split(None, 2)[1])
        except (IndexError, ValueError):
            raise ValueError(f"malformed HTTP status line {lines[0][:100]!r}") from None
        for header in lines[1:]:
            key, _, value = header.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                self.remaining = int(value.strip())
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
            elif key == _WORKER:
                self.source = value.strip()
            elif key == _ROUTE:
                self.route = value.strip()
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
