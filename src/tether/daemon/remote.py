"""The head's side of objects that live on another node: their deploy, deletion and errors.

The head keeps a record of each such object (``ObjectRecord.node``), so that ``keys()`` lists
every object of the cluster and a call finds where to go (``call_route``); the object itself,
its env and its worker are the node's. The node's daemon is an ordinary daemon: it re-creates
the object when its worker restarts, and never learns it is not the head.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from tether.daemon.nodes import NodeError, UnknownNode
from tether.protocol import wire

if TYPE_CHECKING:
    from tether.daemon.store import ObjectRecord, Store


def node_of(meta: dict[str, Any]) -> int:
    """The node an env asks for (``tether.env(compute={"node_idx": i})``); 0 is the head."""
    env = meta.get("env") or {}
    try:
        return int(env.get("node_idx") or 0)
    except (TypeError, ValueError):
        return 0


def for_the_node(meta: dict[str, Any]) -> dict[str, Any]:
    """The deploy meta as the node sees it: the env is its own (node 0 of itself)."""
    env = {k: v for k, v in (meta.get("env") or {}).items() if k != "node_idx"}
    return {**meta, "env": env}


def lost(exc: NodeError | UnknownNode) -> wire.Message:
    """The ERROR a caller gets when a node is gone or unknown (a ``tether.ConnectionError``)."""
    node = getattr(exc, "index", None)
    frames = wire.plain_error_frames(wire.NODE_LOST, str(exc), "NodeLost", node=node)
    return wire.Message(wire.ERROR, 0, [memoryview(f) for f in frames])


def error_from_status(status: int, body: bytes) -> wire.Message:
    """A node's JSON error response as the ERROR message the head's caller gets."""
    try:
        data = json.loads(body)
        message = str(data.get("message", ""))
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")[:500]
    kind = {400: wire.BAD_REQUEST, 404: wire.NOT_FOUND}.get(status, wire.EXCEPTION)
    frames = wire.plain_error_frames(kind, message or f"HTTP {status} from the node", f"HTTP{status}")
    return wire.Message(wire.ERROR, 0, [memoryview(f) for f in frames])


async def deploy(store: Store, node: int, meta: dict[str, Any], payload: list, out: asyncio.Queue) -> None:
    """Forward a deploy to ``node``'s daemon; its messages (logs, then the interface) go to
    ``out`` as they come, and the head records the object."""
    try:
        link = store.nodes.get(node)
        upstream = await link.request(
            "POST", "/_tether/deploy", [("Content-Type", wire.CONTENT_TYPE)],
            wire.encode(wire.CONTROL, [wire.json_frame(for_the_node(meta)), *payload]))
        if upstream.status != 200:
            out.put_nowait(error_from_status(upstream.status, await upstream.body()))
            return
        while True:
            msg = await upstream.message()
            if msg is None:
                raise NodeError(link, "closed the connection before the deploy finished")
            if msg.kind == wire.RESULT and meta["op"] == "deploy":
                env = (meta.get("env") or {}).get("name") or "default"
                await store.commit(meta["name"], env, meta, [], msg.json(0), node=node)
            out.put_nowait(msg)
            if msg.kind in wire.TERMINAL_KINDS:
                await upstream.end()  # the connection goes back to the pool
                return
    except (NodeError, UnknownNode) as exc:
        out.put_nowait(lost(exc))


async def delete(store: Store, node: int, name: str) -> None:
    """Delete an object or an env on ``node`` (the head has already forgotten it)."""
    try:
        upstream = await store.nodes.get(node).request("DELETE", f"/_tether/objects/{name}", [], [])
        await upstream.body()
    except (NodeError, UnknownNode) as exc:
        store.log.warning("could not delete %r on node %s: %s", name, node, exc)


async def forget(store: Store, rec: ObjectRecord) -> None:
    if rec.node:
        await delete(store, rec.node, rec.name)


async def cancel(store: Store, node: int, call_id: str, force: bool) -> dict[str, Any]:
    """Cancel a forwarded call on the node that runs it."""
    try:
        upstream = await store.nodes.get(node).request(
            "POST", f"/_tether/calls/{call_id}/cancel?force={'true' if force else 'false'}", [], [])
        body = await upstream.body()
    except (NodeError, UnknownNode) as exc:
        return {"id": call_id, "cancelled": False, "reason": str(exc)}
    try:
        return json.loads(body)
    except ValueError:
        return {"id": call_id, "cancelled": False, "reason": body.decode(errors="replace")[:200]}
