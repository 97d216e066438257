"""The daemon's HTTP routes (FastAPI).

Control plane under ``/_tether/*`` (deploy, keys, status, delete, run) and ``/health``; the call
path is ``POST|GET /{name}/{method}``. A Python client posts a wire message and gets a stream of
wire messages back (its logs as they happen, then the result or the error). curl and other
languages use query parameters or a JSON body and get plain JSON back.

The response status is chosen after the first message from the worker arrives, so an unknown
method is a real 404 and not an error hidden in a 200 stream.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tether._version import __version__
from tether.core import wire
from tether.daemon.calls import CallRecord, CallTable, ExpiredCall, UnknownCall
from tether.daemon.shell import run_commands
from tether.daemon.store import Store, UnknownName

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


class HTTPError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        self.status, self.kind, self.message = status, kind, message


def error_response(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message, **extra}, status_code=status)


def create_app(store: Store, token: str, info: dict[str, Any]) -> FastAPI:
    expected = f"Bearer {token}".encode()
    cluster = info.get("cluster", "?")
    tasks: set[asyncio.Task] = set()
    calls = CallTable()

    def spawn(coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for task in list(tasks):  # running commands and deploys end with the daemon
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.shutdown()

    app = FastAPI(title="tether daemon", version=__version__, lifespan=lifespan,
                  docs_url="/_tether/docs", openapi_url="/_tether/openapi.json", redoc_url=None)

    app.add_middleware(_Authenticate, expected=expected, cluster=cluster,
                       token_path=info.get("token_path", "its state dir"))

    @app.exception_handler(HTTPError)
    async def on_http_error(request: Request, exc: HTTPError):
        return error_response(exc.status, exc.kind, exc.message)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "tether": __version__, "protocol": wire.PROTOCOL_VERSION, **info}

    @app.get("/_tether/status")
    async def status() -> dict[str, Any]:
        return {"tether": __version__, "protocol": wire.PROTOCOL_VERSION, **info, **store.status()}

    @app.get("/_tether/keys")
    async def keys() -> list[dict[str, Any]]:
        return store.keys()

    @app.get("/_tether/objects/{name}")
    async def describe(name: str) -> dict[str, Any]:
        rec = store.objects.get(name)
        if rec is None:
            raise HTTPError(404, "not_found", store.missing(name))
        return rec.info()

    @app.delete("/_tether/objects/{name}")
    async def delete(name: str) -> dict[str, Any]:
        try:
            return await store.delete(name)
        except UnknownName as exc:
            raise HTTPError(404, "not_found", str(exc)) from None

    @app.post("/_tether/deploy")
    async def deploy(request: Request):
        msg = _decode(await request.body(), wire.CONTROL)
        try:
            meta = msg.json(0)
        except ValueError:
            raise HTTPError(400, "bad_request", "the deploy metadata is not JSON") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("env") or {}, dict):
            raise HTTPError(400, "bad_request", "the deploy metadata must be a JSON object, its 'env' too")
        if meta.get("op") not in ("deploy", "inspect") or meta.get("kind") not in ("function", "instance", "value", "class"):
            raise HTTPError(400, "bad_request", "deploy needs op in (deploy, inspect) and a known kind")
        if meta["op"] == "deploy" and not NAME_RE.match(str(meta.get("name", ""))):
            raise HTTPError(400, "bad_request", f"bad name {meta.get('name')!r}: use letters, digits, "
                            "'_', '-', '.', starting with a letter or digit")
        env_name = (meta.get("env") or {}).get("name") or "default"
        if not NAME_RE.match(env_name):
            raise HTTPError(400, "bad_request", f"bad env name {env_name!r}")
        out: asyncio.Queue = asyncio.Queue()
        spawn(store.deploy(meta, msg.frames[1:], out))
        return await respond(out, "pickle")

    @app.post("/_tether/run")
    async def run(request: Request):
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise HTTPError(400, "bad_request", "the body must be a JSON object with 'commands'")
        commands = body.get("commands")
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise HTTPError(400, "bad_request", "'commands' must be a list of strings")
        kind = body.get("kind", "bash")
        if kind not in ("bash", "python"):
            raise HTTPError(400, "bad_request", "'kind' is 'bash' or 'python'")
        out: asyncio.Queue = asyncio.Queue()
        task = spawn(run_commands(commands, kind, store.builder.default_python, body.get("cwd"),
                                  body.get("env_vars") or {}, bool(body.get("stop_on_error")), out))
        return await respond(out, "pickle", on_abandon=lambda streaming: task.cancel())

    @app.get("/_tether/calls/{call_id}")
    async def call_result(call_id: str, timeout: float | None = None):
        """The result of a call by id: waits while it runs (up to ``timeout`` seconds)."""
        record = _record(call_id)
        try:
            await asyncio.wait_for(record.done.wait(), timeout)
        except TimeoutError:
            raise HTTPError(408, "timeout", f"call {call_id} is still running") from None
        return message_response(record.result)

    @app.post("/_tether/calls/{call_id}/cancel")
    async def cancel_call(call_id: str, force: bool = False) -> dict[str, Any]:
        """Stop a running call; ``force`` restarts its worker (objects are re-created)."""
        record = _record(call_id)
        if record.done.is_set() or record.worker is None:
            return {"id": call_id, "cancelled": False, "reason": "the call had finished"}
        worker = record.worker
        sent = worker.cancel(record.ipc_id)
        if force:
            await store.restart_env(worker.spec.name)
        return {"id": call_id, "cancelled": sent or force, "forced": force}

    def _record(call_id: str) -> CallRecord:
        try:
            return calls.get(call_id)
        except ExpiredCall as exc:
            raise HTTPError(410, "expired", str(exc)) from None
        except UnknownCall as exc:
            raise HTTPError(404, "not_found", str(exc)) from None

    @app.api_route("/{name}", methods=["GET", "POST"])
    async def call_function(name: str, request: Request):
        return await call(name, "call", request)

    @app.api_route("/{name}/{method}", methods=["GET", "POST"])
    async def call(name: str, method: str, request: Request):
        ctype = request.headers.get("content-type", "")
        stream_logs = request.headers.get(wire.STREAM_LOGS_HEADER, "1") != "0"
        if request.method == "POST" and ctype.startswith(wire.CONTENT_TYPE):
            frames = _decode(await _read_body(request), wire.CALL).frames
            mode = "pickle"
        else:
            frames = [wire.json_frame(await _json_args(request))]
            mode, stream_logs = "json", False
        meta = {"object": name, "method": method, "mode": mode, "stream_logs": stream_logs}
        call_id = request.headers.get(wire.CALL_ID_HEADER) or uuid.uuid4().hex
        keep = None
        if request.headers.get(wire.KEEP_HEADER) == "1":
            keep = meta["keep"] = f"ref-{call_id}"[:200]
        refs = [r for r in request.headers.get(wire.REFS_HEADER, "").split(",") if r]
        try:
            if refs:
                await store.bring_refs(refs, name)
            worker, ipc_id, queue = await store.call(name, [wire.json_frame(meta), *frames])
        except UnknownName as exc:
            raise HTTPError(404, "not_found", str(exc)) from None
        except RuntimeError as exc:
            raise HTTPError(503, "worker_unavailable", str(exc)) from None
        del frames  # the arguments are on their way to the worker: don't hold them while waiting
        tracker = _CallTracker(calls, calls.start(call_id, name, method, worker, ipc_id), queue, spawn)
        if keep:
            tracker.on_result = lambda: store.register_ref(keep, worker.spec.name)
        return await respond(queue, mode, on_abandon=tracker.abandon, on_end=tracker.end)

    return app


class _Authenticate:
    """Pure ASGI middleware: bearer token and protocol version on every route."""

    def __init__(self, app, expected: bytes, cluster: str, token_path: str) -> None:
        self.app, self.expected, self.cluster, self.token_path = app, expected, cluster, token_path
        self.version = str(wire.PROTOCOL_VERSION).encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        got, version = b"", None
        for key, value in scope["headers"]:
            if key == b"authorization":
                got = value
            elif key == b"x-tether-version":
                version = value
        if not hmac.compare_digest(got, self.expected):
            response = error_response(
                401, "unauthorized",
                f"missing or wrong bearer token for cluster {self.cluster!r}. The token is created "
                f"with the cluster and stored (mode 0600) in {self.token_path}; send it as "
                "'Authorization: Bearer <token>'.",
            )
        elif version is not None and version != self.version:
            response = error_response(
                409, "version_mismatch",
                f"this daemon speaks tether protocol {wire.PROTOCOL_VERSION} (tether {__version__}) "
                f"and the client speaks protocol {version.decode(errors='replace')}. Restart the "
                "daemon with the client's version (`tether daemon restart`, or "
                "cluster.restart_server()).",
                daemon_version=__version__, daemon_protocol=wire.PROTOCOL_VERSION,
            )
        else:
            return await self.app(scope, receive, send)
        await response(scope, receive, send)


async def respond(queue: asyncio.Queue, mode: str, on_abandon=None, on_end=None) -> Response:
    """The HTTP response for a stream of messages.

    ``on_end(msg)`` gets the terminal message; ``on_abandon(streaming)`` runs if the caller goes
    away before it (``streaming``: a generator's items were being sent).
    """
    first: wire.Message = await queue.get()
    if first.kind == wire.ERROR:
        meta = first.json(0)
        if meta.get("kind") in (wire.NOT_FOUND, wire.BAD_REQUEST):
            if on_end is not None:
                on_end(first)
            status, kind = (404, "not_found") if meta["kind"] == wire.NOT_FOUND else (400, "bad_request")
            return error_response(status, kind, meta.get("message", ""))
    if mode == "json":
        msg = first
        while msg.kind not in wire.TERMINAL_KINDS:
            msg = await queue.get()
        if on_end is not None:
            on_end(msg)
        if msg.kind == wire.RESULT:
            return Response(bytes(msg.frames[0]), media_type="application/json")
        meta = msg.json(0)
        status = 400 if meta.get("kind") == wire.SERIALIZATION else 500
        return error_response(status, meta.get("kind", "exception"), meta.get("message", ""),
                              type=meta.get("type"), traceback=meta.get("traceback"))
    if first.kind in wire.TERMINAL_KINDS:  # one message: the common small call, or a big result
        if on_end is not None:
            on_end(first)
        return message_response(first)

    async def stream():
        msg, streaming = first, False
        try:
            while True:
                streaming = streaming or msg.kind == wire.STREAM
                for part in msg.parts():
                    yield part
                if msg.kind in wire.TERMINAL_KINDS:
                    if on_end is not None:
                        on_end(msg)
                    return
                msg = await queue.get()
        finally:
            if msg.kind not in wire.TERMINAL_KINDS and on_abandon is not None:
                on_abandon(streaming)

    return StreamingResponse(stream(), media_type=wire.CONTENT_TYPE)


def message_response(msg: wire.Message) -> Response:
    """One message as a response: small ones in one body; big ones streamed from their frames,
    never copied (joining them would hold a second copy of a big result)."""
    parts = msg.parts()
    total = sum(memoryview(p).nbytes for p in parts)
    if total <= wire.BIG_PAYLOAD:
        return Response(b"".join(parts), media_type=wire.CONTENT_TYPE)

    async def frames():
        for part in parts:
            yield part

    # A known length also keeps uvicorn from chunked encoding, which joins each chunk (a copy).
    return StreamingResponse(frames(), media_type=wire.CONTENT_TYPE, headers={"content-length": str(total)})


class _CallTracker:
    """Keeps a call's result in the call table, even when its caller went away mid-call."""

    def __init__(self, table: CallTable, record: CallRecord, queue: asyncio.Queue, spawn) -> None:
        self.table, self.record, self.queue, self.spawn = table, record, queue, spawn
        self.on_result = None  # a kept result (RemoteRef) is registered as an object

    def end(self, msg: wire.Message) -> None:
        if msg.kind == wire.RESULT and self.on_result is not None:
            self.on_result()
        self.table.finish(self.record, msg)

    def abandon(self, streaming: bool) -> None:
        # A generator whose reader went away is stopped (closing the local iterator early stops
        # the remote one); any other call runs to its end and its result is kept for fetching.
        if streaming and self.record.worker is not None:
            self.record.worker.cancel(self.record.ipc_id)
        self.spawn(self._drain())

    async def _drain(self) -> None:
        while True:
            msg = await self.queue.get()
            if msg.kind in wire.TERMINAL_KINDS:
                self.end(msg)
                return


async def _read_body(request: Request) -> bytes | bytearray:
    """The request body; a big one goes straight into one preallocated buffer (``body()`` would
    hold every chunk and their join: two copies of a 1 GB argument)."""
    try:
        length = int(request.headers.get("content-length", "0"))
    except ValueError:
        raise HTTPError(400, "bad_request", "bad Content-Length") from None
    if length <= wire.BIG_PAYLOAD:
        return await request.body()
    buf = bytearray(length)
    view, pos = memoryview(buf), 0
    async for chunk in request.stream():
        end = pos + len(chunk)
        if end > length:
            raise HTTPError(400, "bad_request", "the body is longer than its Content-Length")
        view[pos:end] = chunk
        pos = end
    if pos != length:
        raise HTTPError(400, "bad_request", "the body is shorter than its Content-Length")
    return buf


def _decode(body: bytes, kind: int) -> wire.Message:
    try:
        msg = wire.decode(body)
    except ValueError as exc:
        raise HTTPError(400, "bad_request", f"malformed tether message: {exc}") from None
    if msg.kind != kind:
        raise HTTPError(400, "bad_request", f"expected a message of kind {kind}, got kind {msg.kind}")
    if not msg.frames:
        raise HTTPError(400, "bad_request", f"the message of kind {kind} has no frames")
    return msg


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HTTPError(400, "bad_request", f"malformed JSON body: {exc}") from None


async def _json_args(request: Request) -> dict[str, Any]:
    """Arguments of a curl-style call: query parameters and/or a JSON body."""
    kwargs: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    args: list[Any] = []
    if request.method == "POST":
        body = await _json_body(request)
        if isinstance(body, dict) and set(body) <= {"args", "kwargs"} and body:
            if not isinstance(body.get("args", []), list) or not isinstance(body.get("kwargs", {}), dict):
                raise HTTPError(400, "bad_request", "'args' must be a list and 'kwargs' an object")
            args = body.get("args", [])
            kwargs.update(body.get("kwargs", {}))
        elif isinstance(body, dict):
            kwargs.update(body)
        elif isinstance(body, list):
            args = body
        else:
            args = [body]
    return {"args": args, "kwargs": kwargs}
