"""The wire format: the one contract between callers, the daemon and worker processes.

Everything that crosses a process boundary on the call path is a *message*::

    kind:u8  flags:u8  pad:2  nframes:u32  call_id:u64  len_1:u64 ... len_n:u64  frame_1 ... frame_n

``flags`` bit 0 (``SHARED``): some frames live in shared memory, not in the message; the last
frame is a JSON list saying which (see ``tether.protocol.shm``); bit 1 (``OWNED``): the reader
removes those files once it has mapped them. Only used where the caller, the daemon and the
worker share a machine.

The same framing is used for HTTP bodies (caller <-> daemon) and the local socket (daemon <->
worker), so the daemon forwards a worker's reply to the caller without re-encoding it. Pickled
values use cloudpickle protocol 5: frame 1 is the pickle, the following frames are its
out-of-band buffers as raw bytes (numpy arrays travel without copies into the pickle, never
base64).

This module is imported by worker processes: it must only depend on the standard library and
cloudpickle (imported lazily).
"""

from __future__ import annotations

import json
import mmap
import struct
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pickle import dumps as _pickle_dumps
from typing import Any

# Bumped when a message layout or a meaning changes incompatibly; exchanged on /health.
# 2: the flags byte (frames in shared memory).
PROTOCOL_VERSION = 2
#: what this release's daemons do beyond their protocol version, said on /health: a client asks
#: for a feature only from a daemon that lists it ("queue": the QUEUE_HEADER, ``fn.enqueue``;
#: "alias": ``PUT /_tether/aliases/{alias}``, ``fn.save(name=...)``; "run_env": ``/_tether/run``
#: takes an env, its commands run with that env's interpreter first on PATH; "route": a head
#: names the node of a call it forwarded in ROUTE_HEADER)
FEATURES = ("queue", "alias", "run_env", "route")

CONTENT_TYPE = "application/x-tether"
TOKEN_HEADER = "authorization"
VERSION_HEADER = "x-tether-version"
CALL_ID_HEADER = "x-tether-call-id"
STREAM_LOGS_HEADER = "x-tether-stream-logs"
KEEP_HEADER = "x-tether-keep"  # keep the result on the cluster (a RemoteRef)
QUEUE_HEADER = "x-tether-queue"  # "1": wait for the object's queue, one queued call at a time (enqueue)
SHM_HEADER = "x-tether-shm"  # the caller reads big results from shared memory
REFS_HEADER = "x-tether-refs"  # names of the RemoteRefs among the arguments, comma-separated
CALLER_HEADER = "x-tether-caller"  # who calls: user@host:pid (the daemon records it, docs/calls.md)
WORKER_HEADER = "x-tether-worker"  # response: "pid=N" (" node=i" from a head) of a streamed call
#: response of a head to a call it forwarded: "<node index> <object's name>" (the caller may call
#: that node's daemon directly from then on: docs/wire.md, "Direct calls to a node")
ROUTE_HEADER = "x-tether-route"
ACCEPT_HEADER = "x-tether-accept"  # message kinds beyond protocol 2 the client reads: "warn" (WARN)

# Message kinds.
CALL = 1  # frames: [meta json, pickle, *buffers]  (or [meta json, json args] in json mode)
CONTROL = 2  # frames: [meta json, optional pickle frames]; worker-side management
RESULT = 3  # frames: [pickle, *buffers] or [json]
ERROR = 4  # frames: [meta json, pickled exception or b""]
LOG = 5  # frames: [stream name (b"out"/b"err"), text utf-8]
HELLO = 6  # frames: [meta json]; worker -> daemon after connecting
CANCEL = 7  # frames: [] or [meta json]; daemon -> worker: stop the call with this id
STREAM = 8  # frames: [] or [meta json]; the call returned a generator: ITEMs follow, then RESULT
ITEM = 9  # frames: [pickle, *buffers] (one generator item)
# daemon <-> worker only:
CREDIT = 10  # frames: [amount u64]; daemon -> worker: a generator's caller took that much of it
WARN = 11  # frames: [meta json]; a warning for the caller (sent only to clients that accept it)

