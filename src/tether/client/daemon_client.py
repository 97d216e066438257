"""The HTTP client of one daemon.

Two transports, each where it fits (see DESIGN.md, "Libraries and where they belong"):

* the call path (calls, deploys, ``run_bash``) uses one keep-alive connection per thread of our
  own minimal HTTP/1.1 client (``core/http11.py``, TCP_NODELAY): httpx cost ~4x and http.client
  ~2x its CPU per call here, and it writes out-of-band buffers straight to the socket and reads a
  streamed response message by message;
* small JSON control requests (health, keys, delete, status) go the same way, with a timeout.
  They used httpx; its import alone cost 0.1-0.3 s of a cold start here.

Foreign errors (sockets, the HTTP layer) are translated to tether's here and nowhere else.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from tether import errors
from tether.client import http11
from tether.client.replies import TRANSPORT_ERRORS, Reply, http_error, unreachable
from tether.protocol import shm, wire

if TYPE_CHECKING:
    from tether.client.routes import Router


def _caller() -> str:
    """Who calls, for the daemon's call records: ``user@host:pid`` (a forked child's pid is its
    parent's until its client is made again)."""
    import socket

    user = os.environ.get("USER") or os.environ.get("LOGNAME") or _login_name()
    text = f"{user}@{socket.gethostname()}:{os.getpid()}"
    return "".join(c for c in text if " " < c <= "~")[:200]


