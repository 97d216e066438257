"""The program a worker process runs: it holds user objects and runs calls on them.

A worker is started by the daemon with the env's interpreter, env vars and working directory. It
connects back to the daemon over a local socket and then serves messages (see ``tether.core.wire``):
CALL runs a method, CONTROL deploys, inspects or deletes objects, CANCEL stops a call.

Threads, and why: the call threads take turns reading the socket (``daemon/turns.py``); the one
that reads a sync call runs it and sends the reply itself (one lock keeps messages whole on the
socket), so a sync call crosses no thread boundary and never waits for an event loop. ``async
def`` methods run on the worker's asyncio loop (the main thread), as do control operations. Whatever a call prints (stdout, stderr, logging) is sent back tagged with that call's
id, so the caller sees it live.

Only the standard library, cloudpickle and ``tether.core`` wire modules are imported here: the
daemon's dependencies (FastAPI, uvicorn, pydantic) never enter a worker. When the daemon goes away
the worker exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import ctypes
import inspect
import io
import json
import os
import socket
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tether.core import refs, shm, streams, wire
from tether.daemon import objects
from tether.daemon.objects import Entry, NotFound, Unserializable
from tether.daemon.turns import TakeTurns

_current_call: contextvars.ContextVar[_CallContext | None] = contextvars.ContextVar(
    "tether_call", default=None
)


class _CallContext:
    __slots__ = ("call_id", "stream_logs", "conn")

    def __init__(self, call_id: int, stream_logs: bool, conn: _Connection) -> None:
        self.call_id, self.stream_logs, self.conn = call_id, stream_logs, conn


class _CallStream(io.TextIOBase):
    """sys.stdout/sys.stderr replacement: a write inside a call goes to that call's caller too."""

    def __init__(self, stream_name: bytes, fallback: io.TextIOBase) -> None:
        self._name, self._fallback = stream_name, fallback

    def write(self, text: str) -> int:
        call = _current_call.get()
        if call is not None and call.stream_logs and text:
            call.conn.send(wire.LOG, [self._name, text.encode("utf-8", "replace")], call.call_id)
        self._fallback.write(text)
        return len(text)

    def flush(self) -> None:
        self._fallback.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class _Connection:
    """The worker's end of the socket to the daemon. Any thread may send; a blocking send is
    also the back-pressure a fast generator needs."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock, self.loop = sock, loop
        self.lock = threading.Lock()

    def send(self, kind: int, frames, call_id: int = 0, flags: int = 0) -> None:
        parts = wire.encode(kind, frames, call_id, flags)
        try:
            with self.lock:
                streams.send_parts(self.sock, parts)
        except OSError:
            pass  # the daemon went away: the reader thread sees EOF and ends this process

    async def asend(self, kind: int, frames, call_id: int = 0, flags: int = 0) -> None:
        """``send`` from the event loop: a big message is written from a thread, so the loop
        keeps serving other calls while the daemon reads it."""
        if sum(memoryview(f).nbytes for f in frames) > wire.BIG_PAYLOAD:
            await self.loop.run_in_executor(None, self.send, kind, frames, call_id, flags)
        else:
            self.send(kind, frames, call_id, flags)


# ---------------------------------------------------------------------------------------------
# The worker


class Worker:
    def __init__(self, conn: _Connection, threads: int) -> None:
        self.conn, self.loop = conn, conn.loop
        self.objects: dict[str, Entry] = {}
        # deploys, exports and the odd hand-off from the loop; calls run in TakeTurns' threads
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tether-control")
        self.watch = objects.ModuleWatch()
        self.tasks: set[asyncio.Task] = set()
        self.running: dict[int, _Running] = {}
        folder = os.environ.get("TETHER_SHM_DIR")
        self.shm = Path(folder) if folder else None

    def spawn(self, coro) -> asyncio.Task:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def serve(self, sock: socket.socket, threads: int) -> None:
        """Start the call threads, which take turns reading the socket (``daemon/turns.py``)."""
        parser, ready = streams.MessageParser(), deque()

        def read() -> wire.Message | None:
            while not ready:
                try:
                    n = sock.recv_into(parser.buffer())
                except OSError:
                    return None
                if not n:
                    return None
                ready.extend(parser.feed(n))
            return ready.popleft()

        TakeTurns(read, self.route, self._daemon_gone, threads).start()

    def _daemon_gone(self) -> None:
        """The daemon went away: leave at once, even if user threads are still busy."""
        try:
            sys.stdout.flush()
        finally:
            os._exit(0)

    def route(self, msg: wire.Message):
        """A message just read: a sync call comes back as the job to run in this thread."""
        kind = msg.kind
        if kind == wire.CALL:
            return self.start_call(msg)
        if kind == wire.CONTROL:
            self.loop.call_soon_threadsafe(self.spawn, self.handle_control(msg))
        elif kind == wire.CANCEL:
            self.handle_cancel(msg)
        return None

    # -- calls ---------------------------------------------------------------------------------

    def start_call(self, msg: wire.Message):
        """Sync methods run as a job of the thread that read them; async ones go to the loop."""
        call_id = msg.call_id
        running = self.running[call_id] = _Running(call_id)
        try:
            meta = msg.json(0)
            entry = self.objects.get(meta["object"])
            if entry is None:
                raise NotFound(f"no object named {meta['object']!r} in this worker")
            flags = entry.flags(meta["method"])
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            self.running.pop(call_id, None)
            self.conn.send(wire.ERROR, _error_frames(exc), call_id)
            return None
        if (flags.get("async") or flags.get("async_generator")) and meta.get("mode") != "json":
            def job():
                self.loop.call_soon_threadsafe(self._start_async, msg, meta, entry, flags, running)
        else:
            def job():
                return self._sync_call(msg, meta, entry, running)
        if entry.gate is None or entry.gate.enter(job):
            return job
        return None  # max_concurrency: it waits for its turn without holding a thread

    def _sync_call(self, msg: wire.Message, meta: dict, entry: Entry, running: _Running):
        if running.cancelled.is_set():  # cancelled while it waited for its turn
            kind, frames = wire.ERROR, _cancelled_frames(_call_name(meta))
        else:
            ctx = _CallContext(msg.call_id, bool(meta.get("stream_logs", True)), self.conn)
            kind, frames = self._run_sync(ctx, entry, meta, msg, running)
        del msg  # the arguments' buffers can go before the reply is written
        kind, frames, flags = self._reply(meta, kind, frames)
        self.running.pop(running.call_id, None)
        self.conn.send(kind, frames, running.call_id, flags)
        return entry.gate.leave() if entry.gate is not None else None  # the next call in line

    def _arguments(self, msg: wire.Message) -> list:
        """The argument frames of a CALL, shared ones mapped from their files."""
        return shm.resolve(msg.frames[1:], msg.flags, self.shm)

    def _reply(self, meta: dict, kind: int, frames) -> tuple[int, list, int]:
        """A result's big frames go to shared memory when the caller reads from it."""
        if kind != wire.RESULT or not meta.get("shm") or self.shm is None:
            return kind, frames, 0
        try:
            return (kind, *shm.export(frames, self.shm)[:2])
        except OSError as exc:  # /dev/shm full: the caller still gets its result
            print(f"[tether] shared memory unavailable ({exc}); sending the result inline", file=sys.__stderr__)
            return kind, frames, 0

    def _leave_from_loop(self, entry: Entry) -> None:
        """An async call left its gate: the next call in line starts from a thread (a sync one
        must not run on the loop)."""
        if entry.gate is not None:
            job = entry.gate.leave()
            if job is not None:
                self.pool.submit(_run_chain, job)

    def _start_async(self, msg, meta, entry, flags, running: _Running) -> None:
        if running.cancelled.is_set():
            self.running.pop(msg.call_id, None)
            self.conn.send(wire.ERROR, _cancelled_frames(_call_name(meta)), msg.call_id)
            self._leave_from_loop(entry)
            return
        running.task = self.spawn(self._async_call(msg, meta, entry, flags, running))

    async def _async_call(self, msg, meta, entry, flags, running: _Running) -> None:
        call_id, method = msg.call_id, meta["method"]
        try:
            ctx = _CallContext(call_id, bool(meta.get("stream_logs", True)), self.conn)
            args, kwargs = wire.loads(self._arguments(msg), "the arguments")
            del msg
            target = objects.bound_target(entry, method)
            if flags.get("async_generator"):
                kind, frames = await self._stream_async(ctx, target, args, kwargs)
            else:
                result = await self._run_async(ctx, target, args, kwargs)
                if meta.get("keep"):
                    result = self._keep(meta["keep"], result)
                kind, frames = wire.RESULT, wire.dumps(result, f"the result of {method}")
        except asyncio.CancelledError:
            kind, frames = wire.ERROR, _cancelled_frames(_call_name(meta))
        except BaseException as exc:  # noqa: BLE001
            kind, frames = wire.ERROR, _error_frames(exc)
        kind, frames, flags = self._reply(meta, kind, frames)
        self.running.pop(call_id, None)
        await self.conn.asend(kind, frames, call_id, flags)
        self._leave_from_loop(entry)

    def _keep(self, name: str, result: Any) -> dict[str, str]:
        """Keep a result here under ``name`` (a RemoteRef); the caller gets only its name."""
        self.objects[name] = Entry("value", result)
        return {"ref": name, "type": objects.qualname(type(result))}

    def handle_cancel(self, msg: wire.Message) -> None:
        """Stop a call: cancel its task (async), or raise CallCancelled in its thread (sync)."""
        running = self.running.get(msg.call_id)
        if running is None:
            return
        running.cancelled.set()
        task = running.task
        if task is not None:
            self.loop.call_soon_threadsafe(task.cancel)
            return
        with running.lock:
            if running.thread is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(running.thread), ctypes.py_object(_CallCancelled))

    async def _run_async(self, ctx: _CallContext, fn, args, kwargs) -> Any:
        token = _current_call.set(ctx)
        try:
            return await fn(*args, **kwargs)
        finally:
            _current_call.reset(token)

    async def _stream_async(self, ctx: _CallContext, fn, args, kwargs):
        token = _current_call.set(ctx)
        agen = fn(*args, **kwargs)
        try:
            self.conn.send(wire.STREAM, [], ctx.call_id)
            async for item in agen:
                await self.conn.asend(wire.ITEM, wire.dumps(item, "a generator item"), ctx.call_id)
            return wire.RESULT, wire.dumps(None)
        finally:
            await agen.aclose()
            _current_call.reset(token)

    def _run_sync(self, ctx: _CallContext, entry: Entry, meta: dict, msg: wire.Message,
                  running: _Running):
        token = _current_call.set(ctx)
        with running.lock:
            running.thread = threading.get_ident()
        try:
            json_mode = meta.get("mode") == "json"
            if json_mode:
                payload = msg.frames[1:]
                body = json.loads(bytes(payload[0])) if payload and payload[0].nbytes else {}
                args, kwargs = body.get("args", []), body.get("kwargs", {})
            else:
                args, kwargs = wire.loads(self._arguments(msg), "the arguments")
            del msg
            result = objects.invoke(entry, meta["method"], args, kwargs)
            del args, kwargs
            if inspect.iscoroutine(result):
                result = asyncio.run_coroutine_threadsafe(result, self.loop).result()
            if meta.get("keep"):
                result = self._keep(meta["keep"], result)
            if inspect.isgenerator(result):
                if json_mode:
                    result = list(result)
                else:
                    return self._stream_sync(ctx, result, running)
            if json_mode:
                try:
                    return wire.RESULT, [wire.json_frame(result)]
                except (TypeError, ValueError) as exc:
                    raise Unserializable(
                        f"the result of {meta['method']} (type {type(result).__name__}) is not JSON "
                        f"serializable ({exc}); call it from the Python client, or return JSON values"
                    ) from None
            return wire.RESULT, wire.dumps(result, f"the result of {meta['method']}")
        except _CallCancelled:
            return wire.ERROR, _cancelled_frames(_call_name(meta))
        except BaseException as exc:  # noqa: BLE001
            return wire.ERROR, _error_frames(exc)
        finally:
            with running.lock:
                running.thread = None
            if running.cancelled.is_set():
                # a cancel that arrived as the call ended must not hit this thread's next call
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)
            self.watch.record_new()
            _current_call.reset(token)

    def _stream_sync(self, ctx: _CallContext, gen, running: _Running):
        """Send a generator's items as they come; its return value ends the stream."""
        self.conn.send(wire.STREAM, [], ctx.call_id)
        try:
            while True:
                if running.cancelled.is_set():
                    raise _CallCancelled
                try:
                    item = next(gen)
                except StopIteration as stop:
                    return wire.RESULT, wire.dumps(stop.value, "the generator's return value")
                self.conn.send(wire.ITEM, wire.dumps(item, "a generator item"), ctx.call_id)
        finally:
            gen.close()

    # -- control -------------------------------------------------------------------------------

    async def handle_control(self, msg: wire.Message) -> None:
        try:
            meta = msg.json(0)
            op = meta["op"]
            if op in ("deploy", "inspect"):
                ctx = _CallContext(msg.call_id, bool(meta.get("stream_logs", True)), self.conn)
                reply = await self.loop.run_in_executor(self.pool, self._deploy, ctx, meta, msg.frames[1:])
            elif op == "delete":
                self.objects.pop(meta["name"], None)
                reply = {"deleted": meta["name"]}
            elif op == "export":  # a kept result, pickled, for a worker of another env
                entry = self.objects.get(meta["name"])
                if entry is None:
                    raise NotFound(f"no object named {meta['name']!r} in this worker")
                frames = await self.loop.run_in_executor(
                    self.pool, wire.dumps, entry.obj, f"the remote result {meta['name']!r}")
                await self.conn.asend(wire.RESULT, frames, msg.call_id)
                return
            elif op == "import":
                value = wire.loads(msg.frames[1:], f"the remote result {meta['name']!r}")
                self.objects[meta["name"]] = Entry("value", value)
                reply = {"imported": meta["name"]}
            elif op == "stale":
                reply = {"stale": self.watch.stale()}
            elif op == "ping":
                reply = {"pid": os.getpid(), "objects": sorted(self.objects)}
            else:
                raise ValueError(f"unknown control op {op!r}")
            kind, frames = wire.RESULT, [wire.json_frame(reply)]
        except BaseException as exc:  # noqa: BLE001
            kind, frames = wire.ERROR, _error_frames(exc)
        self.conn.send(kind, frames, msg.call_id)

    def _deploy(self, ctx: _CallContext, meta: dict, payload: list[memoryview]) -> dict:
        token = _current_call.set(ctx)
        try:
            kind = meta["kind"]
            if kind == "value":
                obj = wire.loads(payload, f"the value {meta['name']!r}")
            else:
                target = objects.import_target(meta, payload)
                if kind == "instance":
                    if not isinstance(target, type):
                        raise TypeError(f"{meta.get('qualname')} is not a class")
                    args, kwargs = wire.loads(payload[meta.get("payload_frames", 0):], "the constructor arguments")
                    obj = target(*args, **kwargs)
                elif kind == "function":
                    if not callable(target):
                        raise TypeError(f"{meta.get('qualname')} is not callable")
                    obj = target
                elif kind == "class":
                    obj = target
                else:
                    raise ValueError(f"unknown object kind {kind!r}")
            self.watch.record()
            if meta["op"] == "deploy":
                self.objects[meta["name"]] = Entry(kind, obj, meta.get("max_concurrency"))
            return objects.interface(kind, obj)
        finally:
            sys.stdout.flush()
            _current_call.reset(token)