TERMINAL_KINDS = frozenset({RESULT, ERROR})

# Message flags.
SHARED = 1  # the last frame lists frames held in shared memory
OWNED = 2  # ... and the reader removes their files once mapped

_HEADER = struct.Struct("<BB2xIQ")
HEADER_SIZE = _HEADER.size
_LEN = struct.Struct("<Q")
MAX_FRAMES = 1 << 20

Buffer = bytes | bytearray | memoryview


@dataclass(slots=True)
class Message:
    kind: int
    call_id: int
    frames: list[memoryview]
    flags: int = 0

    def json(self, index: int = 0) -> Any:
        return json.loads(bytes(self.frames[index]))

    def parts(self) -> list[Buffer]:
        """The message re-encoded as buffers ready for ``writelines`` (no copy of the frames)."""
        return encode(self.kind, self.frames, self.call_id, self.flags)


def encode(kind: int, frames: Sequence[Buffer], call_id: int = 0, flags: int = 0) -> list[Buffer]:
    """Encode a message as a list of buffers: one small header, then the frames untouched."""
    lens = [memoryview(f).nbytes for f in frames]
    head = _HEADER.pack(kind, flags, len(frames), call_id) + struct.pack(f"<{len(lens)}Q", *lens)
    return [head, *frames]


def encode_bytes(kind: int, frames: Sequence[Buffer], call_id: int = 0, flags: int = 0) -> bytes:
    return b"".join(bytes(p) if isinstance(p, memoryview) else p for p in encode(kind, frames, call_id, flags))


def parse_header(head: Buffer) -> tuple[int, int, int, int]:
    """(kind, flags, nframes, call_id) of a message header."""
    kind, flags, nframes, call_id = _HEADER.unpack(head)
    if nframes > MAX_FRAMES:
        raise ValueError(f"message announces {nframes} frames (at most {MAX_FRAMES})")
    return kind, flags, nframes, call_id


def parse_lengths(raw: Buffer, nframes: int) -> tuple[int, ...]:
    return struct.unpack(f"<{nframes}Q", raw)


def decode(data: Buffer) -> Message:
    """Decode one whole message held in memory (an HTTP request body). Frames are views, no copy."""
    view = memoryview(data)
    if view.nbytes < HEADER_SIZE:
        raise ValueError("body too short for a tether message")
    kind, flags, nframes, call_id = parse_header(view[:HEADER_SIZE])
    offset = HEADER_SIZE + 8 * nframes
    if view.nbytes < offset:
        raise ValueError("body too short for its frame table")
    lens = parse_lengths(view[HEADER_SIZE:offset], nframes)
    frames = []
    for n in lens:
        if offset + n > view.nbytes:
            raise ValueError("body shorter than its frames announce")
        frames.append(view[offset : offset + n])
        offset += n
    if offset != view.nbytes:
        raise ValueError("trailing bytes after the last frame")
    return Message(kind, call_id, frames, flags)


# ---------------------------------------------------------------------------------------------
# Flow control (docs/wire.md, "Flow control")

#: what holding one parsed message costs the daemon beyond its frames' bytes (measured: ~650 B of
#: Python objects for a small LOG message); counted so that a window of tiny messages stays small
MESSAGE_OVERHEAD = 768
_COST_BASE = MESSAGE_OVERHEAD + HEADER_SIZE
_CREDIT = struct.Struct("<Q")


def flow_cost(frames: Sequence[Buffer]) -> int:
    """What one message of these frames counts against a flow-control window (per item of a
    generator: kept cheap)."""
    cost = _COST_BASE + 8 * len(frames)
    for f in frames:
        kind = type(f)
        cost += f.nbytes if kind is memoryview else len(f) if kind is bytes else memoryview(f).nbytes
    return cost


def size_knob(name: str, default: int) -> int:
    """A size in bytes from the environment variable ``name`` (a flow-control bound)."""
    import os

    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name} must be a number of bytes (0 or more), not {raw!r}")
    return value


