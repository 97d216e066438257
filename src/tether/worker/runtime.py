"""The program a worker process runs: it holds user objects and runs calls on them.

A worker is started by the daemon with the env's interpreter, env vars and working directory. It
connects back to the daemon over a local socket and then serves messages (see ``tether.protocol.wire``):
CALL runs a method, CONTROL deploys, inspects or deletes objects, CANCEL stops a call.

Threads, and why: the call threads take turns reading the socket (``worker/turns.py``); the one
that reads a sync call runs it and sends the reply itself (one lock keeps messages whole on the
socket), so a sync call crosses no thread boundary and never waits for an event loop. ``async
def`` methods run on an asyncio loop started by the first of them (``worker/async_calls.py``);
control operations (deploy, delete...) run in a thread each. Whatever a call prints (stdout, stderr, logging) is sent back tagged with that call's
id, so the caller sees it live.

Only the standard library, cloudpickle and ``tether.core`` wire modules are imported here: the
daemon's dependencies (FastAPI, uvicorn, pydantic) never enter a worker. When the daemon goes away
the worker exits.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import socket
import sys
import threading
from collections import deque
from typing import Any

from tether.protocol import refs, shm, streams, wire
from tether.worker import call_context, flow, objects
from tether.worker.call_context import OUTPUT, CallContext, current_call
from tether.worker.objects import Entry, NotFound, Unserializable
from tether.worker.replies import call_name, cancelled_frames, error_frames
from tether.worker.turns import AGAIN, Readiness, TakeTurns


class _Connection:
    """The worker's end of the socket to the daemon. Any thread may send. The daemon reads
    whatever comes; a generator waits on its own credit window instead (``worker/flow.py``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forked)

    def send(self, kind: int, frames, call_id: int = 0, flags: int = 0) -> None:
        parts = wire.encode(kind, frames, call_id, flags)
        try:
            with self.lock:
                if OUTPUT.runs:  # what was printed goes first: a call's output before its reply
                    parts = OUTPUT.take() + parts
                streams.send_parts(self.sock, parts)
        except OSError:
            pass  # the daemon went away: the reader thread sees EOF and ends this process

    def flush_output(self, timeout: float = -1) -> None:
        """Send what calls printed (``worker/call_context.py``: its flusher, a full buffer, exit)."""
        if not self.lock.acquire(timeout=timeout):
            return
        try:
            parts = OUTPUT.take()
            if parts:
                streams.send_parts(self.sock, parts)
        except OSError:
            pass
        finally:
            self.lock.release()

    def _forked(self) -> None:
        self.lock = threading.Lock()  # a thread of the parent may have held it


# ---------------------------------------------------------------------------------------------
# The worker


