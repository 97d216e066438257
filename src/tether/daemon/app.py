"""The daemon's HTTP app: FastAPI for the control plane, raw ASGI for calls.

Control plane under ``/_tether/*`` (deploy, keys, status, delete, run, calls by id) and
``/health``; the call path is ``POST|GET /{name}/{method}`` (``daemon/call_route.py``). The
outermost ASGI callable (``DaemonApp``) checks the bearer token and the protocol version of every
request, then sends calls straight to the call route and everything else to FastAPI.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from tether import state
from tether._version import __version__
from tether.daemon import (
    access,
    dashboard,
    events,
    history_routes,
    http_guard,
    metrics,
    remote,
    timeline_routes,
)
from tether.daemon import secrets as secret_files
from tether.daemon.aliases import NameTaken
from tether.daemon.autostop import IdleTracker
from tether.daemon.call_route import CallRoute
from tether.daemon.calls import CallRecord, CallTable, ExpiredCall, UnknownCall
from tether.daemon.flow import CallQueue
from tether.daemon.history import History
from tether.daemon.limits import LimitsError, env_limits_request
from tether.daemon.requests import (
    BadRequest,
    check_env_spec,
    check_image_update,
    check_nodes,
    check_run,
    check_timeout,
    decode_message,
    loads_json,
    parse_json_body,
    read_body,
)
from tether.daemon.responses import MessageResponse, MessagesResponse, send_error
from tether.daemon.shell import run_commands
from tether.daemon.store import Store, UnknownName
from tether.daemon.tokens import Grants, Tokens
from tether.daemon.usage import Usage
from tether.protocol import shm, wire
from tether.protocol.grants import GrantError, looks_like_grant

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


class HTTPError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        self.status, self.kind, self.message = status, kind, message


def error_response(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message, **extra}, status_code=status)


def create_app(store: Store, token: str, info: dict[str, Any]) -> DaemonApp:
    cluster = info.get("cluster", "?")
    tasks: set[asyncio.Task] = set()
    calls = CallTable(on_drop=lambda msg: shm.discard_listed(msg, store.shm))

    def spawn(coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def live_workers():
        """(env, pid) of each live worker, for the usage sampler: the envs' and the prestarted one."""
        workers = [env.worker for env in list(store.envs.values())] + [store.prestarted]
        pids = {w.pid: w.spec.name for w in workers if w is not None and w.alive and w.pid}
        return [(env, pid) for pid, env in pids.items()]

    usage = Usage.from_env(live_workers)
    events.EVENTS.configure(store.state_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        usage.start()
        yield
        usage.stop()
        for task in list(tasks):  # running commands and deploys end with the daemon
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        calls.clear()
        await asyncio.to_thread(history.close)
        await store.shutdown()

    app = FastAPI(title="tether daemon", version=__version__, lifespan=lifespan,
                  docs_url="/_tether/docs", openapi_url="/_tether/openapi.json", redoc_url=None)
    history = History(store.state_dir)
    call_route = CallRoute(store, calls, spawn, history)
    history_routes.register(app, history, calls, HTTPError, store.nodes)
    timeline_routes.register(app, usage, events.EVENTS, HTTPError)

    @app.exception_handler(HTTPError)
    async def on_http_error(request: Request, exc: HTTPError):
        return error_response(exc.status, exc.kind, exc.message)

    @app.exception_handler(BadRequest)
    async def on_bad_request(request: Request, exc: BadRequest):
        return error_response(exc.status, exc.kind, exc.message)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError):
        """FastAPI's checks of path and query parameters, in the shape of every other 400."""
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                             for e in exc.errors()[:5])
        return error_response(400, "bad_request", problems or "invalid request")

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):
        """Any other error: 500 with an error id, logged with its traceback (Starlette then
        raises it on, to ``DaemonApp``, which knows it was answered)."""
        payload = http_guard.internal_error(exc, request.scope)
        exc.tether_error_id = payload["error_id"]  # type: ignore[attr-defined]
        return JSONResponse(payload, status_code=500)

    @app.get("/health")
    async def health(shm_probe: str | None = None) -> dict[str, Any]:
        """``shm_probe``: a caller's probe file in the shared-memory folder, read back (shm.py)."""
        out = {"status": "ok", "tether": __version__, "protocol": wire.PROTOCOL_VERSION,
               "features": list(wire.FEATURES), **info}
        if shm_probe is not None:
            out["shm_probe"] = shm.read_probe(store.shm, shm_probe)
        return out

    @app.get("/_tether/status")
    async def status() -> dict[str, Any]:
        return {"tether": __version__, "protocol": wire.PROTOCOL_VERSION, **info, **store.status(),
                "shm_files": shm.status(store.shm), "recording": history.info()}

    @app.put("/_tether/records")
    async def set_recording(request: Request) -> dict[str, Any]:
        """``{"enabled": false}`` pauses recording calls, ``true`` resumes it (the owner only; until
        the daemon restarts, which reads ``TETHER_RECORDS`` again). Answers ``recording``."""
        body = parse_json_body(await _body(request))
        enabled = body.get("enabled") if isinstance(body, dict) else None
        if not isinstance(enabled, bool):
            raise HTTPError(400, "bad_request", 'give {"enabled": true} or {"enabled": false}')
        history.set_recording(enabled)
        if not enabled:
            await asyncio.to_thread(history.flush)  # what was recorded is on disk when this answers
        return history.info()

    @app.get("/_tether/metrics")
    async def prometheus() -> Response:
        """Calls, latencies and worker memory in Prometheus' text format (daemon/metrics.py)."""
        workers = [(name, s.worker.pid) for name, s in store.envs.items() if s.worker is not None and s.worker.alive]
        text = metrics.render(history.metrics, len(calls.running), workers, history.enabled and history.error is None)
        return Response(text, media_type=metrics.CONTENT_TYPE)

    @app.post("/_tether/forget")
    async def forget() -> dict[str, Any]:
        """Forget what was deployed (``teardown()``): the next daemon of this cluster starts
        empty instead of making it again from its manifest."""
        return await store.forget()

    @app.get("/_tether/keys")
    async def keys(names: bool = False) -> JSONResponse:
        """The objects and their interfaces; ``?names=1``: only the names, each object's followed
        by its aliases (``cluster.keys()``: 10 bytes an object instead of ~335, which at 10,000
        objects is 3 MB of JSON less to build, send and parse)."""
        # JSON-native already: FastAPI's encoder and response validation took ~0.1 ms per object
        return JSONResponse(store.names() if names else store.keys())

    @app.get("/_tether/objects/{name}")
    async def describe(name: str) -> dict[str, Any]:
        rec = store.lookup(name)  # by its name or an alias
        if rec is None:
            raise HTTPError(404, "not_found", store.missing(name))
        return store.info(rec)

    @app.put("/_tether/aliases/{alias}")
    async def alias(alias: str, request: Request) -> dict[str, Any]:
        """``{"name": object}``: ``alias`` names that object too (``fn.save(name=alias)``,
        ``daemon/aliases.py``); calls, ``get`` and describes by either name reach it."""
        body = parse_json_body(await _body(request))
        target = body.get("name") if isinstance(body, dict) else None
        for name in (alias, target):
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise HTTPError(400, "bad_request", f"bad name {name!r}: use letters, digits, "
                                "'_', '-', '.', starting with a letter or digit")
        try:
            return await store.alias(alias, target)
        except UnknownName as exc:
            raise HTTPError(404, "not_found", str(exc)) from None
        except NameTaken as exc:
            raise HTTPError(409, "conflict", str(exc)) from None

    @app.delete("/_tether/objects/{name}")
    async def delete(name: str) -> dict[str, Any]:
        try:
            return await store.delete(name)
        except UnknownName as exc:
            raise HTTPError(404, "not_found", str(exc)) from None

    @app.post("/_tether/deploy")
    async def deploy(request: Request):
        msg = decode_message(await _body(request), wire.CONTROL)
        meta = loads_json(bytes(msg.frames[0]), "deploy metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("env") or {}, dict):
            raise HTTPError(400, "bad_request", "the deploy metadata must be a JSON object, its 'env' too")
        check_env_spec(meta.get("env") or {})
        if meta.get("op") not in ("deploy", "inspect") or meta.get("kind") not in ("function", "instance", "value", "class"):
            raise HTTPError(400, "bad_request", "deploy needs op in (deploy, inspect) and a known kind")
        if meta["op"] == "deploy" and not NAME_RE.match(str(meta.get("name", ""))):
            raise HTTPError(400, "bad_request", f"bad name {meta.get('name')!r}: use letters, digits, "
                            "'_', '-', '.', starting with a letter or digit")
        env_name = (meta.get("env") or {}).get("name") or "default"
        if not NAME_RE.match(env_name):
            raise HTTPError(400, "bad_request", f"bad env name {env_name!r}")
        out = CallQueue()  # what a constructor prints: bounded as a call's output is
        spawn(store.deploy(meta, msg.frames[1:], out))
        return MessagesResponse(out)

    @app.post("/_tether/run")
    async def run(request: Request):
        run = check_run(parse_json_body(await _body(request)))
        out = CallQueue()  # a caller that stops reading costs at most TETHER_OUTPUT_BUFFER
        env_vars = {**state.read_image_env(store.state_dir), **run["env_vars"]}  # an Image's first
        python = store.builder.default_python if run["env"] is None else store.builder.interpreter(run["env"])
        task = spawn(run_commands(run["commands"], run["kind"], python, run["cwd"], env_vars,
                                  run["stop_on_error"], out))
        return MessagesResponse(out, on_abandon=lambda streaming: task.cancel())

    @app.get("/_tether/image")
    async def image_records() -> dict[str, Any]:
        """The Image steps done on this node (``{key: record}``) and the image's env vars."""
        return {"records": state.read_image_records(store.state_dir),
                "env_vars": state.read_image_env(store.state_dir)}

    @app.post("/_tether/image")
    async def image_update(request: Request) -> dict[str, Any]:
        """``{"record": {"key": ..., ...}}`` records a step as done; ``{"env_vars": {...}}`` sets
        the image's env vars (running workers restart with them); ``{"forget": true}`` forgets
        every record, so that the next bring-up runs every step again."""
        body = check_image_update(parse_json_body(await _body(request)))
        if "record" in body:
            state.write_image_record(store.state_dir, body["record"]["key"], body["record"])
            return {"recorded": body["record"]["key"]}
        if "env_vars" in body:
            return await store.set_image_env(body["env_vars"])
        state.remove_image_records(store.state_dir)
        return {"forgot": True}

    @app.get("/_tether/calls/{call_id}")
    async def call_result(call_id: str, request: Request, timeout: float | None = None):
        """The result of a call by id: waits while it runs (up to ``timeout`` seconds)."""
        wait = check_timeout(timeout)
        record = _record(call_id, request)
        try:
            await asyncio.wait_for(record.done.wait(), wait)
        except TimeoutError:
            raise HTTPError(408, "timeout", f"call {call_id} is still running after {timeout} s; its "
                            "result is kept when it ends: ask again (cluster.result(call_id))") from None
        msg = record.result
        if request.headers.get(wire.SHM_HEADER) == "1":
            msg = shm.handout(msg, store.shm)
        else:  # a caller without the shared memory gets the bytes
            msg = shm.inline(msg, store.shm)
        return MessageResponse(msg)

    @app.post("/_tether/calls/{call_id}/cancel")
    async def cancel_call(call_id: str, request: Request, force: bool = False) -> dict[str, Any]:
        """Stop a running call; ``force`` restarts its worker (objects are re-created)."""
        record = _record(call_id, request)
        if record.node and not record.done.is_set():  # forwarded: the node holds the call
            return await remote.cancel(store, record.node, call_id, force)
        if record.done.is_set() or record.worker is None:
            return {"id": call_id, "cancelled": False, "reason": "the call had finished"}
        worker = record.worker
        sent = worker.cancel(record.ipc_id)
        if force:
            await store.restart_env(worker.spec.name)
        return {"id": call_id, "cancelled": sent or force, "forced": force}

    @app.put("/_tether/secrets/{env}")
    async def put_secrets(env: str, request: Request) -> dict[str, Any]:
        """Give secrets to an env's worker: ``{"secrets": {name: {"env_vars", "files",
        "file_env"}}}`` (docs/secrets.md). Kept 0600 under the state dir's ``secrets/`` only; the
        answer names env vars and files, never a value."""
        body = secret_files.check(parse_json_body(await _body(request)))
        return await store.put_secrets(env, body)

    @app.post("/_tether/envs/{env}/limits")
    async def limit_env(env: str, request: Request) -> dict[str, Any]:
        """Give one env's workers limits of their own (a ladder's climb on a local cluster grows
        the env that ran out of memory, not the whole cluster): its worker restarts with them
        and its objects are made again; the other envs are not touched (``Store.limit_env``)."""
        if not NAME_RE.match(env):
            raise HTTPError(400, "bad_request", f"bad env name {env[:100]!r}")
        try:
            memory, cpus, why = env_limits_request(parse_json_body(await _body(request)))
            return await store.limit_env(env, memory, cpus, why)
        except (ValueError, LimitsError) as exc:
            raise HTTPError(400, "bad_request", f"limits of env {env!r}: {exc}") from None

    @app.post("/_tether/nodes")
    async def set_nodes(request: Request) -> dict[str, Any]:
        """The cluster's other nodes (index, host, port, token, and the SHA-256 ``fingerprint`` of
        the TLS certificate each one's cluster listener presents), sent by the launcher once they
        are up: objects placed on them are deployed and called through this daemon."""
        nodes, ping = check_nodes(parse_json_body(await _body(request)))
        try:
            store.nodes.set(nodes, ping)
        except ValueError as exc:  # a malformed TLS pin
            raise HTTPError(400, "bad_request", str(exc)) from None
        return {"nodes": store.nodes.info()}

    @app.get("/_tether/nodes")
    async def get_nodes() -> dict[str, Any]:
        return {"nodes": store.nodes.info()}

    tokens = Tokens(token, cluster, info.get("token_path", "its state dir"))
    tokens.grants = Grants.configured(store.state_dir)
    dashboard.register(app, tokens)

    @app.get("/_tether/registry")
    async def registry() -> dict[str, Any]:
        """The registry whose grants this daemon accepts: its public key and this cluster's
        path there (``{"cluster": null}``: none, only the owner's token)."""
        return tokens.grants.info() if tokens.grants else {"cluster": None, "public_key": None}

    @app.put("/_tether/registry")
    async def set_registry(request: Request) -> dict[str, Any]:
        """``{"public_key": ..., "cluster": "/alice/gpu"}`` (or nulls: no grants): the owner
        shares a running cluster. Stored in the state dir; grants verified before are forgotten."""
        body = parse_json_body(await _body(request))
        key, path = body.get("public_key"), body.get("cluster")
        if not all(v is None or isinstance(v, str) for v in (key, path)) or bool(key) != bool(path):
            raise HTTPError(400, "bad_request", "give both 'public_key' (the registry's, GET /v1/grant-key) "
                            "and 'cluster' (this cluster's registry path), or neither")
        try:
            grants = Grants(key, path) if key else None
        except ValueError as exc:
            raise HTTPError(400, "bad_request", str(exc)) from None
        state.write_registry(store.state_dir, key, path)
        tokens.grants = grants
        return await registry()

    @app.post("/_tether/token")
    async def rotate_token() -> dict[str, Any]:
        """Rotate the bearer token (a head rotates its other nodes' first): the new one is
        written to the state dir and required from now on; the old one gets a 401 that says so."""
        return await tokens.rotate(store)

    def _record(call_id: str, request: Request) -> CallRecord:
        try:
            record = calls.get(call_id)
        except ExpiredCall as exc:
            raise HTTPError(410, "expired", str(exc)) from None
        except UnknownCall as exc:
            raise HTTPError(404, "not_found", str(exc)) from None
        denied = access.check_own(request.scope, record.caller, call_id)
        if denied:
            raise HTTPError(403, "forbidden", denied)
        return record

    # The call path, for the OpenAPI schema and for paths DaemonApp leaves to FastAPI: both hand
    # the request to the same raw ASGI route.
    @app.api_route("/{name}", methods=["GET", "POST"])
    async def call_function(name: str):
        """Call the function ``name`` (see ``/{name}/{method}``)."""
        return _RawCall(call_route, name, "call")

    @app.api_route("/{name}/{method}", methods=["GET", "POST"])
    async def call(name: str, method: str):
        """Call ``method`` of the object ``name``: a tether wire message (the Python client), or
        query parameters / a JSON body ``{"args": [...], "kwargs": {...}}`` answered in JSON."""
        return _RawCall(call_route, name, method)

    return DaemonApp(app, call_route, tokens)


async def _body(request: Request) -> bytes | bytearray:
    """A control route's body, read as the call path reads one (allocated as it arrives, never
    above ``TETHER_MAX_BODY``)."""
    return await read_body(request.receive, request.headers.get("content-length"))


class _RawCall(Response):
    def __init__(self, route: CallRoute, name: str, method: str) -> None:
        super().__init__()
        self.route, self.name, self.method = route, name, method

    async def __call__(self, scope, receive, send) -> None:
        await self.route(scope, receive, send, self.name, self.method)


class DaemonApp:
    """The ASGI app uvicorn serves: bearer token and protocol version on every request, then
    calls straight to the call route (skipping FastAPI's routing) and the rest to FastAPI."""

    def __init__(self, app: FastAPI, call_route: CallRoute, tokens: Tokens) -> None:
        self.app, self.call_route = app, call_route
        self.tokens = tokens  # swappable: a rotation replaces tokens.expected
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
        if not hmac.compare_digest(got, self.tokens.expected):
            if got[:7] == b"Bearer " and looks_like_grant(got[7:]):  # a user's grant (a shared cluster)
                refused = self._grant(scope, got)
                if refused is not None:
                    return await send_error(send, *refused[:3], **refused[3])
            else:
                # the dashboard's session cookie, its login page and files (never the call path's cost)
                IdleTracker.watching(scope)  # watching a cluster does not keep it up (autostop)
                gate = dashboard.gate(scope, self.tokens)
                if gate == dashboard.TO_LOGIN:
                    return await dashboard.to_login(send)
                if gate == dashboard.DENY:
                    return await send_error(send, 401, *self.tokens.refusal(got))
                return await self._app(scope, receive, send)
        if version is not None and version != self.version:
            return await send_error(
                send, 409, "version_mismatch",
                f"this daemon speaks tether protocol {wire.PROTOCOL_VERSION} (tether {__version__}) "
                f"and the client speaks protocol {version.decode(errors='replace')}. Restart the "
                "daemon with the client's version (`tether daemon restart`, or "
                "cluster.restart_server()).",
                daemon_version=__version__, daemon_protocol=wire.PROTOCOL_VERSION,
            )
        path = scope["path"]
        if scope["method"] in ("GET", "POST") and not path.startswith("/_tether") and path != "/health":
            parts = path[1:].split("/")
            if len(parts) <= 2 and all(parts):
                return await self.call_route(scope, receive, send, parts[0],
                                             parts[1] if len(parts) == 2 else "call")
        await self._app(scope, receive, send)

    def _grant(self, scope, got: bytes) -> tuple[int, str, str, dict[str, Any]] | None:
        """None if the grant in ``got`` may make this request (then the request carries it as
        ``scope["tether.grant"]``, and its caller header names the grant's user); else the
        error's (status, kind, message): 401 for a grant not accepted, 403 for too little access."""
        grants = self.tokens.grants
        if grants is None:
            return 401, *Grants.refusal(self.tokens.cluster, "this daemon accepts no grants (it was not "
                                        "given a registry's public key: the cluster is not shared)"), {}
        try:
            grant = grants.check(got)
        except GrantError as exc:
            return 401, *Grants.refusal(self.tokens.cluster, exc.reason), {"reason": exc.reason}
        method, path = scope["method"], scope["path"]
        need = access.needed(method, path)
        if not access.allows(grant.access, need):
            return 403, "forbidden", access.refusal(grant, need, method, path), {
                "user": grant.user, "access": grant.access, "needed": need}
        scope["tether.grant"] = grant
        scope["headers"] = access.as_user(scope["headers"], grant.user)
        return None

    async def _app(self, scope, receive, send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if getattr(exc, "tether_error_id", None):  # answered by on_unexpected: raised on by Starlette
                return
            if not await http_guard.answer_internal_error(send, exc, scope):
                raise
