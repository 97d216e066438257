"""Reading a request of the call path and the control routes: its body (allocated as it arrives,
a big one in one buffer, never above ``TETHER_MAX_BODY``), a wire message, JSON arguments from a
query string or a body, and the checks of what the control routes are sent.

Everything here raises ``BadRequest``: the routes answer it as a 4xx that says what was wrong.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any
from urllib.parse import parse_qsl

from tether.protocol import wire


class BadRequest(Exception):
    """A request the daemon refuses: 400 unless ``status`` says otherwise (413: too large)."""

    def __init__(self, message: str, status: int = 400, kind: str = "bad_request") -> None:
        self.message, self.status, self.kind = message, status, kind


def _default_max_body() -> int:
    """Half this machine's memory (at least 1 GiB): the daemon holds a body whole, then hands it
    to a worker that holds its own copy, so a bigger one could only end in the OOM killer taking
    the daemon, and everyone's calls, down."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        memory = 8 << 30
    return max(1 << 30, memory // 2)


def _max_body() -> int:
    raw = os.environ.get("TETHER_MAX_BODY", "")
    if not raw:
        return _default_max_body()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"TETHER_MAX_BODY is a number of bytes, not {raw!r}")
    return value


#: the largest request body the daemon reads (``TETHER_MAX_BODY`` bytes)
MAX_BODY = _max_body()


def too_large(size: int | str, limit: int) -> BadRequest:
    return BadRequest(
        f"the request body is {size} bytes, over this daemon's limit of {limit} bytes "
        f"({limit / (1 << 30):.1f} GiB; TETHER_MAX_BODY in the daemon's environment, by default "
        "half its machine's memory). Send less per call (a file on the cluster, a RemoteRef), or "
        "restart the daemon with a higher TETHER_MAX_BODY.", 413, "too_large")