class Worker:
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.objects: dict[str, Entry] = {}
        self.watch = objects.ModuleWatch()
        self.running: dict[int, _Running] = {}
        self.shm = os.environ.get("TETHER_SHM_DIR") or None  # the cluster's shared-memory folder
        self._aio = None
        self._aio_lock = threading.Lock()

    @property
    def aio(self):
        """The asyncio side, started by the first call that needs it."""
        if self._aio is None:
            with self._aio_lock:
                if self._aio is None:
                    from tether.worker.async_calls import AsyncCalls

                    self._aio = AsyncCalls(self)
        return self._aio

    def run_later(self, job) -> None:
        """Run a job (and what it hands back) in a thread of its own."""
        if job is not None:
            threading.Thread(target=_run_chain, args=(job,), daemon=True).start()

    def serve(self, sock: socket.socket, threads: int) -> None:
        """Start the call threads, which take turns reading the socket (``worker/turns.py``)."""
        parser, ready = streams.MessageParser(), deque()
        readiness = Readiness(sock.fileno()) if Readiness.available() else None
        flags = socket.MSG_DONTWAIT if readiness is not None else 0

        def read() -> wire.Message | object | None:
            while not ready:
                try:
                    n = sock.recv_into(parser.buffer(), 0, flags)
                except BlockingIOError:
                    return AGAIN  # (only with readiness: the thread waits to be woken again)
                except OSError:
                    return None
                if not n:
                    return None
                ready.extend(parser.feed(n))
            return ready.popleft()

        TakeTurns(read, self.route, self._daemon_gone, threads, readiness=readiness,
                  pending=lambda: bool(ready)).start()

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
            threading.Thread(target=self.handle_control, args=(msg,), name="tether-control", daemon=True).start()
        elif kind == wire.CREDIT:
            running = self.running.get(msg.call_id)
            if running is not None and running.window is not None:
                running.window.grant(wire.credit_amount(msg))
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
            self.conn.send(wire.ERROR, error_frames(exc), call_id)
            return None
        if (flags.get("async") or flags.get("async_generator")) and meta.get("mode") != "json":
            def job():
                self.aio.start(msg, meta, entry, flags, running)
        else:
            def job():
                return self._sync_call(msg, meta, entry, running)
        if meta.get("queue"):  # fn.enqueue: its turn among queued calls first, then the gate's
            job = _queued(job, entry)
            return job if entry.queue.enter(job) else None
        if entry.gate is None or entry.gate.enter(job):
            return job
        return None  # max_concurrency: it waits for its turn without holding a thread

    def _sync_call(self, msg: wire.Message, meta: dict, entry: Entry, running: _Running):
        if running.cancelled.is_set():  # cancelled while it waited for its turn
            kind, frames = wire.ERROR, cancelled_frames(call_name(meta))
        else:
            ctx = CallContext(msg.call_id, bool(meta.get("stream_logs", True)), self.conn)
            kind, frames = self._run_sync(ctx, entry, meta, msg, running)
        del msg  # the arguments' buffers can go before the reply is written
        return self.finish(running.call_id, meta, entry, kind, frames)

    def finish(self, call_id: int, meta: dict, entry: Entry, kind: int, frames):
        """Send a call's reply; returns the next call its gate lets through (a job), if any."""
        kind, frames, flags = self._reply(meta, kind, frames)
        self.running.pop(call_id, None)
        self.conn.send(kind, frames, call_id, flags)
        after = entry.gate.leave() if entry.gate is not None else None
        if meta.get("queue"):
            queued = entry.queue.leave()  # the next enqueued call
            if after is None:
                after = queued
            else:
                self.run_later(queued)
        return after

    def arguments(self, msg: wire.Message) -> list:
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

    def keep(self, name: str, result: Any) -> dict[str, str]:
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
            self.aio.cancel(task)
            return
        with running.lock:
            if running.window is not None and running.window.cancel():
                return  # it was waiting for credit: it stops there
            if running.thread is not None:
                _raise_in_thread(running.thread, _CallCancelled)

    def _run_sync(self, ctx: CallContext, entry: Entry, meta: dict, msg: wire.Message,
                  running: _Running):
        token = current_call.set(ctx)
        with running.lock:
            running.thread = threading.get_ident()
        try:
            json_mode = meta.get("mode") == "json"
            if json_mode:
                payload = msg.frames[1:]
                body = json.loads(bytes(payload[0])) if payload and payload[0].nbytes else {}
                args, kwargs = body.get("args", []), body.get("kwargs", {})
            else:
                args, kwargs = wire.loads(self.arguments(msg), "the arguments")
            del msg
            result = objects.invoke(entry, meta["method"], args, kwargs)
            del args, kwargs
            if inspect.iscoroutine(result):
                result = self.aio.run(result)
            if meta.get("keep"):
                result = self.keep(meta["keep"], result)
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
            return wire.ERROR, cancelled_frames(call_name(meta))
        except BaseException as exc:  # noqa: BLE001
            return wire.ERROR, error_frames(exc)
        finally:
            with running.lock:
                running.thread = None
            if running.cancelled.is_set():
                # a cancel that arrived as the call ended must not hit this thread's next call
                _raise_in_thread(threading.get_ident(), None)
            self.watch.record_new()
            current_call.reset(token)

    def _stream_sync(self, ctx: CallContext, gen, running: _Running):
        """Send a generator's items as they come, within its credit window (``worker/flow.py``);
        its return value ends the stream."""
        window = running.window = flow.Window()
        send, call_id = self.conn.send, ctx.call_id
        send(wire.STREAM, [wire.json_frame({"window": window.size})], call_id)
        try:
            while True:
                if running.cancelled.is_set():
                    raise _CallCancelled
                try:
                    item = next(gen)
                except StopIteration as stop:
                    return wire.RESULT, wire.dumps(stop.value, "the generator's return value")
                frames = wire.dumps(item, "a generator item")
                del item
                if not window.acquire(wire.flow_cost(frames)):
                    raise _CallCancelled
                send(wire.ITEM, frames, call_id)
        finally:
            gen.close()

    # -- control -------------------------------------------------------------------------------

    def handle_control(self, msg: wire.Message) -> None:
        """A control message, in a thread of its own (they are rare; a deploy may take long)."""
        try:
            meta = msg.json(0)
            op = meta["op"]
            if op in ("deploy", "inspect"):
                ctx = CallContext(msg.call_id, bool(meta.get("stream_logs", True)), self.conn)
                reply = self._deploy(ctx, meta, msg.frames[1:])
            elif op == "delete":
                self.objects.pop(meta["name"], None)
                reply = {"deleted": meta["name"]}
            elif op == "export":  # a kept result, pickled, for a worker of another env
                entry = self.objects.get(meta["name"])
                if entry is None:
                    raise NotFound(f"no object named {meta['name']!r} in this worker")
                frames = wire.dumps(entry.obj, f"the remote result {meta['name']!r}")
                self.conn.send(wire.RESULT, frames, msg.call_id)
                return
            elif op == "import":
                value = wire.loads(msg.frames[1:], f"the remote result {meta['name']!r}")
                self.objects[meta["name"]] = Entry("value", value)
                reply = {"imported": meta["name"]}
            elif op == "stale":
                reply = {"stale": self.watch.stale()}
            elif op == "setenv":  # secrets given to a running worker (daemon/secrets.py)
                os.environ.update(meta["env_vars"])
                reply = {"set": sorted(meta["env_vars"])}
            elif op == "ping":
                reply = {"pid": os.getpid(), "objects": sorted(self.objects)}
            else:
                raise ValueError(f"unknown control op {op!r}")
            kind, frames = wire.RESULT, [wire.json_frame(reply)]
        except BaseException as exc:  # noqa: BLE001
            kind, frames = wire.ERROR, error_frames(exc)
        self.conn.send(kind, frames, msg.call_id)

    def _deploy(self, ctx: CallContext, meta: dict, payload: list[memoryview]) -> dict:
        token = current_call.set(ctx)
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
                    if meta.get("from_state"):  # made by the caller and sent (class X(tether.Module))
                        obj = target.__new__(target)
                        obj.__dict__.update(kwargs)
                    else:
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
            current_call.reset(token)


