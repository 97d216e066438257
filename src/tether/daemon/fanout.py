"""A multi-node head's records of calls, with its nodes': ``GET /_tether/calls?nodes=all`` asks
every node for the same listing and merges (newest first), and the output of a call the head
forwarded is the node's, passed through (docs/calls.md, "Multi-node clusters").

Each node keeps the records of the calls it ran (with their output and peak memory); the head
keeps its own of the calls it forwarded (caller, outcome and duration as it saw them). Merged, a
call appears once: the node's record, with the head's caller if the node had none.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote, urlencode

from fastapi.responses import JSONResponse, Response, StreamingResponse

from tether.daemon.nodes import NodeError, NodeLink, Nodes

NDJSON = "application/x-ndjson"
#: seconds a node may take to answer a listing before the head answers without it
TIMEOUT = 10.0


async def _listing(link: NodeLink, target: str) -> list[dict[str, Any]]:
    upstream = await link.request("GET", target, [], [])
    data = await upstream.body()
    if upstream.status != 200:
        raise NodeError(link, f"answered HTTP {upstream.status}: {data[:300].decode(errors='replace')}")
    return json.loads(data)["calls"]


async def merged(nodes: Nodes, query: list[tuple[str, str]], rows: list[dict[str, Any]],
                 limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rows`` (the head's) merged with every node's answer to the same ``query``; and the
    nodes that did not answer, ``[{"node", "error"}]`` (the listing goes on without them)."""
    target = "/_tether/calls" + (f"?{urlencode(query)}" if query else "")
    links = sorted(nodes.links.items())
    answers = await asyncio.gather(*(asyncio.wait_for(_listing(link, target), TIMEOUT) for _, link in links),
                                   return_exceptions=True)
    by_id = {row["id"]: row for row in rows}
    unreachable = []
    for (index, _), answer in zip(links, answers, strict=True):
        if isinstance(answer, BaseException):
            why = str(answer) if isinstance(answer, NodeError) else f"{type(answer).__name__}: {answer}"
            unreachable.append({"node": index, "error": why or "no answer"})
            continue
        for row in answer:
            row["node"] = index
            mine = by_id.get(row["id"])
            if mine is not None and not row.get("caller"):
                row["caller"] = mine["caller"]
            by_id[row["id"]] = row  # the node's record: its output and peak memory
    merged_rows = sorted(by_id.values(), key=lambda r: r["started"], reverse=True)[:limit]
    return merged_rows, unreachable


async def output(link: NodeLink, call_id: str, query: str) -> Response:
    """The node's answer to ``GET /_tether/calls/{id}/output`` (its follow stream too), as it comes."""
    target = f"/_tether/calls/{quote(call_id, safe='')}/output" + (f"?{query}" if query else "")
    try:
        upstream = await link.request("GET", target, [], [])
        if upstream.status != 200:
            return Response(await upstream.body(), status_code=upstream.status, media_type="application/json")
    except NodeError as exc:
        return JSONResponse({"error": "node_unreachable", "message": str(exc)}, status_code=502)
    return StreamingResponse(upstream.chunks(), media_type=NDJSON)
