"""``POST|GET /{name}/{method}``: a call, forwarded to the worker that holds ``name``.

This is the daemon's hot path, written against ASGI directly: FastAPI's routing, dependency
injection and middleware stack cost more than the rest of a call here (measured: a bare
FastAPI route used ~2x the CPU of the same answer from a raw ASGI callable on this machine). The
FastAPI routes of the same paths call this too, so the OpenAPI schema still lists them.

A Python client posts a wire message and gets a stream of wire messages back (its logs as they
happen, then the result or the error). curl and other languages use query parameters or a JSON
body and get plain JSON back.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from tether.daemon import http_guard, proxy, responses, restore, spool
from tether.daemon.calls import CallTable, CallTracker
from tether.daemon.history import History
from tether.daemon.requests import BadRequest, decode_message, json_call_frame
from tether.daemon.store import CrossNodeRef, Store, UnknownName
from tether.protocol import shm, wire

_CTYPE = wire.CONTENT_TYPE.encode()
_STREAM_LOGS = wire.STREAM_LOGS_HEADER.encode()
_CALL_ID = wire.CALL_ID_HEADER.encode()
_KEEP = wire.KEEP_HEADER.encode()
_REFS = wire.REFS_HEADER.encode()
_QUEUE = wire.QUEUE_HEADER.encode()
_SHM = wire.SHM_HEADER.encode()
_ACCEPT = wire.ACCEPT_HEADER.encode()
_CALLER = wire.CALLER_HEADER.encode()


class CallRoute:
    """The ASGI handler of calls; ``spawn`` runs background tasks that end with the daemon."""

    def __init__(self, store: Store, calls: CallTable, spawn, history: History) -> None:
        self.store, self.calls, self.spawn, self.history = store, calls, spawn, history

    async def __call__(self, scope, receive, send, name: str, method: str) -> None:
        try:
            await self._call(scope, receive, send, name, method)
        except BadRequest as exc:
            await responses.send_error(send, exc.status, exc.kind, exc.message)
        except Exception as exc:  # a 500 with an error id, the traceback in the daemon's log
            if not await http_guard.answer_internal_error(send, exc, scope):
                raise  # the response had started: uvicorn closes the connection

    async def _call(self, scope, receive, send, name: str, method: str) -> None:
        rec = self.store.objects.get(name)
        if rec is None and name in self.store.aliases.names:  # another name of an object
            name = self.store.aliases.names[name]
            rec = self.store.objects.get(name)
        if rec is not None and rec.node:  # it lives on another node: the head forwards the call
            await proxy.forward(self, scope, receive, send, rec, method)
            return
        ctype = length = stream_logs = call_id = keep = refs = shared = accept = caller = queued = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                ctype = value
            elif key == b"content-length":
                length = value
            elif key == _CALL_ID:
                call_id = value
            elif key == _STREAM_LOGS:
                stream_logs = value
            elif key == _KEEP:
                keep = value
            elif key == _REFS:
                refs = value
            elif key == _SHM:
                shared = value
            elif key == _ACCEPT:
                accept = value
            elif key == _CALLER:
                caller = value
            elif key == _QUEUE:
                queued = value
        flags, spooled = 0, None
        store = self.store
        if scope["method"] == "POST" and ctype is not None and ctype.startswith(_CTYPE):
            body = await spool.read_call(receive, length, store.shm)
            if type(body) is spool.Spooled:  # its big frames are in shared memory already
                frames, flags, spooled = body.frames, body.flags, body.names
            else:
                msg = decode_message(body, wire.CALL)
                frames, flags = msg.frames, msg.flags
                del msg
            del body
            mode, logs = "pickle", stream_logs != b"0"
            # how this caller hears that an instance lost its state: a WARN if it reads them
            tell = restore.TELL_WARN if accept is not None and b"warn" in accept else restore.TELL_LOG
        else:
            frames = [await json_call_frame(scope, receive, length)]
            mode, logs, tell = "json", False, restore.TELL_NOTHING
        call_id = call_id.decode("latin-1") if call_id else uuid.uuid4().hex
        history = self.history
        # what a call prints is recorded even when its caller does not read it
        meta: dict[str, Any] = {"object": name, "method": method, "mode": mode,
                                "stream_logs": logs or history.enabled}
        if queued == b"1":
            meta["queue"] = True  # the worker runs it after the object's earlier queued calls
        if keep == b"1":
            keep = meta["keep"] = f"ref-{call_id}"[:200]
        else:
            keep = None
        if store.shm is not None and mode == "pickle":
            # big results come back in shared memory: mapped by a caller on this machine (x-tether-shm),
            # sent from the mapping to any other (the daemon never reads them off the worker's socket)
            meta["shm"] = True
        sent = False
        try:
            if refs:
                await store.bring_refs([r for r in refs.decode("latin-1").split(",") if r], name)
            worker, ipc_id, queue = await store.call(name, [wire.json_frame(meta), *frames], flags, tell)
            sent = True
        except UnknownName as exc:
            await responses.send_error(send, 404, "not_found", str(exc))
            return
        except CrossNodeRef as exc:
            await responses.send_error(send, 400, "bad_request", str(exc))
            return
        except RuntimeError as exc:
            await responses.send_error(send, 503, "worker_unavailable", str(exc))
            return
        finally:
            if spooled and not sent:
                shm.discard(store.shm, spooled)
        del frames  # the arguments are on their way to the worker: don't hold them while waiting
        record = self.calls.start(call_id, name, method, worker, ipc_id)
        record.caller = caller
        if history.enabled:
            queue.record = record  # what it prints is kept with it
            queue.silent = not logs
            if history.followers:
                history.started(record)
        tracker = CallTracker(self, record, queue)
        if spooled:
            tracker.files = spooled  # what the worker did not take is removed when the call ends
        if keep:
            tracker.on_result = lambda: store.register_ref(keep, worker.spec.name)
        handout = None
        if meta.get("shm"):  # a caller that maps shared memory gets links, any other the bytes
            handout = partial(shm.handout if shared == b"1" else shm.inline, folder=store.shm)
        try:
            await responses.respond(send, receive, queue, mode, on_end=tracker.end,
                                    on_abandon=tracker.abandon, prepare=handout, source=worker.pid)
        finally:
            if not tracker.record.done.is_set() and not tracker.draining:
                tracker.abandon(False)  # the response failed: the call still ends in the table
