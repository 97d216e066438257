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

A caller killed before it maps its result never unlinks its links: the daemon sweeps links that
nobody took within ``TETHER_SHM_HANDOUT_TTL`` seconds (``Handouts``), and counts them.

Names come from the wire, so only names tether makes are ever used (``_new_name``: 24 hex
digits and ``.buf``/``.out``; ``.probe`` for the probe files, which are never frames): nothing but
tether's own frame files in the cluster's folder can be opened or removed through a message.

Where the folder is: ``/dev/shm``, or ``TETHER_SHM_ROOT`` (a test's small tmpfs).
The daemon empties the folder when it starts and removes it when it stops.
Standard library only (imported by worker processes).
"""

from __future__ import annotations

import json
import mmap
import os
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tether.protocol import wire

if TYPE_CHECKING:
    from pathlib import Path

MIN_SIZE = 512 * 1024  # smaller frames go through the socket: the file costs more than it saves
_ROOT = "/dev/shm"
# Worker processes import this module: no pathlib (~10 ms to import), names from os.urandom.
_FRAME_NAME = re.compile(r"[0-9a-f]{24}\.(?:buf|out)")  # exactly what _new_name makes for frames
_PROBE_NAME = re.compile(r"[0-9a-f]{24}\.probe")


class BadSharedFrame(ValueError):
    """A message lists a shared frame that is not one tether made (or lists it wrongly)."""


def folder_for(state_dir: Path) -> Path | None:
    """The cluster's folder in ``/dev/shm`` (or ``TETHER_SHM_ROOT``), or None where there is
    none (not Linux)."""
    from pathlib import Path

    root = os.environ.get("TETHER_SHM_ROOT") or _ROOT
    if not os.path.isdir(root):
        return None
    import hashlib

    tag = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    return Path(root) / f"tether-{os.getuid()}-{tag}"


def _new_name(suffix: str) -> str:
    return os.urandom(12).hex() + suffix


def new_frame_name() -> str:
    """A name for a frame's file that a reader accepts (the daemon spooling a call's body)."""
    return _new_name(".buf")


def export(frames: Sequence[wire.Buffer], folder: Path) -> tuple[list[wire.Buffer], int, list[str]]:
    """Move big frames into files of ``folder``: (frames to send, message flags, file names)."""
    for frame in frames:  # most messages have none (a small result): nothing to build
        if memoryview(frame).nbytes >= MIN_SIZE:
            break
    else:
        return frames if type(frames) is list else list(frames), 0, []
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
    """Write a whole file, or none: a failed write (``/dev/shm`` full: ENOSPC) removes its file,
    which would otherwise hold the memory it got until the daemon restarts."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = view.cast("B")
        pos = 0
        while pos < view.nbytes:  # one copy, by the kernel: no page faults in this process
            pos += os.pwrite(fd, view[pos:], pos)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    finally:
        os.close(fd)


def listed(frames: Sequence[wire.Buffer], flags: int) -> list[list]:
    """The shared frames listed at the end of ``frames`` (``[[index, name, size], ...]``), or [];
    ``BadSharedFrame`` unless each is a frame index of the message, a name tether makes and a
    size."""
    if not flags & wire.SHARED:
        return []
    if not frames:
        raise BadSharedFrame("a message flagged SHARED has no frame listing its shared frames")
    try:
        entries = json.loads(bytes(frames[-1]))
    except ValueError as exc:
        raise BadSharedFrame(f"the list of shared frames is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise BadSharedFrame("the list of shared frames must be a JSON list of [index, name, size]")
    for entry in entries:
        if (not isinstance(entry, list) or len(entry) != 3 or type(entry[0]) is not int
                or type(entry[2]) is not int or not 0 <= entry[0] < len(frames) - 1 or entry[2] < 0):
            raise BadSharedFrame(f"bad shared frame entry {entry!r}: expected [frame index, name, size]")
        _check_name(entry[1])
    return entries


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
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
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
    daemon's own name stays, for fetching by id). Links nobody takes are swept (``Handouts``)."""
    if not msg.flags & wire.SHARED or folder is None:
        return msg
    shared, made, total = [], [], 0
    try:
        for index, name, size in listed(msg.frames, msg.flags):
            new = _new_name(".out")
            os.link(_path_in(folder, name), os.path.join(folder, new))
            made.append(new)
            shared.append([index, new, size])
            total += size
    except BaseException:
        discard(folder, made)
        raise
    handouts_in(folder).add(made, total)
    frames = [*msg.frames[:-1], memoryview(json.dumps(shared).encode())]
    return wire.Message(msg.kind, msg.call_id, frames, msg.flags | wire.OWNED)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _FRAME_NAME.fullmatch(name):
        raise BadSharedFrame(
            f"bad shared frame name {name!r}: a shared frame is a file tether made in the cluster's "
            "shared-memory folder (24 hex digits, then .buf or .out); send the bytes in the message "
            "instead")


def _path_in(folder: Path | str, name: str) -> str:
    """The path of a frame's file; ``BadSharedFrame`` for any name tether does not make."""
    _check_name(name)
    return os.path.join(folder, name)


def inline(msg: wire.Message, folder: Path | None) -> wire.Message:
    """The same message with its shared frames read back in (for a reader without access)."""
    if not msg.flags & wire.SHARED:
        return msg
    if folder is None:
        raise FileNotFoundError("this process cannot reach the cluster's shared memory")
    frames = [memoryview(f) for f in msg.frames[:-1]]
    for index, name, size in listed(msg.frames, msg.flags):
        frames[index] = memoryview(_map_to_send(_path_in(folder, name), size))
    return wire.Message(msg.kind, msg.call_id, frames)


def _map_to_send(path: str, size: int) -> mmap.mmap | bytes:
    """A file's bytes to be written to a socket: mapped read-only with its pages mapped at once
    (no page fault per 64 KiB while the socket takes them)."""
    if not size:
        return b""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_size != size:
            raise ValueError(f"shared frame {path} has {os.fstat(fd).st_size} bytes, not {size}")
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                         prot=mmap.PROT_READ)
    finally:
        os.close(fd)


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