class _Running:
    """A call in progress, so that CANCEL can find and stop it."""

    __slots__ = ("call_id", "cancelled", "lock", "thread", "task")

    def __init__(self, call_id: int) -> None:
        self.call_id = call_id
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.thread: int | None = None
        self.task: asyncio.Task | None = None


class _CallCancelled(BaseException):
    """Raised inside a sync call's thread to stop it (BaseException: user code rarely catches it)."""


def _run_chain(job) -> None:
    while job is not None:
        job = job()


def _cancelled_frames(what: str):
    return wire.plain_error_frames(wire.CANCELLED, f"the call to {what} was cancelled", "CallCancelled")


def _call_name(meta: Any) -> str:
    if not isinstance(meta, dict):
        return "?"
    method = meta.get("method", "?")
    return meta.get("object", "?") if method in ("call", "__call__") else f"{meta.get('object')}.{method}"


def _error_frames(exc: BaseException):
    if isinstance(exc, NotFound):
        return wire.plain_error_frames(wire.NOT_FOUND, str(exc), "AttributeError")
    if isinstance(exc, Unserializable):
        return wire.plain_error_frames(wire.SERIALIZATION, str(exc), "TypeError")
    from tether.core.errors import SerializationError

    if isinstance(exc, SerializationError):
        return wire.plain_error_frames(wire.SERIALIZATION, str(exc), "SerializationError")
    return wire.error_frames(_user_frames(exc))