def credit_frames(amount: int) -> list[Buffer]:
    return [_CREDIT.pack(amount)]


def credit_amount(msg: Message) -> int:
    """The amount a CREDIT message grants (0 for a malformed one)."""
    frame = msg.frames[0] if msg.frames else b""
    return _CREDIT.unpack(frame)[0] if memoryview(frame).nbytes == _CREDIT.size else 0


# Payloads above this are received straight into the one buffer they will live in.
BIG_PAYLOAD = 1 << 20
# Receive buffers from this size up are anonymous mappings (``receive_buffer``).
MAPPED_RECEIVE = 32 << 20


def receive_buffer(n: int) -> bytearray | mmap.mmap:
    """A writable buffer of ``n`` bytes that a payload is about to be received into.

    ``bytearray(n)`` zero-fills every byte before the receive writes them again; from 32 MiB up
    glibc serves it with a fresh mapping every time, so that memset is one more pass over memory
    the kernel has just zeroed page by page (on this VM: 100 MB fresh, bytearray 96-144 ms vs an
    anonymous mapping 70-110 ms before a byte is received). Below 32 MiB glibc's heap hands back
    warm memory after the first free (its mmap threshold rises), so bytearray stays. The mapping
    lives as long as whatever views it (a result's array): unmapped when the last view goes."""
    if n < MAPPED_RECEIVE:
        return bytearray(n)
    try:
        return mmap.mmap(-1, n)
    except OSError as exc:  # ENOMEM: what bytearray would say (an OSError reads as a dropped connection)
        raise MemoryError(f"no memory for a payload of {n:,} bytes ({exc})") from None


def message(kind: int, call_id: int, lens: Sequence[int], payload: Buffer, flags: int = 0) -> Message:
    """A message whose frames (of sizes ``lens``) are views of one received ``payload``."""
    view, frames, offset = memoryview(payload), [], 0
    for n in lens:
        frames.append(view[offset:offset + n])
        offset += n
    return Message(kind, call_id, frames, flags)


# ---------------------------------------------------------------------------------------------
# Values


#: types the standard library's C pickler writes exactly as cloudpickle does (nothing by value)
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})
_CONTAINERS = frozenset({tuple, list, dict})


def _plain(obj: Any, depth: int = 3) -> bool:
    """Whether ``obj`` is builtin scalars in a few small tuples/lists/dicts (a no-op's ``None``, an
    ``((), {})`` of arguments): then ``pickle`` writes it ~7x faster than cloudpickle, the same
    bytes for the reader. Anything else (deeper, or more than 16 items in one) goes to cloudpickle."""
    kind = type(obj)
    if kind in _PLAIN:
        return True
    if not depth or kind not in _CONTAINERS or len(obj) > 16:
        return False
    depth -= 1
    if kind is dict:
        for key, value in obj.items():
            if type(key) not in _PLAIN or not _plain(value, depth):
                return False
        return True
    for item in obj:
        if not _plain(item, depth):
            return False
    return True


def dumps(obj: Any, what: str = "value") -> list[Buffer]:
    """Pickle ``obj`` as [pickle, *out-of-band buffers]; raise SerializationError naming the type."""
    if _plain(obj):
        return [_pickle_dumps(obj, protocol=5)]
    import cloudpickle

    buffers: list[memoryview] = []
    try:
        head = cloudpickle.dumps(obj, protocol=5, buffer_callback=lambda b: buffers.append(b.raw()))
    except Exception as exc:  # pickling raises TypeError, PicklingError, AttributeError...
        from tether.errors import SerializationError

        raise SerializationError(
            f"cannot pickle {what}: {_describe_unpicklable(obj, exc)}", what=what
        ) from exc
    return [head, *buffers]


def _describe_unpicklable(obj: Any, exc: Exception) -> str:
    """Name the offending argument (and its type) when ``obj`` is an (args, kwargs) pair."""
    import cloudpickle

    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], dict):
        args, kwargs = obj
        items = [(f"argument {i}", a) for i, a in enumerate(args)]
        items += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
        for label, value in items:
            try:
                cloudpickle.dumps(value, protocol=5, buffer_callback=lambda b: None)
            except Exception:
                return f"{label} of type {_type_name(value)} is not picklable ({exc})"
    return f"object of type {_type_name(obj)} is not picklable ({exc})"


