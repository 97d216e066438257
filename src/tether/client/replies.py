"""What a daemon's response streams back, read the same way by the sync and the async client, and
the one place where the transport's errors become tether's.

A call's response is a stream of wire messages: LOG lines while the call runs, then a RESULT or an
ERROR; a remote generator answers STREAM, then ITEM messages, then a RESULT (its return value).
A WARN (sent only to clients that announce ``x-tether-accept: warn``) comes first when the daemon
has something to tell the caller (an instance made again with fresh state). ``Reply.take`` knows
every kind: it prints a LOG (or hands it to a step's logger), issues a WARN with
``warnings.warn``, raises an ERROR as the remote exception, and returns what the caller acts on.
The client's four readers (a call, a generator, and their async forms) only say where the next
message comes from.

``Reply.transport()`` wraps each read: a socket error, a malformed response or a connection
closed mid-message becomes ``tether.ConnectionError`` naming the cluster, the call and what to
check, raised ``from`` the original (as httpx's ``map_httpcore_exceptions`` does). A remote
exception is raised outside it, so that a remote ``OSError`` is never taken for a lost connection.

A call with a timeout (``Reply.within``) sets its socket's timeout to the time left before each
read; a read that runs out of it becomes ``tether.CallTimeoutError`` here, not a ConnectionError.
Only a socket timeout counts (a ``TimeoutError`` without an errno): a TCP connection the kernel
gave up on (``ETIMEDOUT``) is a lost connection, timeout or not.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from time import monotonic
from typing import Any

from tether import errors
from tether.client import logsink, marks
from tether.protocol import wire

#: what a transport raises: sockets (OSError and its ConnectionError/TimeoutError), a malformed
#: response (ValueError), a body that ended early (asyncio.IncompleteReadError is an EOFError)
TRANSPORT_ERRORS = (OSError, ValueError, EOFError)


class Reply:
    """One request's response, message by message. ``context`` (service, method, call_id) goes
    into every error raised."""

    __slots__ = ("cluster", "url", "context", "stream_logs", "timeout", "deadline", "waiting", "source")

    def __init__(self, cluster: str, url: str, context: dict[str, Any], stream_logs: bool = True) -> None:
        self.cluster, self.url, self.stream_logs = cluster, url, stream_logs
        self.context = {"cluster": cluster, **context}
        self.timeout = self.deadline = None  # a call's timeout (s), and when it runs out (monotonic)
        self.source: str | None = None  # the worker that runs the call (x-tether-worker): marks its lines

    def within(self, timeout: float, item: bool = False) -> Reply:
        """Give the call ``timeout`` seconds from now; ``item``: to yield a generator's next item."""
        self.timeout, self.deadline = timeout, monotonic() + timeout
        self.waiting = "yield its next item" if item else "finish"
        return self

    def left(self) -> float:
        """Seconds left before the deadline; raises CallTimeoutError once none are."""
        left = self.deadline - monotonic()
        if left <= 0:
            raise self.expired()
        return left

    def expired(self) -> errors.CallTimeoutError:
        """The error of a call that outlived its timeout: what, where, and what to do."""
        ctx = self.context
        method = ctx.get("method")
        what = f"{ctx.get('service', '?')}{'' if method in (None, 'call') else '.' + method}"
        return errors.CallTimeoutError(
            f"the call to {what} on cluster {self.cluster!r} (call id {ctx.get('call_id')}) did not "
            f"{self.waiting} within its timeout of {self.timeout:.4g} s; tether asked the cluster to cancel "
            f"it. If it needs longer, raise the timeout (timeout= or call_timeout= on the call, "
            f".to(..., timeout=) on the stub, or TETHER_CALL_TIMEOUT). If it should have finished, "
            f"look for a stuck worker: cluster.status() (or `tether daemon status --cluster "
            f"{self.cluster}`) names a worker that stopped answering ('unresponsive').",
            timeout=self.timeout, **ctx)

    def timed_out(self, exc: BaseException) -> errors.CallTimeoutError | None:
        """``exc`` as a CallTimeoutError when it is this call's socket running out of time."""
        if self.deadline is not None and isinstance(exc, TimeoutError) and exc.errno is None:
            return self.expired()
        return None

    def take(self, msg: wire.Message | None) -> wire.Message | None:
        """None for a LOG (printed here); raises for an ERROR or the end of the body; else the
        message (RESULT, STREAM or ITEM) for the caller to act on."""
        if msg is None:
            raise errors.ConnectionError(
                f"the connection to cluster {self.cluster!r} closed before the call finished", **self.context)
        kind = msg.kind
        if kind == wire.LOG:
            if self.stream_logs:  # also silences routes that stream regardless (run, deploy)
                # outside transport(): our own stdout gone (`| head`) is not the network
                print_log(msg, marks.label(self.context.get("service"), self.source) if self.source else None)
            return None
        if kind == wire.ERROR:
            raise wire.exception_from_error(msg, **self.context)
        if kind in (wire.RESULT, wire.STREAM, wire.ITEM):
            return msg
        if kind == wire.WARN:
            issue_warning(msg)
            return None
        raise errors.ConnectionError(f"unexpected message kind {kind} from cluster {self.cluster!r}",
                                     **self.context)

    def transport(self) -> Reply:
        """``with reply.transport(): msg = read()``: the transport's errors become tether's.

        The reply is its own context manager (a class, not a generator: it wraps every read on
        the call path, where each allocation shows)."""
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, errors.TetherError):  # ours are OSErrors too: kept
            return False
        if isinstance(exc, TRANSPORT_ERRORS):
            raise (self.timed_out(exc) or self.lost(exc)) from exc
        return False

    def http_error(self, status: int, body: bytes) -> errors.TetherError:
        """The error for a non-200 answer to this request."""
        return http_error(self.cluster, status, body, **self.context)

    def lost(self, exc: BaseException, when: str = "during the call") -> errors.ConnectionError:
        return errors.ConnectionError(
            f"lost the connection to cluster {self.cluster!r} ({self.url}) {when}: {exc}", **self.context)


