"""The HTTP client of one daemon.

Two transports, each where it fits (see DESIGN.md, "Libraries and where they belong"):

* the call path (calls, deploys, ``run_bash``) uses one keep-alive ``http.client`` connection per
  thread with TCP_NODELAY: it was several times faster than httpx here, and it lets us write
  out-of-band buffers straight to the socket and read a streamed response message by message;
* small JSON control requests (health, keys, delete, status) use httpx.

Foreign errors (sockets, http.client, httpx) are translated to tether's here and nowhere else.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from tether._version import __version__
from tether.core import errors, wire


class _LocalOutputError(Exception):
    """Printing a remote log line to this process's stdout/stderr failed (e.g. a closed pipe)."""

    def __init__(self, original: OSError) -> None:
        self.original = original


class _Connection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DaemonClient:
    """Talks to one daemon at ``host:port`` with a bearer token."""

    def __init__(self, host: str, port: int, token: str, cluster: str = "local") -> None:
        self.host, self.port, self.token, self.cluster = host, port, token, cluster
        self._auth = f"Bearer {token}"
        self._local = threading.local()
        self._httpx = None
        self._httpx_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- the call path ---------------------------------------------------------------------------

    def call(self, name: str, method: str, args: Sequence[Any] = (), kwargs: dict | None = None,
             stream_logs: bool = True, call_id: str | None = None, keep: bool = False,
             refs: Sequence[str] = ()) -> Any:
        """Call ``method`` of the remote object ``name``; logs stream to this process's stdout.

        A remote generator comes back as a local generator that yields items as they are produced;
        its return value is ``StopIteration.value``. Ctrl-C cancels the remote call.
        """
        frames = wire.dumps((tuple(args), kwargs or {}), "the arguments")
        call_id = call_id or new_call_id()
        context = {"service": name, "method": method, "call_id": call_id}
        headers = {wire.CALL_ID_HEADER: call_id}
        if keep:
            headers[wire.KEEP_HEADER] = "1"
        if refs:
            headers[wire.REFS_HEADER] = ",".join(refs)
        try:
            msg = self.stream("POST", f"/{name}/{method}", wire.encode(wire.CALL, frames), stream_logs,
                              headers=headers, allow_stream=True, **context)
        except KeyboardInterrupt:
            self.cancel(call_id, quiet=True)
            raise
        if msg.kind == wire.STREAM:
            return self._iterate(self._local.stream_owner, stream_logs, context)
        return wire.loads(msg.frames, f"the result of {name}.{method}")

    def result(self, call_id: str, timeout: float | None = None, stream_logs: bool = True) -> Any:
        """The result of an earlier call by id (waits while it runs); raises what the call raised."""
        path = f"/_tether/calls/{call_id}" + (f"?timeout={timeout}" if timeout is not None else "")
        msg = self.stream("GET", path, [], stream_logs, call_id=call_id)
        return wire.loads(msg.frames, f"the result of call {call_id}")

    def cancel(self, call_id: str, force: bool = False, quiet: bool = False) -> dict[str, Any]:
        """Stop a running call; ``force=True`` also restarts its worker."""
        try:
            return self.request_json("POST", f"/_tether/calls/{call_id}/cancel",
                                     params={"force": "true" if force else "false"})
        except errors.TetherError:
            if quiet:  # best effort while the caller is already being interrupted
                return {"id": call_id, "cancelled": False}
            raise

    def deploy(self, meta: dict[str, Any], payload: Sequence[wire.Buffer] = (), stream_logs: bool = True) -> dict:
        parts = wire.encode(wire.CONTROL, [wire.json_frame(meta), *payload])
        return self.stream("POST", "/_tether/deploy", parts, stream_logs, service=meta.get("name")).json(0)

    def run(self, commands: list[str], kind: str = "bash", stream_logs: bool = True, **options: Any) -> list:
        body = json.dumps({"commands": commands, "kind": kind, **options}).encode()
        return self.stream("POST", "/_tether/run", [body], stream_logs, content_type="application/json").json(0)

    def stream(self, verb: str, path: str, parts: Sequence[wire.Buffer], stream_logs: bool = True,
               content_type: str = wire.CONTENT_TYPE, headers: dict[str, str] | None = None,
               allow_stream: bool = False, **context: Any) -> wire.Message:
        """Send one request, print its LOG messages as they arrive, return the RESULT message.

        With ``allow_stream``, a STREAM message (a remote generator) is returned too, and the
        connection and response move to ``self._local.stream_owner`` for ``_iterate`` to read.
        """
        conn = self._conn()
        resp = self._send(conn, verb, path, parts, stream_logs, content_type, headers)
        try:
            if resp.status != 200:
                raise self._http_error(resp.status, resp.read(), **context)
            read = _exact_reader(resp)
            msg = self._next_message(resp, read, stream_logs, context)
            if msg.kind == wire.RESULT:
                resp.read()  # consume the end of the stream so the connection is reusable
                return msg
            if msg.kind == wire.STREAM and allow_stream:
                self._local.conn = None  # the generator owns this connection now
                self._local.stream_owner = (conn, resp, read)
                return msg
            raise errors.ConnectionError(f"unexpected message kind {msg.kind} from cluster {self.cluster!r}",
                                         cluster=self.cluster, **context)
        except BaseException:
            if not resp.isclosed():
                self._drop()  # an unread stream cannot be reused
            raise

    def _next_message(self, resp, read, stream_logs: bool, context: dict[str, Any]) -> wire.Message:
        """The next message that is not a LOG (those are printed); an ERROR is raised."""
        try:
            while True:
                msg = wire.read_message_sync(read)
                if msg is None:
                    raise errors.ConnectionError(
                        f"the connection to cluster {self.cluster!r} closed before the call finished",
                        cluster=self.cluster, **context)
                if msg.kind != wire.LOG:
                    break
                if stream_logs:  # also silences routes that stream regardless (run, deploy)
                    try:
                        _print_log(msg)
                    except OSError as exc:  # our own stdout is gone (`| head`): not the network
                        raise _LocalOutputError(exc) from exc
            if msg.kind == wire.ERROR:
                resp.read()
        except _LocalOutputError as exc:
            raise exc.original from None
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, errors.TetherError):  # ours are OSErrors too (ConnectionError): keep them
                raise
            raise errors.ConnectionError(
                f"lost the connection to cluster {self.cluster!r} ({self.url}) during the call: {exc}",
                cluster=self.cluster, **context) from exc
        if msg.kind == wire.ERROR:  # raised here: a remote OSError is not a lost connection
            raise wire.exception_from_error(msg, cluster=self.cluster, **context)
        return msg

    def _iterate(self, owner, stream_logs: bool, context: dict[str, Any]):
        """Yield a remote generator's items; closing this early closes the connection, which
        makes the daemon stop the remote generator."""
        conn, resp, read = owner
        finished = False
        try:
            while True:
                msg = self._next_message(resp, read, stream_logs, context)
                if msg.kind == wire.ITEM:
                    yield wire.loads(msg.frames, "a generator item")
                elif msg.kind == wire.RESULT:
                    resp.read()
                    finished = True
                    return wire.loads(msg.frames, "the generator's return value")
        except KeyboardInterrupt:
            self.cancel(context["call_id"], quiet=True)
            raise
        finally:
            if finished and getattr(self._local, "conn", None) is None:
                self._local.conn = conn
            else:
                conn.close()

    async def acall(self, name: str, method: str, args: Sequence[Any] = (), kwargs: dict | None = None,
                    stream_logs: bool = True, call_id: str | None = None) -> Any:
        """The async form of ``call``: many can be in flight from one event loop.

        A remote generator comes back as an async iterator. Cancelling the awaiting task cancels
        the remote call.
        """
        from tether.core.client_async import acall

        return await acall(self, name, method, args, kwargs, stream_logs, call_id or new_call_id())

    def _send(self, conn: http.client.HTTPConnection, verb: str, path: str, parts: Sequence[wire.Buffer],
              stream_logs: bool, content_type: str, headers: dict[str, str] | None) -> http.client.HTTPResponse:
        # A user's call is never retried (it may not be idempotent): a keep-alive connection that
        # the daemon closed is detected *before* sending instead, the way urllib3 does.
        length = sum(memoryview(p).nbytes for p in parts)
        try:
            conn.putrequest(verb, path, skip_host=False, skip_accept_encoding=True)
            conn.putheader("Authorization", self._auth)
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(length))
            conn.putheader(wire.VERSION_HEADER, str(wire.PROTOCOL_VERSION))
            if not stream_logs:
                conn.putheader(wire.STREAM_LOGS_HEADER, "0")
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            if length <= 65536:  # headers and body in one write
                conn.endheaders(b"".join(parts))
            else:
                conn.endheaders()
                for part in parts:
                    conn.send(part)
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise self._unreachable(exc) from exc
        try:
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise errors.ConnectionError(
                f"lost the connection to cluster {self.cluster!r} ({self.url}) after sending the "
                f"request, before any answer: {exc}. The call may or may not have run.",
                cluster=self.cluster) from exc

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and (conn.sock is None or _dropped(conn.sock)):
            conn.close()
            conn = None
        if conn is None:
            conn = self._local.conn = _Connection(self.host, self.port)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _unreachable(self, exc: BaseException) -> errors.ConnectionError:
        return errors.ConnectionError(
            f"cannot reach the daemon of cluster {self.cluster!r} at {self.url}: {exc}. Is it up? "
            f"(`tether daemon status --cluster {self.cluster}`)", cluster=self.cluster)

    def _http_error(self, status: int, body: bytes, **context: Any) -> errors.TetherError:
        try:
            data = json.loads(body)
            message, kind = data.get("message", ""), data.get("error", "")
        except ValueError:
            data, message, kind = {}, body.decode(errors="replace")[:500], ""
        context = {"cluster": self.cluster, **context}
        if status == 401:
            return errors.AuthenticationError(message, **context)
        if status == 409 and kind == "version_mismatch":
            return errors.VersionMismatchError(message, **context)
        if status == 404:
            return errors.NotFoundError(message, **context)
        if status == 400:
            return errors.ConfigError(message, **context)
        if status == 410:
            return errors.ResultExpiredError(message, **context)
        return errors.TetherError(f"HTTP {status} from cluster {self.cluster!r}: {message}", **context)

    # -- the control plane (httpx) --------------------------------------------------------------

    def _control(self):
        if self._httpx is None:
            with self._httpx_lock:
                if self._httpx is None:
                    import httpx

                    self._httpx = httpx.Client(
                        base_url=self.url, timeout=httpx.Timeout(30.0, connect=5.0),
                        headers={"Authorization": self._auth, wire.VERSION_HEADER: str(wire.PROTOCOL_VERSION)},
                    )
        return self._httpx

    def request_json(self, verb: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            resp = self._control().request(verb, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if resp.status_code != 200:
            raise self._http_error(resp.status_code, resp.content)
        return resp.json()

    def health(self) -> dict[str, Any]:
        return self.request_json("GET", "/health")

    def check_version(self) -> dict[str, Any]:
        """Fail early, with the fix, when the daemon runs another tether version."""
        health = self.health()
        if health.get("tether") != __version__ or health.get("protocol") != wire.PROTOCOL_VERSION:
            raise errors.VersionMismatchError(
                f"cluster {self.cluster!r} runs tether {health.get('tether')} (protocol "
                f"{health.get('protocol')}) and this process runs tether {__version__} (protocol "
                f"{wire.PROTOCOL_VERSION}). Restart its daemon with this version: "
                f"`tether daemon restart --cluster {self.cluster}` or cluster.restart_server(); or "
                f"install tether=={health.get('tether')} here.",
                cluster=self.cluster, daemon_version=health.get("tether"), client_version=__version__,
            )
        return health

    def close(self) -> None:
        self._drop()
        if self._httpx is not None:
            self._httpx.close()
            self._httpx = None


def new_call_id() -> str:
    return os.urandom(12).hex()


def _dropped(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable was closed by the server (or is out of sync)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _exact_reader(resp: http.client.HTTPResponse) -> Callable[[int], bytes]:
    def read_exact(n: int) -> bytes:
        if n == 0:
            return b""
        if n > 1 << 16:  # big frames: fill one buffer, no concatenation
            buf = bytearray(n)
            view, got = memoryview(buf), 0
            while got < n:
                k = resp.readinto(view[got:])
                if not k:
                    break
                got += k
            data = buf if got == n else bytes(buf[:got])
        else:
            data = resp.read(n)
            while 0 < len(data) < n:
                more = resp.read(n - len(data))
                if not more:
                    break
                data += more
        if 0 < len(data) < n:
            raise http.client.IncompleteRead(bytes(data), n - len(data))
        return data

    return read_exact


def _print_log(msg: wire.Message) -> None:
    stream = sys.stderr if msg.frames[0] == b"err" else sys.stdout
    stream.write(bytes(msg.frames[1]).decode("utf-8", "replace"))
    stream.flush()