def loads(frames: Sequence[Buffer], what: str = "value") -> Any:
    import pickle

    from tether.errors import SerializationError, TetherError

    try:
        return pickle.loads(frames[0], buffers=frames[1:])
    except TetherError:
        raise  # e.g. a RemoteRef that no longer exists: already precise
    except Exception as exc:
        raise SerializationError(f"cannot unpickle {what}: {type(exc).__name__}: {exc}") from exc


def json_frame(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _type_name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------------------------------------
# Errors

# Error kinds carried in an ERROR message's meta.
EXCEPTION = "exception"
WORKER_DIED = "worker_died"
SERIALIZATION = "serialization"
NOT_FOUND = "not_found"
BAD_REQUEST = "bad_request"
CANCELLED = "cancelled"
EXPIRED = "expired"
NODE_LOST = "node_lost"  # the head could not reach the node that holds the object


def error_frames(exc: BaseException, kind: str = EXCEPTION, **extra: Any) -> list[Buffer]:
    """Frames for an ERROR message: [meta json, pickled exception or b""]."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    meta = {"kind": kind, "type": _type_name(exc), "message": str(exc), "traceback": tb, **extra}
    pickled: bytes = b""
    if kind == EXCEPTION:
        try:
            import cloudpickle

            pickled = cloudpickle.dumps(exc.with_traceback(None), protocol=5)
        except Exception:
            pickled = b""
    return [json_frame(meta), pickled]


def plain_error_frames(kind: str, message: str, type_name: str = "", **extra: Any) -> list[Buffer]:
    """Frames for an ERROR that is not a Python exception of the worker (raised by the daemon)."""
    meta = {"kind": kind, "type": type_name, "message": message, "traceback": "", **extra}
    return [json_frame(meta), b""]


def exception_from_error(msg: Message, **context: Any) -> BaseException:
    """Turn an ERROR message into the exception the caller should see.

    The remote exception is re-raised as its own type when it unpickles locally, with the remote
    traceback attached as ``remote_traceback`` and as a note; otherwise a ``RemoteError``.
    """
    from tether import errors

    meta = msg.json(0)
    kind = meta.get("kind", EXCEPTION)
    message, remote_tb = meta.get("message", ""), meta.get("traceback", "")
    fields = {k: v for k, v in meta.items() if k not in ("kind", "type", "message", "traceback")}
    fields.update(context)
    if kind == WORKER_DIED:
        # "oom": the daemon saw it killed for lack of memory (with limit and peak when known)
        cls = errors.OutOfMemoryError if meta.get("oom") else errors.WorkerDiedError
        return cls(message, remote_type=meta.get("type", ""), **fields)
    if kind == SERIALIZATION:
        return errors.SerializationError(message, **fields)
    if kind == NOT_FOUND:
        return errors.NotFoundError(message, **fields)
    if kind == BAD_REQUEST:
        return errors.ConfigError(message, **fields)
    if kind == CANCELLED:
        return errors.CallCancelledError(message, **fields)
    if kind == EXPIRED:
        return errors.ResultExpiredError(message, **fields)
    if kind == NODE_LOST:
        return errors.ConnectionError(message, **fields)
    pickled = bytes(msg.frames[1]) if len(msg.frames) > 1 else b""
    if pickled:
        import pickle

        try:
            exc = pickle.loads(pickled)
        except Exception:
            exc = None
        if isinstance(exc, BaseException):
            try:
                exc.remote_traceback = remote_tb  # type: ignore[attr-defined]
                exc.add_note(f"\nRemote traceback:\n{remote_tb}")
            except Exception:
                pass  # exceptions with __slots__ cannot take attributes: still re-raise them
            return exc
    return errors.RemoteError(message, remote_type=meta.get("type", ""), remote_traceback=remote_tb, **fields)

