"""The program a worker process runs: it holds user objects and runs calls on them.

A worker is started by the daemon with the env's interpreter, env vars and working directory. It
connects back to the daemon over a local socket and then serves messages (see ``tether.core.wire``):
CALL runs a method, CONTROL deploys, inspects or deletes objects. Sync methods run in a thread pool
so that many callers can use one object at once; ``async def`` methods run on the worker's loop.
Whatever a call prints (stdout, stderr, logging) is sent back tagged with that call's id, so the
caller sees it live.

Only the standard library, cloudpickle and ``tether.core.wire`` are imported here: the daemon's
dependencies (FastAPI, uvicorn, pydantic) never enter a worker. When the daemon goes away the worker
exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import ctypes
import importlib
import importlib.util
import inspect
import io
import json
import os
import sys
import sysconfig
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tether.core import refs, wire

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
            call.conn.send_threadsafe(wire.LOG, [self._name, text.encode("utf-8", "replace")], call.call_id)
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
    """The worker's end of the socket to the daemon; sends may come from any thread."""

    def __init__(self, writer: asyncio.StreamWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.writer, self.loop = writer, loop

    def send(self, kind: int, frames, call_id: int = 0) -> None:
        self.writer.writelines(wire.encode(kind, frames, call_id))

    def send_threadsafe(self, kind: int, frames, call_id: int = 0) -> None:
        if threading.get_ident() == self.loop_thread:
            self.send(kind, frames, call_id)
        else:
            self.loop.call_soon_threadsafe(self.send, kind, frames, call_id)

    loop_thread: int = 0


# ---------------------------------------------------------------------------------------------
# Objects


class _Entry:
    __slots__ = ("kind", "obj", "gate")

    def __init__(self, kind: str, obj: Any, max_concurrency: int | None = None) -> None:
        self.kind, self.obj = kind, obj
        # max_concurrency=N: at most N calls run at once, the others wait in arrival order
        self.gate = asyncio.Semaphore(max_concurrency) if max_concurrency else None


def _flags(fn: Any) -> dict[str, bool]:
    fn = inspect.unwrap(fn) if callable(fn) else fn
    if isinstance(fn, (staticmethod, classmethod)):
        fn = fn.__func__
    return {
        "async": inspect.iscoroutinefunction(fn),
        "generator": inspect.isgeneratorfunction(fn),
        "async_generator": inspect.isasyncgenfunction(fn),
    }


def interface(kind: str, obj: Any) -> dict[str, Any]:
    """What the caller's stub needs to know: methods (with async/generator flags) and properties."""
    if kind == "function":
        return {"kind": kind, "type": _qualname(obj), "methods": {"call": _flags(obj)}, "properties": []}
    if kind == "value":
        return {"kind": kind, "type": _qualname(type(obj)), "methods": {}, "properties": []}
    cls = obj if isinstance(obj, type) else type(obj)
    methods, properties = {}, []
    for name in dir(cls):
        if name.startswith("_") and name != "__call__":
            continue
        try:
            attr = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(attr, property) or hasattr(attr, "__set__") or hasattr(attr, "__get__") and not callable(attr):
            properties.append(name)
        elif callable(attr) or isinstance(attr, (staticmethod, classmethod)):
            methods[name] = _flags(attr)
    return {"kind": kind, "type": _qualname(cls), "methods": methods, "properties": properties}


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _import_target(meta: dict[str, Any], payload: list[memoryview]) -> Any:
    """The function or class a deploy names: by import path, or unpickled when serialized."""
    if meta.get("serialized"):
        return wire.loads(payload[: meta["payload_frames"]], "the serialized code")
    for entry in reversed(meta.get("path_entries") or []):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    module = importlib.import_module(meta["module"])
    target: Any = module
    for part in meta["qualname"].split("."):
        target = getattr(target, part)
    return target


class _ModuleWatch:
    """Remembers the user modules a worker imported, to tell when their source was edited."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int]] = {}
        self.known = 0  # len(sys.modules) at the last record(): a cheap "anything new?" test
        paths = sysconfig.get_paths()
        dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, paths.get("purelib", ""), paths.get("platlib", ""),
                paths.get("stdlib", ""), os.path.dirname(os.path.dirname(wire.__file__))}
        self.ignored = tuple(os.path.realpath(d) + os.sep for d in dirs if d)

    def record_new(self) -> None:
        """Record modules a call imported; O(1) when it imported none."""
        if len(sys.modules) != self.known:
            self.record()

    def record(self) -> None:
        self.known = len(sys.modules)
        for mod in list(sys.modules.values()):
            path = getattr(mod, "__file__", None)
            if not path or path in self.seen:
                continue
            real = os.path.realpath(path)
            if real.startswith(self.ignored) or "site-packages" in real:
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            self.seen[path] = (st.st_mtime_ns, st.st_size)

    def stale(self) -> list[str]:
        changed = []
        for path, stamp in self.seen.items():
            try:
                st = os.stat(path)
            except OSError:
                changed.append(path)
                continue
            if (st.st_mtime_ns, st.st_size) != stamp:
                changed.append(path)
        for path in changed:  # its .pyc is stamped to the second: an edit within it would be hidden
            _drop_bytecode(path)
        return changed


def _drop_bytecode(path: str) -> None:
    if not path.endswith(".py"):
        return
    try:
        os.unlink(importlib.util.cache_from_source(path))
    except (OSError, NotImplementedError, ValueError):
        pass


# ---------------------------------------------------------------------------------------------
# The worker


class Worker:
    def __init__(self, conn: _Connection, threads: int) -> None:
        self.conn = conn
        self.objects: dict[str, _Entry] = {}
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tether-call")
        self.watch = _ModuleWatch()
        self.tasks: set[asyncio.Task] = set()
        self.running: dict[int, _Running] = {}

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- calls ---------------------------------------------------------------------------------

    async def handle_call(self, msg: wire.Message) -> None:
        call_id = msg.call_id
        running = self.running[call_id] = _Running()
        try:
            meta = msg.json(0)
            ctx = _CallContext(call_id, bool(meta.get("stream_logs", True)), self.conn)
            entry = self.objects.get(meta["object"])
            if entry is None:
                raise _NotFound(f"no object named {meta['object']!r} in this worker")
            if entry.gate is not None:  # max_concurrency: calls queue here, on the loop
                await entry.gate.acquire()
            try:
                method = meta["method"]
                static = _static_attr(entry, method)
                flags = _flags(static) if static is not None else {}
                if (flags.get("async") or flags.get("async_generator")) and meta.get("mode") != "json":
                    args, kwargs = wire.loads(msg.frames[1:], "the arguments")
                    running.task = asyncio.current_task()
                    if flags.get("async_generator"):
                        kind, frames = await self._stream_async(ctx, static_target(entry, method), args, kwargs, running)
                    else:
                        result = await self._run_async(ctx, static_target(entry, method), args, kwargs)
                        if meta.get("keep"):
                            result = self._keep(meta["keep"], result)
                        kind, frames = wire.RESULT, wire.dumps(result, f"the result of {method}")
                else:
                    loop = asyncio.get_running_loop()
                    kind, frames = await loop.run_in_executor(
                        self.pool, self._run_sync, ctx, entry, meta, msg.frames[1:], running)
            finally:
                if entry.gate is not None:
                    entry.gate.release()
        except asyncio.CancelledError:
            kind, frames = wire.ERROR, _cancelled_frames(_call_name(meta))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            kind, frames = wire.ERROR, _error_frames(exc)
        finally:
            self.running.pop(call_id, None)
        self.conn.send(kind, frames, call_id)
        await self.conn.writer.drain()

    def _keep(self, name: str, result: Any) -> dict[str, str]:
        """Keep a result here under ``name`` (a RemoteRef); the caller gets only its name."""
        self.objects[name] = _Entry("value", result)
        return {"ref": name, "type": _qualname(type(result))}

    def handle_cancel(self, msg: wire.Message) -> None:
        """Stop a call: cancel its task (async), or raise CallCancelled in its thread (sync)."""
        running = self.running.get(msg.call_id)
        if running is None:
            return
        running.cancelled.set()
        if running.task is not None:
            running.task.cancel()
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

    async def _stream_async(self, ctx: _CallContext, fn, args, kwargs, running: _Running):
        token = _current_call.set(ctx)
        agen = fn(*args, **kwargs)
        try:
            self.conn.send(wire.STREAM, [], ctx.call_id)
            async for item in agen:
                self.conn.send(wire.ITEM, wire.dumps(item, "a generator item"), ctx.call_id)
                await self.conn.writer.drain()
            return wire.RESULT, wire.dumps(None)
        finally:
            await agen.aclose()
            _current_call.reset(token)

    def _run_sync(self, ctx: _CallContext, entry: _Entry, meta: dict, payload: list[memoryview],
                  running: _Running):
        token = _current_call.set(ctx)
        with running.lock:
            running.thread = threading.get_ident()
        try:
            json_mode = meta.get("mode") == "json"
            if json_mode:
                body = json.loads(bytes(payload[0])) if payload and payload[0].nbytes else {}
                args, kwargs = body.get("args", []), body.get("kwargs", {})
            else:
                args, kwargs = wire.loads(payload, "the arguments")
            result = _invoke(entry, meta["method"], args, kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run_coroutine_threadsafe(result, self.conn.loop).result()
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
                    raise _Serialization(
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
                # a cancel that arrived after the call ended must not hit this thread's next call
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)
            self.watch.record_new()
            _current_call.reset(token)

    def _stream_sync(self, ctx: _CallContext, gen, running: _Running):
        """Send a generator's items as they come; its return value ends the stream."""
        self.conn.send_threadsafe(wire.STREAM, [], ctx.call_id)
        try:
            while True:
                if running.cancelled.is_set():
                    raise _CallCancelled
                try:
                    item = next(gen)
                except StopIteration as stop:
                    return wire.RESULT, wire.dumps(stop.value, "the generator's return value")
                self.conn.send_threadsafe(wire.ITEM, wire.dumps(item, "a generator item"), ctx.call_id)
        finally:
            gen.close()

    # -- control -------------------------------------------------------------------------------

    async def handle_control(self, msg: wire.Message) -> None:
        try:
            meta = msg.json(0)
            op = meta["op"]
            if op in ("deploy", "inspect"):
                ctx = _CallContext(msg.call_id, bool(meta.get("stream_logs", True)), self.conn)
                loop = asyncio.get_running_loop()
                reply = await loop.run_in_executor(self.pool, self._deploy, ctx, meta, msg.frames[1:])
            elif op == "delete":
                self.objects.pop(meta["name"], None)
                reply = {"deleted": meta["name"]}
            elif op == "export":  # a kept result, pickled, for a worker of another env
                entry = self.objects.get(meta["name"])
                if entry is None:
                    raise _NotFound(f"no object named {meta['name']!r} in this worker")
                frames = await asyncio.get_running_loop().run_in_executor(
                    self.pool, wire.dumps, entry.obj, f"the remote result {meta['name']!r}")
                self.conn.send(wire.RESULT, frames, msg.call_id)
                await self.conn.writer.drain()
                return
            elif op == "import":
                value = wire.loads(msg.frames[1:], f"the remote result {meta['name']!r}")
                self.objects[meta["name"]] = _Entry("value", value)
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
        await self.conn.writer.drain()

    def _deploy(self, ctx: _CallContext, meta: dict, payload: list[memoryview]) -> dict:
        token = _current_call.set(ctx)
        try:
            kind = meta["kind"]
            if kind == "value":
                obj = wire.loads(payload, f"the value {meta['name']!r}")
            else:
                target = _import_target(meta, payload)
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
                self.objects[meta["name"]] = _Entry(kind, obj, meta.get("max_concurrency"))
            return interface(kind, obj)
        finally:
            sys.stdout.flush()
            _current_call.reset(token)


class _Running:
    """A call in progress, so that CANCEL can find and stop it."""

    __slots__ = ("cancelled", "lock", "thread", "task")

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.thread: int | None = None
        self.task: asyncio.Task | None = None


class _CallCancelled(BaseException):
    """Raised inside a sync call's thread to stop it (BaseException: user code rarely catches it)."""


def _cancelled_frames(what: str):
    return wire.plain_error_frames(wire.CANCELLED, f"the call to {what} was cancelled", "CallCancelled")


def _call_name(meta: Any) -> str:
    if not isinstance(meta, dict):
        return "?"
    method = meta.get("method", "?")
    return meta.get("object", "?") if method in ("call", "__call__") else f"{meta.get('object')}.{method}"


class _NotFound(AttributeError):
    pass


class _Serialization(TypeError):
    pass


def _static_attr(entry: _Entry, method: str) -> Any:
    if entry.kind == "function":
        return entry.obj if method in ("call", "__call__") else None
    if entry.kind != "instance":
        return None
    try:
        return inspect.getattr_static(entry.obj, method)
    except AttributeError:
        return None


def static_target(entry: _Entry, method: str) -> Any:
    """The callable an async call runs: the function itself, or the bound method."""
    return entry.obj if entry.kind == "function" else getattr(entry.obj, method)


def _invoke(entry: _Entry, method: str, args: list, kwargs: dict) -> Any:
    obj = entry.obj
    if entry.kind == "function":
        if method not in ("call", "__call__"):
            raise _NotFound(f"a function has only the method 'call' (asked for {method!r})")
        return obj(*args, **kwargs)
    if entry.kind == "value":
        if method == "__value__":
            return obj
        raise _NotFound(f"a stored value has no method {method!r}; fetch it with cluster.get()")
    if method == "__setattr__":
        setattr(obj, *args)
        return None
    try:
        attr = getattr(obj, method)
    except AttributeError:
        if method in dir(obj):
            raise  # a property that itself raised AttributeError: the user's error
        public = sorted(n for n in dir(obj) if not n.startswith("_"))
        raise _NotFound(f"{type(obj).__name__} has no attribute {method!r}; it has: {', '.join(public)}") from None
    if callable(attr):
        return attr(*args, **kwargs)
    if args or kwargs:
        raise TypeError(f"{type(obj).__name__}.{method} is a {type(attr).__name__}, not a method")
    return attr


def _error_frames(exc: BaseException):
    if isinstance(exc, _NotFound):
        return wire.plain_error_frames(wire.NOT_FOUND, str(exc), "AttributeError")
    if isinstance(exc, _Serialization):
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


async def _serve(socket_path: str, threads: int) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_unix_connection(socket_path, limit=1 << 20)
    conn = _Connection(writer, loop)
    conn.loop_thread = threading.get_ident()
    worker = Worker(conn, threads)
    refs.register(worker.objects)
    conn.send(wire.HELLO, [wire.json_frame({"pid": os.getpid(), "python": sys.version.split()[0],
                                            "executable": sys.executable})])
    while True:
        try:
            msg = await wire.read_message(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            break
        if msg.kind == wire.CALL:
            worker.spawn(worker.handle_call(msg))
        elif msg.kind == wire.CONTROL:
            worker.spawn(worker.handle_control(msg))
        elif msg.kind == wire.CANCEL:
            worker.handle_cancel(msg)
    # The daemon went away: leave at once, even if user threads are still busy.
    sys.stdout.flush()
    os._exit(0)


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
    asyncio.run(_serve(args.connect, args.threads))


if __name__ == "__main__":
    main()
