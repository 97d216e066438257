"""The worker's asyncio side: ``async def`` methods and async generators, on a loop of their own.

Started by the first async call: importing asyncio costs a worker ~75 ms at start on the
machines measured here, and most services are sync. The loop runs in a thread named
``tether-loop``; sync code reaches it with ``run()`` (a coroutine returned to a JSON call).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tether.protocol import wire
from tether.worker import flow, objects
from tether.worker.call_context import CallContext, current_call
from tether.worker.replies import call_name, cancelled_frames, error_frames


class AsyncCalls:
    def __init__(self, worker: Any) -> None:
        self.worker, self.conn = worker, worker.conn
        self.loop = asyncio.new_event_loop()
        self.tasks: set[asyncio.Task] = set()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        threading.Thread(target=run, name="tether-loop", daemon=True).start()
        ready.wait()

    # -- from any thread -------------------------------------------------------------------------

    def start(self, msg: wire.Message, meta: dict, entry: objects.Entry, flags: dict, running: Any) -> None:
        self.loop.call_soon_threadsafe(self._start, msg, meta, entry, flags, running)

    def cancel(self, task: asyncio.Task) -> None:
        self.loop.call_soon_threadsafe(task.cancel)

    def run(self, coro) -> Any:
        """Run a coroutine on the loop and wait for its result (from a call thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    # -- on the loop ---------------------------------------------------------------------------

    def _start(self, msg, meta, entry, flags, running) -> None:
        if running.cancelled.is_set():  # cancelled while it waited for its turn
            self.worker.run_later(self.worker.finish(
                msg.call_id, meta, entry, wire.ERROR, cancelled_frames(call_name(meta))))
            return
        task = self.loop.create_task(self._call(msg, meta, entry, flags, running))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        running.task = task

    async def _call(self, msg, meta, entry, flags, running) -> None:
        call_id, method = msg.call_id, meta["method"]
        try:
            ctx = CallContext(call_id, bool(meta.get("stream_logs", True)), self.conn)
            args, kwargs = wire.loads(self.worker.arguments(msg), "the arguments")
            del msg
            target = objects.bound_target(entry, method)
            if flags.get("async_generator"):
                kind, frames = await self._stream(ctx, target, args, kwargs, running)
            else:
                result = await self._run(ctx, target, args, kwargs)
                if meta.get("keep"):
                    result = self.worker.keep(meta["keep"], result)
                kind, frames = wire.RESULT, wire.dumps(result, f"the result of {method}")
        except asyncio.CancelledError:
            kind, frames = wire.ERROR, cancelled_frames(call_name(meta))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            kind, frames = wire.ERROR, error_frames(exc)
        if sum(memoryview(f).nbytes for f in frames) > wire.BIG_PAYLOAD:
            # written from a thread: the loop keeps serving other calls while the daemon reads it
            after = await self.loop.run_in_executor(None, self.worker.finish, call_id, meta, entry, kind, frames)
        else:
            after = self.worker.finish(call_id, meta, entry, kind, frames)
        self.worker.run_later(after)  # the next call its gate lets through, if any

    async def _run(self, ctx: CallContext, fn, args, kwargs) -> Any:
        token = current_call.set(ctx)
        try:
            return await fn(*args, **kwargs)
        finally:
            current_call.reset(token)

    async def _stream(self, ctx: CallContext, fn, args, kwargs, running):
        """An async generator's items, within its credit window (``worker/flow.py``)."""
        token = current_call.set(ctx)
        agen = fn(*args, **kwargs)
        window = running.window = flow.AsyncWindow(self.loop)
        send, call_id = self.conn.send, ctx.call_id
        try:
            send(wire.STREAM, [wire.json_frame({"window": window.size})], call_id)
            async for item in agen:
                frames = wire.dumps(item, "a generator item")
                del item
                cost = wire.flow_cost(frames)
                await window.acquire(cost)
                if cost > wire.BIG_PAYLOAD:
                    await self.loop.run_in_executor(None, send, wire.ITEM, frames, call_id)
                else:
                    send(wire.ITEM, frames, call_id)
            return wire.RESULT, wire.dumps(None)
        finally:
            await agen.aclose()
            current_call.reset(token)