def _login_name() -> str:
    """The account's name where USER is unset (services, containers, cron), else its uid."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


_CALLER = _caller()

#: what ``resolve`` returns: the daemon's current (host, port, token, TLS fingerprint or None), or
#: None when it is down
Address = tuple[str, int, str, "str | None"]
#: how long a timed-out call's cancel may take (the daemon answers it at once, unless it is stuck too)
CANCEL_TIMEOUT = 5.0
#: what a ``token_source`` returns: a grant (``tg1...``), or the registry's answer to ``POST
#: /v1/grants``: ``{"grant": "tg1...", "expires": unix time}``
TokenSource = Callable[[], "str | dict[str, Any]"]
#: a grant is renewed this long before it expires: a fifth of its lifetime, at most RENEW_AHEAD s
RENEW_AHEAD = 60.0


class DaemonClient:
    """Talks to one daemon at ``host:port`` with a bearer token; over TLS pinned to the
    certificate's SHA-256 when ``fingerprint`` is given (a daemon reached without a tunnel).

    ``resolve()``, when given (the cluster handle gives it), says where the daemon is now: a
    connection that is refused (nothing was sent, so trying again is safe) asks it once and, if
    the daemon moved (it was restarted on another port), the client follows and tries again. A
    request that may have reached a daemon is never sent twice.

    ``gone()``, when given, is asked once the daemon cannot be reached: a sentence saying why
    (the machines were deleted behind the handle's back, and what to do) that the error then
    leads with, or None.

    ``token_source()``, when given, replaces ``token``: a user of a shared cluster sends a grant
    the team registry signed (``protocol/grants.py``) instead of the owner's token. The client
    asks it for one at once, and for a new one shortly before each expires (``RENEW_AHEAD``), so
    calls go on across renewals. The registry client gives ``lambda: POST /v1/grants``.
    """

    def __init__(self, host: str, port: int, token: str = "", cluster: str = "local",
                 fingerprint: str | None = None,
                 resolve: Callable[[], Address | None] | None = None,
                 gone: Callable[[], str | None] | None = None,
                 token_source: TokenSource | None = None) -> None:
        self.cluster, self._resolve, self._gone = cluster, resolve, gone
        self._local = threading.local()
        self._moving = threading.Lock()
        self._token_source, self._renew_at = token_source, float("inf")
        if token_source is not None:
            token = self._grant()
        self._address(host, port, token, fingerprint)
        self.shm: Path | None = None  # the cluster's shared-memory folder, when this machine has it
        #: what the daemon said it does beyond its protocol (/health); None: not asked yet
        self.features: frozenset[str] | None = None
        #: a multi-node head's client: calls to objects on other nodes go to them directly
        #: (``client/routes.py``); None: every call goes to this daemon
        self.router: Router | None = None
        #: added to the mark of the lines a call prints (``node=i``: a node called directly)
        self.mark: str | None = None

    def _grant(self) -> str:
        """A new grant from ``token_source``; sets when to renew it."""
        answer = self._token_source()
        grant = answer.get("grant") if isinstance(answer, dict) else answer
        if not isinstance(grant, str) or not grant:
            raise errors.AuthenticationError(f"the token source of cluster {self.cluster!r} gave no grant "
                                             f"({type(answer).__name__})", cluster=self.cluster)
        from tether.protocol.grants import unverified_expiry

        now = time.time()
        expires = unverified_expiry(grant) or now + RENEW_AHEAD
        self._renew_at = expires - min(RENEW_AHEAD, max(0.0, expires - now) / 5)
        return grant

    def renew(self) -> None:
        """Get a new grant now (from ``token_source``), for every thread's next request."""
        with self._moving:
            if self._token_source is not None and time.time() >= self._renew_at:
                self._address(self.host, self.port, self._grant(), self.fingerprint)

    def _address(self, host: str, port: int, token: str, fingerprint: str | None = None) -> None:
        if fingerprint:
            _check_pin(fingerprint)
        self.host, self.port, self.token = host, port, token
        self.fingerprint = fingerprint or None  # as the endpoint gave it (compared with it)
        self._auth = f"Bearer {token}"
        # the headers every request carries, encoded once: this client reads WARN messages
        self._fixed_headers = (f"Host: {host}:{port}\r\nAuthorization: {self._auth}\r\n"
                               f"{wire.VERSION_HEADER}: {wire.PROTOCOL_VERSION}\r\n"
                               f"{wire.ACCEPT_HEADER}: warn\r\n{wire.CALLER_HEADER}: {_CALLER}\r\n"
                               ).encode("latin-1")

    @property
    def url(self) -> str:
        return f"{'https' if self.fingerprint else 'http'}://{self.host}:{self.port}"

    def reply(self, context: dict[str, Any], stream_logs: bool = True) -> Reply:
        """How the messages of one response are read (``tether.client.replies``)."""
        return Reply(self.cluster, self.url, context, stream_logs)

    # -- the call path ---------------------------------------------------------------------------

    def call(self, name: str, method: str, args: Sequence[Any] = (), kwargs: dict | None = None,
             stream_logs: bool = True, call_id: str | None = None, keep: bool = False,
             refs: Sequence[str] = (), timeout: float | None = None, queue: bool = False) -> Any:
        """Call ``method`` of the remote object ``name``; logs stream to this process's stdout.

        A remote generator comes back as a local generator that yields items as they are produced;
        its return value is ``StopIteration.value``. Ctrl-C cancels the remote call.

        ``timeout`` (seconds; None: wait as long as it runs): past it, the remote call is
        cancelled and ``tether.CallTimeoutError`` raised (``cancelled`` says whether the daemon
        took the cancel). A generator gets ``timeout`` to start, then for each next item.
        ``queue``: the call waits for the object's earlier queued calls and runs alone among
        them, in arrival order (``fn.enqueue``); calls not queued are not held.

        Through a multi-node head, a call of an object on another node goes to that node's
        daemon directly once the head has named it (``router``, ``client/routes.py``).
        """
        if self.router is not None and not keep and not refs and call_id is None:
            direct, value = self.router.call(name, method, args, kwargs, stream_logs, timeout, queue)
            if direct:
                return value
        call_id = call_id or new_call_id()
        reply = self.reply({"service": name, "method": method, "call_id": call_id}, stream_logs)
        if timeout is not None:
            reply.within(timeout)
        headers = {wire.CALL_ID_HEADER: call_id}
        if keep:
            headers[wire.KEEP_HEADER] = "1"
        if refs:
            headers[wire.REFS_HEADER] = ",".join(refs)
        if queue:
            self.require("queue", "queue calls (enqueue)", service=name)
            headers[wire.QUEUE_HEADER] = "1"
        frames, flags, shared = self.call_frames(args, kwargs, headers)
        try:
            msg = self.stream("POST", f"/{name}/{method}", wire.encode(wire.CALL, frames, 0, flags),
                              reply, headers=headers, allow_stream=True)
        except KeyboardInterrupt:
            self.cancel(call_id, quiet=True)
            raise
        except errors.CallTimeoutError as exc:
            self.cancel_timed_out(exc, call_id)
            raise
        finally:
            shm.discard(self.shm, shared)  # what the worker did not take (it failed first)
        if msg.kind == wire.STREAM:
            return self._iterate(self._local.stream_owner, reply)
        return self.value(msg, f"the result of {name}.{method}", reply.context)

    def call_frames(self, args: Sequence[Any], kwargs: dict | None,
                    headers: dict[str, str]) -> tuple[list[wire.Buffer], int, list[str]]:
        """The frames of a call's arguments: (frames, message flags, shared-memory files)."""
        frames = wire.dumps((tuple(args), kwargs or {}), "the arguments")
        if self.shm is None:
            return frames, 0, []
        headers[wire.SHM_HEADER] = "1"
        try:
            return shm.export_owned(frames, self.shm)
        except OSError:  # /dev/shm is full or gone: the socket still works
            return frames, 0, []

    def value(self, msg: wire.Message, what: str, context: dict[str, Any]) -> Any:
        """The value a RESULT message carries (big frames mapped from shared memory)."""
        try:
            frames = shm.resolve(msg.frames, msg.flags, self.shm)
        except FileNotFoundError as exc:
            raise errors.ResultExpiredError(
                f"{what} was dropped from the cluster's shared memory before it could be read "
                f"({exc}): the daemon keeps results within its retention bounds", **context) from None
        return wire.loads(frames, what)

    def result(self, call_id: str, timeout: float | None = None, stream_logs: bool = True) -> Any:
        """The result of an earlier call by id (waits while it runs); raises what the call raised."""
        path = f"/_tether/calls/{call_id}" + (f"?timeout={timeout}" if timeout is not None else "")
        headers = {wire.SHM_HEADER: "1"} if self.shm is not None else None
        reply = self.reply({"call_id": call_id}, stream_logs)
        msg = self.stream("GET", path, [], reply, headers=headers)
        return self.value(msg, f"the result of call {call_id}", reply.context)

    def cancel(self, call_id: str, force: bool = False, quiet: bool = False,
               timeout: float = 30.0) -> dict[str, Any]:
        """Stop a running call; ``force=True`` also restarts its worker."""
        try:
            return self.request_json("POST", f"/_tether/calls/{call_id}/cancel",
                                     params={"force": "true" if force else "false"}, timeout=timeout)
        except errors.TetherError:
            if quiet:  # best effort while the caller is already being interrupted
                return {"id": call_id, "cancelled": False}
            raise

    def cancel_timed_out(self, exc: errors.CallTimeoutError, call_id: str) -> None:
        """Cancel the remote call that ran out of time (``exc`` is ours, not a remote one's);
        ``exc.cancelled`` says whether the daemon took the cancel."""
        if exc.fields.get("call_id") != call_id or "cancelled" in exc.fields:
            return
        cancelled = bool(self.cancel(call_id, quiet=True, timeout=CANCEL_TIMEOUT).get("cancelled"))
        exc.fields["cancelled"] = exc.cancelled = cancelled

    def deploy(self, meta: dict[str, Any], payload: Sequence[wire.Buffer] = (), stream_logs: bool = True) -> dict:
        parts = wire.encode(wire.CONTROL, [wire.json_frame(meta), *payload])
        reply = self.reply({"service": meta.get("name")}, stream_logs)
        if self.router is not None:
            self.router.forget(meta.get("name"))  # it may go to another node: the head says
        return self.stream("POST", "/_tether/deploy", parts, reply).json(0)

    def require(self, feature: str, what: str, **context: Any) -> None:
        """Refuse, before sending, what the daemon does not do (an older release: ``wire.FEATURES``)."""
        if self.features is not None and feature not in self.features:
            raise errors.VersionMismatchError(
                f"cluster {self.cluster!r} runs a tether daemon that does not {what}: restart it with "
                "this version (cluster.restart_server())", cluster=self.cluster, **context)

    def alias(self, alias: str, name: str) -> dict[str, Any]:
        """Make ``alias`` another name of the object ``name`` (``daemon/aliases.py``)."""
        self.require("alias", "give objects other names (save(name=...))", service=name)
        return self.request_json("PUT", f"/_tether/aliases/{alias}", body={"name": name})

    def run(self, commands: list[str], kind: str = "bash", stream_logs: bool = True, **options: Any) -> list:
        body = json.dumps({"commands": commands, "kind": kind, **options}).encode()
        reply = self.reply({}, stream_logs)
        return self.stream("POST", "/_tether/run", [body], reply, content_type="application/json").json(0)

    def stream(self, verb: str, path: str, parts: Sequence[wire.Buffer], reply: Reply | None = None,
               content_type: str = wire.CONTENT_TYPE, headers: dict[str, str] | None = None,
               allow_stream: bool = False) -> wire.Message:
        """Send one request, print its LOG messages as they arrive, return the RESULT message.

        With ``allow_stream``, a STREAM message (a remote generator) is returned too, and the
        connection and response move to ``self._local.stream_owner`` for ``_iterate`` to read.
        """
        reply = reply or self.reply({})
        conn = self._conn()
        timed = reply.deadline is not None
        if timed:  # only then: a socket timeout costs system calls on every read
            conn.sock.settimeout(reply.left())
        resp = self._send(conn, verb, path, parts, reply.stream_logs, content_type, headers, reply)
        try:
            if resp.status != 200:
                error = reply.http_error(resp.status, self._read_error(resp))
                error.http_status = resp.status  # answered before anything ran (client/routes.py)
                raise error
            if resp.route is not None and self.router is not None:
                self.router.learn(reply.context.get("service"), resp.route)
            reply.source = resp.source if self.mark is None or resp.source is None else f"{resp.source} {self.mark}"
            msg = self._next_within(resp, reply, conn) if timed else self._next(resp, reply)
            if msg.kind == wire.RESULT:
                self._finish(resp)  # consume the end of the stream so the connection is reusable
                return msg
            if msg.kind == wire.STREAM and allow_stream:
                self._local.conn = None  # the generator owns this connection now
                self._local.stream_owner = (conn, resp)
                return msg
            raise errors.ConnectionError(f"unexpected message kind {msg.kind} from cluster {self.cluster!r}",
                                         **reply.context)
        except BaseException:
            if getattr(self._local, "conn", None) is conn and not resp.ended:
                self._drop()  # an unread stream cannot be reused
            raise
        finally:
            if timed and getattr(self._local, "conn", None) is conn:
                conn.sock.settimeout(None)  # kept for the next request, which may have no timeout

    @staticmethod
    def _next(resp: http11.Response, reply: Reply) -> wire.Message:
        """The next message the caller acts on (LOGs printed, an ERROR raised on the way)."""
        while True:
            with reply.transport():
                msg = resp.read_message()
                if msg is not None and msg.kind == wire.ERROR:
                    resp.at_end()  # the connection stays reusable
            msg = reply.take(msg)
            if msg is not None:
                return msg

    @staticmethod
    def _next_within(resp: http11.Response, reply: Reply, conn: http11.Connection) -> wire.Message:
        """``_next`` for a call with a timeout: the socket may wait only for the time left (a log
        line does not extend it)."""
        while True:
            conn.sock.settimeout(reply.left())
            with reply.transport():
                msg = resp.read_message()
                if msg is not None and msg.kind == wire.ERROR:
                    resp.at_end()
            msg = reply.take(msg)
            if msg is not None:
                return msg

    def _finish(self, resp: http11.Response) -> None:
        try:
            if resp.at_end():
                return
            resp.read_rest()
        except TRANSPORT_ERRORS:
            self._drop()

    def _read_error(self, resp: http11.Response) -> bytes:
        try:
            return resp.read_rest()
        except TRANSPORT_ERRORS:
            self._drop()
            return b""

    def _iterate(self, owner, reply: Reply):
        """Yield a remote generator's items; closing this early closes the connection, which
        makes the daemon stop the remote generator."""
        conn, resp = owner
        finished = False
        timeout = reply.timeout  # each next item gets the whole of it (the consumer's time is its own)
        try:
            while True:
                if timeout is None:
                    msg = self._next(resp, reply)
                else:
                    msg = self._next_within(resp, reply.within(timeout, item=True), conn)
                if msg.kind == wire.ITEM:
                    yield wire.loads(msg.frames, "a generator item")
                elif msg.kind == wire.RESULT:
                    finished = resp.at_end()
                    return self.value(msg, "the generator's return value", reply.context)
        except KeyboardInterrupt:
            self.cancel(reply.context["call_id"], quiet=True)
            raise
        except errors.CallTimeoutError as exc:
            self.cancel_timed_out(exc, reply.context["call_id"])
            raise
        finally:
            if finished and getattr(self._local, "conn", None) is None:
                if timeout is not None:
                    conn.sock.settimeout(None)
                self._local.conn = conn
            else:
                conn.close()

    async def acall(self, name: str, method: str, args: Sequence[Any] = (), kwargs: dict | None = None,
                    stream_logs: bool = True, call_id: str | None = None, timeout: float | None = None) -> Any:
        """The async form of ``call``: many can be in flight from one event loop.

        A remote generator comes back as an async iterator. Cancelling the awaiting task cancels
        the remote call; so does running out of ``timeout`` (as in ``call``).
        """
        from tether.client import aio

        if self.router is not None and call_id is None:
            direct, value = await self.router.acall(name, method, args, kwargs, stream_logs, timeout)
            if direct:
                return value
        if timeout is None:
            return await aio.acall(self, name, method, args, kwargs, stream_logs, call_id or new_call_id())
        return await aio.acall_within(self, name, method, args, kwargs, stream_logs,
                                      call_id or new_call_id(), timeout)

    def _send(self, conn: http11.Connection, verb: str, path: str, parts: Sequence[wire.Buffer],
              stream_logs: bool, content_type: str, headers: dict[str, str] | None,
              reply: Reply | None = None) -> http11.Response:
        # A user's call is never retried (it may not be idempotent): a keep-alive connection that
        # the daemon closed is detected *before* sending instead, the way urllib3 does.
        length = sum(memoryview(p).nbytes for p in parts)
        head = [f"{verb} {path} HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n"]
        if not stream_logs:
            head.append(f"{wire.STREAM_LOGS_HEADER}: 0\r\n")
        for key, value in (headers or {}).items():
            head.append(f"{key}: {value}\r\n")
        try:
            conn.send(b"".join([s.encode("latin-1") for s in head]) + self._fixed_headers + b"\r\n", parts)
        except OSError as exc:
            self._drop()
            raise (reply is not None and reply.timed_out(exc) or self._unreachable(exc)) from exc
        try:
            return conn.response()
        except TRANSPORT_ERRORS as exc:
            self._drop()
            timed_out = reply is not None and reply.timed_out(exc)
            if timed_out:  # the daemon answers once the call's first message comes
                raise timed_out from exc
            raise errors.ConnectionError(
                f"lost the connection to cluster {self.cluster!r} ({self.url}) after sending the "
                f"request, before any answer: {exc}. The call may or may not have run.",
                cluster=self.cluster) from exc

    def _conn(self) -> http11.Connection:
        if self._token_source is not None and time.time() >= self._renew_at:
            self.renew()
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.dropped():
            conn.close()
            conn = None
        if conn is None:
            tried = (self.host, self.port)
            try:
                conn = http11.Connection(*tried, fingerprint=self.fingerprint)
            except OSError as exc:
                if not isinstance(exc, ConnectionRefusedError) or not self.relocate(tried):
                    raise self._unsent(exc) from exc
                try:  # the daemon moved: once more, at its new address
                    conn = http11.Connection(self.host, self.port, fingerprint=self.fingerprint)
                except OSError as again:
                    raise self._unsent(again) from again
            self._local.conn = conn
        return conn

    def relocate(self, tried: tuple[str, int]) -> bool:
        """Follow a daemon that was restarted elsewhere, after ``tried`` (host, port) refused a
        connection: True if ``resolve()`` names another address (this client then uses it, and
        checks the new daemon's protocol and shared memory), False if there is nowhere else to go."""
        if self._resolve is None or getattr(self._local, "relocating", False):
            return False
        with self._moving:
            if (self.host, self.port) != tried:
                return True  # another thread moved this client meanwhile
            try:
                address = self._resolve()
            except Exception:  # noqa: BLE001 - no new address: the caller reports the refusal
                return False
            if address is not None and self._token_source is not None:  # the grant stays
                address = (address[0], address[1], self.token, address[3])
            if address is None or tuple(address) == (self.host, self.port, self.token, self.fingerprint):
                return False
            self._address(*address)
        self._local.relocating = True
        try:
            self.check_version()
        finally:
            self._local.relocating = False
        return True

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _unsent(self, exc: BaseException) -> errors.ConnectionError:
        """``_unreachable``, for a connection that could not be made: nothing was sent (a
        direct call then goes through the head, ``client/routes.py``)."""
        error = self._unreachable(exc)
        error.unsent = True
        return error

    def _unreachable(self, exc: BaseException) -> errors.ConnectionError:
        if self.fingerprint:
            from tether.protocol.tls import PinMismatch

            if isinstance(exc, PinMismatch):  # it answered, and is not the daemon we pinned
                return errors.ConnectionError(f"cluster {self.cluster!r}: {exc}", cluster=self.cluster)
        why = None
        if self._gone is not None:
            try:
                why = self._gone()
            except Exception:  # noqa: BLE001 - no reason known: the plain error below
                why = None
        if why:
            return errors.ConnectionError(f"{why} (its daemon at {self.url}: {exc})", cluster=self.cluster)
        return unreachable(self.cluster, self.url, exc)

    # -- the control plane ------------------------------------------------------------------

    def request_json(self, verb: str, path: str, params: dict[str, str] | None = None,
                     body: Any = None, timeout: float = 30.0) -> Any:
        """A small JSON request (health, keys, status, delete, cancel) on this thread's
        connection, with a timeout: unlike a call, none of these may take long."""
        if params:
            path = f"{path}?{urlencode(params)}"
        data = json.dumps(body).encode() if body is not None else b""
        head = f"{verb} {path} HTTP/1.1\r\nContent-Length: {len(data)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        conn = self._conn()
        try:
            conn.sock.settimeout(timeout)
            conn.send(head.encode("latin-1") + self._fixed_headers + b"\r\n", [data])
            resp = conn.response()
            content = resp.read_rest()
            conn.sock.settimeout(None)
        except TRANSPORT_ERRORS as exc:
            self._drop()
            raise self._unreachable(exc) from exc
        if resp.status != 200:
            raise http_error(self.cluster, resp.status, content)
        try:
            return json.loads(content)
        except ValueError as exc:
            raise errors.ConnectionError(f"the daemon of cluster {self.cluster!r} answered {path} with "
                                         f"malformed JSON: {content[:200]!r}", cluster=self.cluster) from exc

    def stream_json(self, path: str, params: dict[str, Any] | None = None,
                    connect_timeout: float = 10.0) -> Iterator[dict[str, Any]]:
        """The objects of a newline-delimited JSON stream (``GET /_tether/calls?follow=1``, a
        call's output), as the daemon writes them, on a connection of its own that closes when
        the iteration stops. Errors as ``request_json``'s (a 404 is ``tether.NotFoundError``)."""
        if params:
            path = f"{path}?{urlencode(params, doseq=True)}"
        if self._token_source is not None and time.time() >= self._renew_at:
            self.renew()
        try:
            conn = http11.Connection(self.host, self.port, connect_timeout, fingerprint=self.fingerprint)
        except OSError as exc:
            raise self._unreachable(exc) from exc
        try:
            try:
                conn.send(f"GET {path} HTTP/1.1\r\nContent-Length: 0\r\n".encode("latin-1")
                          + self._fixed_headers + b"\r\n", [])
                resp = conn.response()
                if resp.status != 200:
                    raise http_error(self.cluster, resp.status, resp.read_rest())
                rest = b""
                while True:
                    piece = resp.read_some()
                    if not piece:
                        break
                    *lines, rest = (rest + piece).split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
            except TRANSPORT_ERRORS as exc:
                raise errors.ConnectionError(
                    f"lost the stream {path.split('?')[0]} of cluster {self.cluster!r} ({self.url}): {exc}",
                    cluster=self.cluster) from exc
        finally:
            conn.close()

    def health(self) -> dict[str, Any]:
        return self.request_json("GET", "/health")

    def check_version(self) -> dict[str, Any]:
        """Fail early, with the fix, when the daemon speaks another protocol.

        Only the protocol has to match (``wire.PROTOCOL_VERSION``, bumped on any incompatible
        change): a daemon of another tether release that speaks this protocol serves this client.
        """
        health = self.health()
        if health.get("protocol") != wire.PROTOCOL_VERSION:
            from tether._version import __version__

            raise errors.VersionMismatchError(
                f"cluster {self.cluster!r} runs tether {health.get('tether')}, which speaks protocol "
                f"{health.get('protocol')}, and this process runs tether {__version__} (protocol "
                f"{wire.PROTOCOL_VERSION}). Restart its daemon with this version: "
                f"`tether daemon restart --cluster {self.cluster}` or cluster.restart_server(); or "
                f"install tether=={health.get('tether')} here.",
                cluster=self.cluster, daemon_version=health.get("tether"), client_version=__version__,
                daemon_protocol=health.get("protocol"), client_protocol=wire.PROTOCOL_VERSION,
            )
        self.shm = self._shared_memory(health.get("shm"))
        self.features = frozenset(health.get("features") or ())
        return health

    def close(self) -> None:
        self._drop()

    def _shared_memory(self, info: Any) -> Path | None:
        """The daemon's shared-memory folder if files go both ways through it, else None (the
        socket, always correct).

        Same machine and same ``/dev/shm`` is not enough: a caller running as root next to a
        daemon of another user reads the daemon's files, but the daemon's workers cannot read
        the caller's (0600) and every big argument would fail with PermissionError. So: this
        process reads the daemon's probe file (0600, as frames are), then writes one of its own
        that the daemon reads back (``GET /health?shm_probe=<name>``). On any doubt, None.
        """
        if os.environ.get("TETHER_SHM", "1").lower() in ("0", "off", "false", "no"):
            return None  # asked for the socket only
        if not isinstance(info, dict) or not info.get("dir") or not info.get("probe"):
            return None
        folder = Path(info["dir"])
        try:
            if (folder / "probe").read_text() != info["probe"]:
                return None
            name, token = shm.write_probe(folder)
        except OSError:
            return None
        try:
            seen = self.request_json("GET", "/health", params={"shm_probe": name}).get("shm_probe")
        except errors.TetherError:
            seen = None
        finally:
            shm.discard_probe(folder, name)
        return folder if seen == token else None



def _check_pin(fingerprint: str) -> None:
    from tether.protocol import tls  # ssl: imported only by those who need it

    try:
        tls.normalize(fingerprint)
    except ValueError as exc:
        raise errors.ConfigError(f"bad TLS pin for a daemon: {exc}") from None


def new_call_id() -> str:
    return os.urandom(12).hex()