def http_error(cluster: str, status: int, body: bytes, /, **context: Any) -> errors.TetherError:
    """The error for a non-200 answer (its JSON body says which and why)."""
    try:
        data = json.loads(body)
        message, kind = data.get("message", ""), data.get("error", "")
    except (ValueError, AttributeError):
        data, message, kind = {}, body.decode(errors="replace")[:500], ""
    context.setdefault("cluster", cluster)
    if status == 401:
        return errors.AuthenticationError(message, **context)
    if status == 403:
        return errors.AccessDeniedError(message, needed=data.get("needed"), user=data.get("user"), **context)
    if status == 409 and kind == "version_mismatch":
        from tether._version import __version__

        return errors.VersionMismatchError(
            message, daemon_version=data.get("daemon_version"), client_version=__version__,
            daemon_protocol=data.get("daemon_protocol"), client_protocol=wire.PROTOCOL_VERSION, **context)
    if status == 404:
        return errors.NotFoundError(message, **context)
    if status == 409 and kind == "conflict":  # a name taken by another object
        return errors.ConfigError(message, **context)
    if status in (400, 413, 431):  # malformed; a body over TETHER_MAX_BODY; headers over their limits
        return errors.ConfigError(message, **context)
    if status == 408 and kind == "timeout":  # a wait for a call's result outlived its timeout
        return errors.CallTimeoutError(message, **context)
    if status == 410:
        return errors.ResultExpiredError(message, **context)
    if status == 502 or (status == 503 and kind == "too_many_connections"):
        return errors.ConnectionError(message, **context)  # a node unreachable; a daemon full
    if status == 500 and kind == "internal":  # the daemon's log has the traceback under the id
        context.setdefault("error_id", data.get("error_id"))
    return errors.TetherError(f"HTTP {status} from cluster {cluster!r}: {message}", **context)


def unreachable(cluster: str, url: str, exc: BaseException) -> errors.ConnectionError:
    return errors.ConnectionError(
        f"cannot reach the daemon of cluster {cluster!r} at {url}: {exc}. Is it up? "
        f"(`tether daemon status --cluster {cluster}`)", cluster=cluster)


_TETHER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_WARNINGS: dict[str, type[errors.TetherWarning]] = {"state_reset": errors.StateResetWarning}


def issue_warning(msg: wire.Message) -> None:
    """A WARN message as ``warnings.warn``, attributed to the caller's own line (the first frame
    outside tether), with the daemon's fields (``service``, ``reason``, ``at``) as attributes."""
    try:
        meta = msg.json(0)
    except ValueError:
        meta = {"message": bytes(msg.frames[0]).decode("utf-8", "replace") if msg.frames else ""}
    if not isinstance(meta, dict):
        meta = {"message": str(meta)}
    warning = _WARNINGS.get(meta.get("category"), errors.TetherWarning)(str(meta.get("message", "")))
    for key, value in meta.items():
        if key not in ("category", "message"):
            setattr(warning, key, value)
    level, frame = 2, sys._getframe(1)  # level 1 is this function
    while frame is not None and frame.f_code.co_filename.startswith(_TETHER_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)


def print_log(msg: wire.Message, label: str | None = None) -> None:
    """A LOG message to this process's stdout/stderr, each line marked with ``label`` (``(svc
    pid=...)``, ``tether.client.marks``), or raw to the step's logger that takes it
    (``tether.client.logsink``)."""
    text = bytes(msg.frames[1]).decode("utf-8", "replace")
    stream_name = "err" if msg.frames[0] == b"err" else "out"
    if logsink.deliver(stream_name, text):
        return
    stream = sys.stderr if stream_name == "err" else sys.stdout
    if label is not None:
        text = marks.mark(stream_name, text, label, stream)
    stream.write(text)
    stream.flush()