def _is_runtime_frame(frame) -> bool:
    # this module runs as __main__ in a worker (python -m), so its frames are not named "tether.*"
    return frame.f_globals is globals() or frame.f_globals.get("__name__", "").startswith("tether.")


def _user_frames(exc: BaseException) -> BaseException:
    """Drop the runtime's own frames from the top of the traceback: the caller sees its code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and _is_runtime_frame(tb.tb_frame):
        tb = tb.tb_next
    return exc.with_traceback(tb)


def _serve(socket_path: str, threads: int) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    conn = _Connection(sock, loop)
    worker = Worker(conn, threads)
    refs.register(worker.objects)
    conn.send(wire.HELLO, [wire.json_frame({"pid": os.getpid(), "python": sys.version.split()[0],
                                            "executable": sys.executable})])
    worker.serve(sock, threads)
    loop.run_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tether worker process (started by the daemon)")
    parser.add_argument("--connect", required=True, help="the daemon's socket for this worker")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TETHER_WORKER_THREADS", "64")))
    args = parser.parse_args(argv)
    sys.stdout = _CallStream(b"out", sys.stdout)  # type: ignore[assignment]
    sys.stderr = _CallStream(b"err", sys.stderr)  # type: ignore[assignment]
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    _serve(args.connect, args.threads)


if __name__ == "__main__":
    main()