async def read_body(receive, length: bytes | None, limit: int | None = None) -> bytes | bytearray:
    """The request body, allocated as its bytes arrive.

    A declared Content-Length is a claim, not bytes: allocated up front, three connections that
    declared 1 GiB and sent 10 bytes cost the daemon 3 GiB. A body that comes in one piece is
    returned as it is; a longer one grows in one bytearray (no list of chunks to join into a
    second copy of a 1 GB argument; growing a big buffer remaps its pages, it does not copy
    them). Above ``limit`` (``TETHER_MAX_BODY``): 413, before reading when the length is declared.
    """
    limit = MAX_BODY if limit is None else limit
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        if declared > limit:
            raise too_large(declared, limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise BadRequest("the caller went away while sending the request")
    body = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise too_large(len(body), limit)
        return body
    buf = bytearray(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the caller went away while sending the request")
        buf += message.get("body", b"")
        if len(buf) > limit:
            raise too_large(f"over {len(buf)}", limit)
        if not message.get("more_body", False):
            return buf


def decode_message(body: bytes | bytearray, kind: int) -> wire.Message:
    try:
        msg = wire.decode(body)
    except ValueError as exc:
        raise BadRequest(f"malformed tether message: {exc}") from None
    if msg.kind != kind:
        raise BadRequest(f"expected a message of kind {kind}, got kind {msg.kind}")
    if not msg.frames:
        raise BadRequest(f"the message of kind {kind} has no frames")
    return msg


def loads_json(data: bytes | bytearray | str, what: str) -> Any:
    """JSON from a caller; ``what`` names it in the error (a body, a query parameter...)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply (JSON deeper than about "
                         f"{sys.getrecursionlimit()} levels)") from None
    except ValueError as exc:
        raise BadRequest(f"malformed JSON {what}: {exc}") from None


def parse_json_body(body: bytes | bytearray) -> Any:
    if not body:
        return {}
    return loads_json(body, "the JSON body")


async def json_args(scope, receive, length: bytes | None) -> dict[str, Any]:
    """Arguments of a curl-style call: query parameters and/or a JSON body."""
    kwargs: dict[str, Any] = {}
    query = scope.get("query_string") or b""
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        try:
            kwargs[key] = json.loads(value)
        except RecursionError:
            raise BadRequest(f"the query parameter {key!r} is nested too deeply (JSON deeper than "
                             f"about {sys.getrecursionlimit()} levels)") from None
        except ValueError:
            kwargs[key] = value
    args: list[Any] = []
    if scope["method"] == "POST":
        body = parse_json_body(await read_body(receive, length))
        if isinstance(body, dict) and set(body) <= {"args", "kwargs"} and body:
            if not isinstance(body.get("args", []), list) or not isinstance(body.get("kwargs", {}), dict):
                raise BadRequest("'args' must be a list and 'kwargs' an object")
            args = body.get("args", [])
            kwargs.update(body.get("kwargs", {}))
        elif isinstance(body, dict):
            kwargs.update(body)
        elif isinstance(body, list):
            args = body
        else:
            args = [body]
    return {"args": args, "kwargs": kwargs}


async def json_call_frame(scope, receive, length: bytes | None) -> bytes:
    """``json_args`` as the frame sent to the worker (re-encoding runs deeper in the stack than
    decoding did: JSON just under the limit can fail there)."""
    call = await json_args(scope, receive, length)
    try:
        return wire.json_frame(call)
    except RecursionError:
        raise BadRequest("the JSON arguments are nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"the JSON arguments cannot be sent on: {exc}") from None


# -- what the control routes are sent ---------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_env_spec(env: Any) -> None:
    """A deploy's env spec, field by field (a string ``reqs`` was installed letter by letter)."""
    if not isinstance(env, dict):
        raise BadRequest(f"the env spec must be a JSON object, not {_kind(env)}")
    for key in ("name", "working_dir", "python"):
        if env.get(key) is not None and not isinstance(env[key], str):
            raise BadRequest(f"env {key!r} must be a string, not {_kind(env[key])}")
    reqs = env.get("reqs")
    if reqs is not None and (not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs)):
        raise BadRequest(f"env 'reqs' must be a list of requirement strings (e.g. [\"numpy\"]), not "
                         f"{_kind(reqs)}{' ' + repr(reqs[:50]) if isinstance(reqs, str) else ''}")
    env_vars = env.get("env_vars")
    if env_vars is not None:
        _check_env_vars(env_vars, "env 'env_vars'")
    node_idx = env.get("node_idx", 0)
    if not _is_int(node_idx) or node_idx < 0:
        raise BadRequest(f"env 'node_idx' must be a node index (0 is the head), not {node_idx!r:.50}")


def _check_env_vars(env_vars: Any, what: str) -> None:
    if not isinstance(env_vars, dict):
        raise BadRequest(f"{what} must be an object of names to string values, not {_kind(env_vars)}")
    for key, value in env_vars.items():
        if not key or "=" in key or "\0" in key:
            raise BadRequest(f"{what} has a bad variable name {key!r:.50}")
        if not isinstance(value, str):
            raise BadRequest(f"{what}[{key!r:.50}] must be a string, not {_kind(value)}")
        if "\0" in value:
            raise BadRequest(f"{what}[{key!r:.50}] holds a NUL byte")


def check_nodes(body: Any) -> tuple[list[dict[str, Any]], float | None]:
    """``POST /_tether/nodes``: the node table and the ping interval, checked entry by entry."""
    nodes = body.get("nodes") if isinstance(body, dict) else None
    if not isinstance(nodes, list):
        raise BadRequest("nodes must be a list of {index, host, port, token}")
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or not {"index", "host", "port", "token"} <= set(node):
            raise BadRequest(f"nodes[{i}] must be an object with index, host, port and token")
        if not _is_int(node["index"]) or node["index"] < 0:
            raise BadRequest(f"nodes[{i}]['index'] must be a node index (an integer >= 0), not {node['index']!r:.50}")
        if not _is_int(node["port"]) or not 0 < node["port"] < 65536:
            raise BadRequest(f"nodes[{i}]['port'] must be a TCP port (1-65535), not {node['port']!r:.50}")
        for key in ("host", "token", "label", "fingerprint"):
            if node.get(key) is not None and not isinstance(node[key], str):
                raise BadRequest(f"nodes[{i}][{key!r}] must be a string, not {_kind(node[key])}")
    ping = body.get("ping_seconds")
    if ping is not None and (not isinstance(ping, (int, float)) or isinstance(ping, bool)
                             or not math.isfinite(ping)):
        raise BadRequest(f"ping_seconds must be a number of seconds, not {ping!r:.50}")
    return nodes, float(ping) if ping and ping > 0 else None


def check_run(body: Any) -> dict[str, Any]:
    """``POST /_tether/run``: commands, kind, cwd, env_vars, stop_on_error, env (a spec: the
    commands run with its interpreter first on PATH, its venv built first if need be)."""
    # kind "install": the commands are requirements, installed by the node's installer (uv or pip)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with 'commands'")
    commands = body.get("commands")
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise BadRequest("'commands' must be a list of strings")
    if body.get("kind", "bash") not in ("bash", "python", "install"):
        raise BadRequest("'kind' is 'bash', 'python' or 'install' (the commands are requirements, "
                         "installed into the default env by uv or pip)")
    if body.get("cwd") is not None and not isinstance(body["cwd"], str):
        raise BadRequest(f"'cwd' must be a string, not {_kind(body['cwd'])}")
    env_vars = body.get("env_vars") or {}
    _check_env_vars(env_vars, "'env_vars'")
    env = body.get("env")
    if env is not None:
        check_env_spec(env)
    return {"commands": commands, "kind": body.get("kind", "bash"), "cwd": body.get("cwd"),
            "env_vars": env_vars, "stop_on_error": bool(body.get("stop_on_error")), "env": env}


def check_image_update(body: Any) -> dict[str, Any]:
    """``POST /_tether/image``: one of ``record`` (with a hex ``key``), ``env_vars``, ``forget``."""
    if not isinstance(body, dict) or len(set(body) & {"record", "env_vars", "forget"}) != 1:
        raise BadRequest("the body is a JSON object with one of 'record', 'env_vars' or 'forget'")
    if "record" in body:
        record = body["record"]
        key = record.get("key") if isinstance(record, dict) else None
        if not isinstance(key, str) or not 8 <= len(key) <= 64 or any(c not in "0123456789abcdef" for c in key):
            raise BadRequest("'record' is an object whose 'key' is 8 to 64 lowercase hex digits")
        return {"record": record}
    if "env_vars" in body:
        _check_env_vars(body["env_vars"], "'env_vars'")
        return {"env_vars": dict(body["env_vars"])}
    if body["forget"] is not True:
        raise BadRequest("'forget' is true")
    return {"forget": True}


def check_timeout(timeout: float | str | None) -> float | None:
    """``?timeout=`` of a wait: seconds, >= 0 (``inf`` waits as long as it takes; ``nan`` made
    asyncio raise, a 500)."""
    if timeout is None or timeout == "":
        return None
    try:
        value = float(timeout)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value < 0:
        raise BadRequest(f"timeout must be a number of seconds >= 0, not {str(timeout)[:50]!r}")
    return None if math.isinf(value) else value


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"
