"""Big frames through shared memory, when the caller, the daemon and the worker share a machine.

Over HTTP a 100 MB array is copied through the kernel twice each way; here it is written once
into a file of the cluster's folder in ``/dev/shm`` (a memory file system) and mapped by the
reader: the same two copies per round trip as Ray's object store, and the daemon never touches
the bytes. A message with the ``wire.SHARED`` flag has an empty frame in place of each shared
one, and a last frame listing them: ``[[index, file name, size], ...]``.

Who removes a file (readers always map copy-on-write: writing to an array never changes a file):

* arguments (caller -> worker): sent ``OWNED``, the worker unlinks each file as it maps it; the
  caller removes any left over (the call failed first) when the call ends;
* results (worker -> daemon): the daemon keeps them while the call table keeps the result (it
  can be fetched again by id), and removes them when it forgets it;
* results (daemon -> caller): the daemon hands the caller a hard link of each file (``handout``),
  sent ``OWNED``: the caller unlinks it once mapped, whatever the call table does meanwhile.

The daemon empties the folder when it starts and removes it when it stops.
Standard library only (imported by worker processes).
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tether.protocol import wire

if TYPE_CHECKING:
    from pathlib import Path

MIN_SIZE = 512 * 1024  # smaller frames go through the socket: the file costs more than it saves
_ROOT = "/dev/shm"
# Worker processes import this module: no pathlib (~10 ms to import), names from os.urandom.


def folder_for(state_dir: Path) -> Path | None:
    """The cluster's folder in ``/dev/shm``, or None where there is none (not Linux)."""
    from pathlib import Path

    if not os.path.isdir(_ROOT):
        return None
    import hashlib

    tag = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    return Path(_ROOT) / f"tether-{os.getuid()}-{tag}"


def _new_name(suffix: str) -> str:
    return os.urandom(12).hex() + suffix


def export(frames: Sequence[wire.Buffer], folder: Path) -> tuple[list[wire.Buffer], int, list[str]]:
    """Move big frames into files of ``folder``: (frames to send, message flags, file names)."""
    shared, out, names = [], list(frames), []
    try:
        for index, frame in enumerate(frames):
            view = memoryview(frame)
            if view.nbytes < MIN_SIZE:
                continue
            name = _new_name(".buf")
            _write(os.path.join(folder, name), view)
            names.append(name)
            shared.append([index, name, view.nbytes])
            out[index] = b""
    except BaseException:
        discard(folder, names)
        raise
    if not shared:
        return out, 0, []
    out.append(json.dumps(shared).encode())
    return out, wire.SHARED, names


def export_owned(frames: Sequence[wire.Buffer], folder: Path) -> tuple[list[wire.Buffer], int, list[str]]:
    """``export`` for a reader that takes the files over (a call's arguments)."""
    out, flags, names = export(frames, folder)
    return out, flags | wire.OWNED if flags else 0, names


def _write(path: str, view: memoryview) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = view.cast("B")
        pos = 0
        while pos < view.nbytes:  # one copy, by the kernel: no page faults in this process
            pos += os.pwrite(fd, view[pos:], pos)
    finally:
        os.close(fd)


def listed(frames: Sequence[wire.Buffer], flags: int) -> list[list]:
    """The shared frames listed at the end of ``frames`` (``[[index, name, size], ...]``), or []."""
    if not flags & wire.SHARED:
        return []
    return json.loads(bytes(frames[-1]))


def resolve(frames: Sequence[wire.Buffer], flags: int, folder: Path | None) -> list:
    """``frames`` (as ``export`` made them) with each shared one mapped from its file: no copy,
    copy-on-write; ``OWNED`` files are unlinked once mapped."""
    if not flags & wire.SHARED:
        return list(frames)
    if folder is None:
        raise FileNotFoundError("this process cannot reach the cluster's shared memory")
    out = list(frames[:-1])
    for index, name, size in listed(frames, flags):
        out[index] = _map(_path_in(folder, name), size, bool(flags & wire.OWNED))
    return out


def _map(path: str, size: int, owned: bool) -> mmap.mmap:
    fd = os.open(path, os.O_RDONLY)
    try:
        if owned:
            os.unlink(path)
        if os.fstat(fd).st_size != size:
            raise ValueError(f"shared frame {path} has {os.fstat(fd).st_size} bytes, not {size}")
        return mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
    finally:
        os.close(fd)


def handout(msg: wire.Message, folder: Path | None) -> wire.Message:
    """The message for a caller to read and own: each file hard-linked under a new name (the
    daemon's own name stays, for fetching by id)."""
    if not msg.flags & wire.SHARED or folder is None:
        return msg
    shared, made = [], []
    try:
        for index, name, size in listed(msg.frames, msg.flags):
            new = _new_name(".out")
            os.link(_path_in(folder, name), os.path.join(folder, new))
            made.append(new)
            shared.append([index, new, size])
    except BaseException:
        discard(folder, made)
        raise
    frames = [*msg.frames[:-1], memoryview(json.dumps(shared).encode())]
    return wire.Message(msg.kind, msg.call_id, frames, msg.flags | wire.OWNED)


def _path_in(folder: Path | str, name: str) -> str:
    if "/" in name or name.startswith("."):
        raise ValueError(f"bad shared frame name {name!r}")
    return os.path.join(folder, name)


def inline(msg: wire.Message, folder: Path | None) -> wire.Message:
    """The same message with its shared frames read back in (for a reader without access)."""
    if not msg.flags & wire.SHARED:
        return msg
    frames = [memoryview(f) for f in resolve(msg.frames, msg.flags, folder)]
    return wire.Message(msg.kind, msg.call_id, frames)


def discard(folder: Path | None, names: Sequence[str]) -> None:
    """Remove files (those already gone are fine)."""
    if folder is None:
        return
    for name in names:
        try:
            os.unlink(_path_in(folder, name))
        except (OSError, ValueError):
            pass


def discard_listed(msg: wire.Message, folder: Path | None) -> None:
    discard(folder, [name for _, name, _ in listed(msg.frames, msg.flags)])


def size_of(msg: wire.Message) -> int:
    """Bytes a message holds in shared memory."""
    return sum(size for _, _, size in listed(msg.frames, msg.flags))
