"""The head forwards a call to the node that holds its object, and streams the answer back.

The request goes on as it came (the same body: no unpickling on the head), except that frames
the caller put in the head's shared memory are read back in (the node cannot see them) and the
node is not asked for shared memory in return. A Python caller's answer is read message by
message into the head's own call table, so ``cluster.result(call_id)``, cancel and a caller that
goes away work as for a local object; a curl caller's JSON answer is passed through as it is.
What the head holds of one answer is bounded (``daemon/flow.ForwardQueue``).

A Python caller's answer names the node and the object's name there (``x-tether-route``): a
client that can reach that node's daemon itself calls it directly from then on, and the head is
out of the call path (``client/routes.py``, docs/wire.md "Direct calls to a node").
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from tether.daemon import remote, responses
from tether.daemon.calls import CallTracker
from tether.daemon.flow import ForwardQueue
from tether.daemon.nodes import NodeError, UnknownNode
from tether.daemon.requests import decode_message, read_body
from tether.protocol import shm, wire

if TYPE_CHECKING:
    from tether.daemon.call_route import CallRoute
    from tether.daemon.nodes import Upstream
    from tether.daemon.store import ObjectRecord

_ROUTE = wire.ROUTE_HEADER.encode()
# request headers that travel on to the node (not the token, not the shared-memory ask)
_FORWARDED = (b"content-type", wire.CALL_ID_HEADER.encode(), wire.STREAM_LOGS_HEADER.encode(),
              wire.KEEP_HEADER.encode(), wire.REFS_HEADER.encode(), wire.CALLER_HEADER.encode(),
              wire.QUEUE_HEADER.encode())
_CTYPE = wire.CONTENT_TYPE.encode()


async def forward(route: CallRoute, scope, receive, send, rec: ObjectRecord, method: str) -> None:
    store = route.store
    asked = {key: value for key, value in scope["headers"] if key in _FORWARDED or key == b"content-length"}
    try:
        link = store.nodes.get(rec.node)
    except UnknownNode as exc:
        await responses.send_error(send, 502, "node_unreachable", str(exc))
        return
    body = await read_body(receive, asked.pop(b"content-length", None))
    python = scope["method"] == "POST" and asked.get(b"content-type", b"").startswith(_CTYPE)
    parts: list = [body]
    if python:
        msg = decode_message(body, wire.CALL)
        if msg.flags & wire.SHARED:  # in the head's /dev/shm: the node needs the bytes
            try:
                parts = wire.encode(wire.CALL, shm.resolve(msg.frames, msg.flags, store.shm))
            except (OSError, ValueError) as exc:  # BadSharedFrame is a ValueError
                await responses.send_error(send, 400, "bad_request", f"cannot read the call's shared "
                                           f"frames: {exc}")
                return
        refs = [r for r in asked.get(wire.REFS_HEADER.encode(), b"").decode("latin-1").split(",") if r]
        elsewhere = [r for r in refs if (store.objects.get(r) is not None and store.objects[r].node != rec.node)]
        if elsewhere:
            await responses.send_error(
                send, 400, "bad_request", f"the remote result {elsewhere[0]!r} lives on another node than "
                f"{rec.name!r} (node {rec.node}): results do not move between nodes yet; fetch() it "
                "and pass the value")
            return
    target = f"/{rec.name}/{method}".encode()  # by the object's own name: the node knows no aliases
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    call_id = asked.get(wire.CALL_ID_HEADER.encode(), b"").decode("latin-1")
    if python and not call_id:
        call_id = asked[wire.CALL_ID_HEADER.encode()] = uuid.uuid4().hex
    headers = [(k.decode("latin-1"), v if isinstance(v, str) else v.decode("latin-1")) for k, v in asked.items()]
    try:
        upstream = await link.send(scope["method"], target.decode("latin-1"), headers, parts)
    except NodeError as exc:
        await responses.send_error(send, 502, "node_unreachable", str(exc))
        return
    del body, parts
    if not python:
        try:
            await upstream.begin()
        except NodeError as exc:
            await responses.send_error(send, 502, "node_unreachable", str(exc))
            return
        await _pass_through(send, upstream)
        return
    # in the head's call table from now on: cancel and result-by-id find it while it runs
    queue = ForwardQueue()
    record = route.calls.start(call_id, rec.name, method, None, 0, node=rec.node, upstream=upstream)
    record.caller = asked.get(wire.CALLER_HEADER.encode())  # recorded here too (its output: on the node)
    if route.history.followers:
        route.history.started(record)
    try:
        status = await upstream.begin()
    except NodeError as exc:
        route.calls.finish(record, remote.lost(exc))
        await responses.send_error(send, 502, "node_unreachable", str(exc))
        return
    if status != 200:
        try:
            data = await upstream.body()
        except NodeError as exc:
            route.calls.finish(record, remote.lost(exc))
            await responses.send_error(send, 502, "node_unreachable", str(exc))
            return
        route.calls.finish(record, remote.error_from_status(status, data))  # the node's own message
        await _send_json(send, status, data)
        return
    tracker = CallTracker(route, record, queue)
    if asked.get(wire.KEEP_HEADER.encode()) == b"1":
        ref = f"ref-{call_id}"[:200]  # the node keeps it under the same name
        tracker.on_result = lambda: store.register_ref(ref, rec.env, node=rec.node)
    route.spawn(_pump(upstream, queue))
    try:
        source = (upstream.resp.source or b"") + b" node=%d" % rec.node  # the node's worker, and the node
        route = [(_ROUTE, b"%d %s" % (rec.node, rec.name.encode("latin-1")))]
        await responses.respond(send, receive, queue, "pickle", on_end=tracker.end,
                                on_abandon=tracker.abandon, source=source.lstrip(), extra=route)
    finally:
        if not record.done.is_set() and not tracker.draining:
            tracker.abandon(False)


async def _pump(upstream: Upstream, queue: ForwardQueue) -> None:
    """The node's messages onto the call's queue, up to the last; a lost node ends the call.

    While the queue is full (the caller reads slower than the node answers), the node's answer
    is not read: TCP stops the node's response, whose own queue then pauses a generator there or
    drops its output with a counter (``daemon/flow.py``). The head holds one window per call."""
    try:
        while True:
            if queue.held > queue.limit:
                await queue.room()
            msg = await upstream.message()
            if msg is None:
                raise NodeError(upstream.link, "closed the connection before the call finished")
            queue.put_nowait(msg)
            if msg.kind in wire.TERMINAL_KINDS:
                await upstream.end()  # the connection is reused for the next call
                return
    except NodeError as exc:
        queue.put_nowait(remote.lost(exc))


async def _pass_through(send, upstream: Upstream) -> None:
    try:
        data = await upstream.body()
    except NodeError as exc:
        await responses.send_error(send, 502, "node_unreachable", str(exc))
        return
    await _send_json(send, upstream.status, data)


async def _send_json(send, status: int, data: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", responses.JSON_TYPE), (b"content-length", b"%d" % len(data))]})
    await send({"type": "http.response.body", "body": data})
