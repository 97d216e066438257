"""A big call from a caller without the shared memory: its big frames go into shared-memory files
as the body arrives, and the worker maps them.

The daemon and its workers always share a machine, even when the caller does not (a remote
cluster, ``TETHER_SHM=0``). Forwarding a 100 MB argument through the worker's socket cost the
daemon a copy into its own buffer, a copy into the socket and the worker a copy out of it; here
each piece of the body is written once, where it will stay (``pwrite`` into a file of the
cluster's ``/dev/shm`` folder), and the worker maps the file (``protocol/shm.py``): the daemon
holds no copy of the argument while the call runs. The message the worker gets is the one a
caller on this machine sends (``SHARED | OWNED``), so nothing changes on the wire.

Only a pickled CALL without shared frames is spooled, and only when one of its frames is at
least ``shm.MIN_SIZE``; anything else is read into memory as before (``read_body``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tether.daemon.requests import BadRequest, read_body, too_large
from tether.protocol import shm, wire

#: bodies smaller than this are read into memory (the files cost more than they save)
MIN_BODY = 1 << 20


@dataclass
class Spooled:
    """A CALL whose big frames are in files of the shared-memory folder (``names``)."""

    frames: list[wire.Buffer]
    flags: int
    names: list[str] = field(default_factory=list)


async def read_call(receive, length: bytes | None, folder: Path | None, limit: int | None = None
                    ) -> Spooled | bytes | bytearray:
    """A call's body: ``Spooled`` when its big frames went to ``folder``, else the body's bytes
    (for ``requests.decode_message``, exactly as ``read_body`` returns them)."""
    from tether.daemon.requests import MAX_BODY

    limit = MAX_BODY if limit is None else limit
    try:
        declared = int(length) if length is not None else -1
    except ValueError:
        raise BadRequest("bad Content-Length") from None
    if folder is None or declared < MIN_BODY:
        return await read_body(receive, length, limit)
    if declared > limit:
        raise too_large(declared, limit)
    if not _room(folder, declared):
        return await read_body(receive, length, limit)
    return await _Spool(receive, declared, Path(folder)).run()


def _room(folder: Path, size: int) -> bool:
    """Whether the folder's file system has room for ``size`` bytes and a margin."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize > size + (64 << 20)


class _Spool:
    def __init__(self, receive, declared: int, folder: Path) -> None:
        self.receive, self.declared, self.folder = receive, declared, folder
        self.more = True
        self.got = 0

    async def _next(self) -> bytes:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the caller went away while sending the request")
        self.more = message.get("more_body", False)
        body = message.get("body", b"")
        self.got += len(body)
        if self.got > self.declared:
            raise BadRequest("the request body is longer than its Content-Length")
        return body

    async def _rest(self, head: bytearray) -> bytearray:
        """The body read into memory after all (what ``read_body`` would have returned)."""
        while self.more:
            head += await self._next()
        return head

    async def run(self) -> Spooled | bytearray:
        head = bytearray()
        while len(head) < wire.HEADER_SIZE and self.more:
            head += await self._next()
        if len(head) < wire.HEADER_SIZE:
            return head  # too short: decode_message says so
        try:
            kind, flags, nframes, _ = wire.parse_header(memoryview(head)[:wire.HEADER_SIZE])
        except ValueError:
            return await self._rest(head)
        table = wire.HEADER_SIZE + 8 * nframes
        while len(head) < table and self.more:
            head += await self._next()
        if kind != wire.CALL or flags or not nframes or len(head) < table:
            return await self._rest(head)
        lens = wire.parse_lengths(memoryview(head)[wire.HEADER_SIZE:table], nframes)
        if table + sum(lens) != self.declared or max(lens) < shm.MIN_SIZE:
            return await self._rest(head)  # decode_message judges a length that does not add up
        return await self._spool(head, table, lens)

    async def _spool(self, head: bytearray, table: int, lens: tuple[int, ...]) -> Spooled:
        out: list[wire.Buffer] = []
        listing: list[list] = []
        names: list[str] = []
        pending = memoryview(bytes(head[table:]))
        try:
            for index, size in enumerate(lens):
                if size < shm.MIN_SIZE:  # a small frame: in memory
                    frame = bytearray()
                    while len(frame) < size:
                        if not pending.nbytes:
                            pending = memoryview(await self._more())
                        take = min(size - len(frame), pending.nbytes)
                        frame += pending[:take]
                        pending = pending[take:]
                    out.append(bytes(frame))
                    continue
                name = shm.new_frame_name()
                fd = os.open(os.path.join(self.folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                names.append(name)
                try:
                    pos = 0
                    while pos < size:
                        if not pending.nbytes:
                            pending = memoryview(await self._more())
                        take = min(size - pos, pending.nbytes)
                        piece = pending[:take]
                        while piece.nbytes:  # one copy, by the kernel
                            n = os.pwrite(fd, piece, pos)
                            pos += n
                            piece = piece[n:]
                        pending = pending[take:]
                finally:
                    os.close(fd)
                out.append(b"")
                listing.append([index, name, size])
        except OSError as exc:  # /dev/shm filled up meanwhile
            shm.discard(self.folder, names)
            raise BadRequest(f"the daemon could not keep the call's arguments in shared memory ({exc}); "
                             "retry, or free memory on the cluster", 507, "insufficient_storage") from None
        except BaseException:
            shm.discard(self.folder, names)
            raise
        while self.more:  # an empty last piece (the lengths add up to the declared length)
            await self._next()
        out.append(json.dumps(listing).encode())
        return Spooled(out, wire.SHARED | wire.OWNED, names)

    async def _more(self) -> bytes:
        if not self.more:
            raise BadRequest("malformed tether message: body shorter than its frames announce")
        return await self._next()