class _Running:
    """A call in progress, so that CANCEL can find and stop it."""

    __slots__ = ("call_id", "cancelled", "lock", "thread", "task", "window")

    def __init__(self, call_id: int) -> None:
        self.call_id = call_id
        self.cancelled = _Flag()
        self.lock = threading.Lock()
        self.thread: int | None = None
        self.task = None  # an asyncio.Task, for an async call
        self.window = None  # a generator's credit window (worker/flow.py)


class _Flag:
    """``set()``/``is_set()`` of a ``threading.Event`` nobody waits on (one per call: an Event
    is a Condition and two locks to make)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class _CallCancelled(BaseException):
    """Raised inside a sync call's thread to stop it (BaseException: user code rarely catches it)."""


def _queued(job, entry: Entry):
    """An enqueued call's job: once the queue lets it go, it takes its place under the
    object's ``max_concurrency`` gate like any call."""
    def through_gate():
        if entry.gate is None or entry.gate.enter(job):
            return job()
        return None
    return through_gate


def _run_chain(job) -> None:
    while job is not None:
        job = job()


def _raise_in_thread(thread_id: int, exc_type) -> None:
    """Ask a thread to raise ``exc_type`` at its next bytecode (None: take back a pending ask)."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type is not None else None)


def _serve(socket_path: str, threads: int) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    conn = _Connection(sock)
    OUTPUT.attach(conn.flush_output)
    worker = Worker(conn)
    refs.register(worker.objects)
    conn.send(wire.HELLO, [wire.json_frame({"pid": os.getpid(), "python": sys.version.split()[0],
                                            "executable": sys.executable})])
    worker.serve(sock, threads)
    threading.Event().wait()  # the call threads serve; the process ends with the connection


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tether worker process (started by the daemon)")
    parser.add_argument("--connect", required=True, help="the daemon's socket for this worker")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TETHER_WORKER_THREADS", "64")))
    args = parser.parse_args(argv)
    call_context.install()
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    _serve(args.connect, args.threads)


if __name__ == "__main__":
    main()