# ---------------------------------------------------------------------------------------------
# Links handed to callers (the daemon's side)

def handout_ttl() -> float:
    """Seconds a caller has to map the result files handed to it before the daemon removes them
    (``TETHER_SHM_HANDOUT_TTL``, default 60; read by the daemon)."""
    raw = os.environ.get("TETHER_SHM_HANDOUT_TTL", "").strip()
    if not raw:
        return 60.0
    try:
        ttl = float(raw)
    except ValueError:
        ttl = -1.0
    if not ttl > 0:
        raise ValueError(f"TETHER_SHM_HANDOUT_TTL must be a number of seconds above 0, not {raw!r}")
    return ttl


class Handouts:
    """The links ``handout`` made in one folder, oldest first, each removed ``ttl`` seconds
    after it was made if its caller has not (a caller killed mid-call never maps its result:
    without this, one probe left 510 MiB in ``/dev/shm`` until the daemon restarted).

    A thread of its own sleeps until the oldest deadline: no event loop needed, and a sweep is a
    few ``unlink`` calls."""

    def __init__(self, folder: Path | str, ttl: float | None = None) -> None:
        self.folder, self.ttl = str(folder), handout_ttl() if ttl is None else ttl
        self.swept = self.swept_bytes = 0  # links nobody took, removed here
        self._made: deque[tuple[float, list[str], int]] = deque()  # (deadline, names, bytes)
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def add(self, names: list[str], nbytes: int) -> None:
        if not names:
            return
        with self._cond:
            self._made.append((time.monotonic() + self.ttl, names, nbytes))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tether-shm-sweep", daemon=True)
                self._thread.start()
            elif len(self._made) == 1:
                self._cond.notify()

    def sweep(self, now: float | None = None) -> int:
        """Remove the links past their deadline that are still there; returns how many."""
        now = time.monotonic() if now is None else now
        due = []
        with self._cond:
            while self._made and self._made[0][0] <= now:
                due.append(self._made.popleft())
        removed = 0
        for _, names, nbytes in due:
            gone = 0
            for name in names:
                try:
                    os.unlink(_path_in(self.folder, name))
                    gone += 1
                except OSError:
                    pass  # taken by its caller: the usual case
            if gone:
                with self._cond:
                    self.swept += gone
                    self.swept_bytes += nbytes
                removed += gone
        return removed

    def info(self) -> dict[str, float | int]:
        """``handed_out``: links made in the last ``ttl`` seconds (taken or not yet); ``swept``:
        links nobody took, removed; ``swept_bytes``: what they held."""
        with self._cond:
            waiting = sum(len(names) for _, names, _ in self._made)
        return {"handed_out": waiting, "swept": self.swept, "swept_bytes": self.swept_bytes,
                "ttl": self.ttl}

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._made:
                    self._cond.wait()
                wait = self._made[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
            self.sweep()


_handouts: dict[str, Handouts] = {}
_handouts_lock = threading.Lock()


def handouts_in(folder: Path | str) -> Handouts:
    """The ``Handouts`` of a folder (one per folder, per process)."""
    key = str(folder)
    found = _handouts.get(key)
    if found is None:
        with _handouts_lock:
            found = _handouts.setdefault(key, Handouts(key))
    return found


def status(folder: Path | None) -> dict | None:
    """What ``/_tether/status`` says of the folder: links waiting for their caller, and those
    swept because nobody took them."""
    return handouts_in(folder).info() if folder is not None else None


# ---------------------------------------------------------------------------------------------
# Probing: does a caller share this folder, both ways?


def write_daemon_probe(folder: Path | str) -> str:
    """The daemon's probe file, ``probe`` (0600, as frames are): a caller that reads what it
    holds shares this folder and reads files written here. Returns what it holds."""
    token = os.urandom(16).hex()
    _write(os.path.join(folder, "probe"), memoryview(token.encode()))
    return token


def write_probe(folder: Path | str) -> tuple[str, str]:
    """A caller's probe file in the folder (0600, as frames are): (its name, what it holds)."""
    name, token = _new_name(".probe"), os.urandom(16).hex()
    _write(os.path.join(folder, name), memoryview(token.encode()))
    return name, token


def read_probe(folder: Path | str | None, name: str) -> str | None:
    """What a caller's probe file holds, read (and removed) by the daemon: proof that files the
    caller writes are readable here. None when it cannot be read."""
    if folder is None or not isinstance(name, str) or not _PROBE_NAME.fullmatch(name):
        return None
    path = os.path.join(folder, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            data = os.read(fd, 64)
        finally:
            os.close(fd)
        os.unlink(path)
    except OSError:
        return None
    return data.decode("ascii", "replace")


def discard_probe(folder: Path | str, name: str) -> None:
    """Remove a caller's probe file (the daemon removes it once read; this is for when not)."""
    if _PROBE_NAME.fullmatch(name):
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass
