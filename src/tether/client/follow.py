"""Calls followed without being owned: started (or found) by id, waited on asynchronously,
nothing decoded.

An orchestrator that releases a step's worker while its call runs (Airflow's deferrable
operators) starts the call from another process (the triggerer) and resumes the step later,
somewhere else, where the result is fetched by id (``DaemonClient.result``). In between, this
module:

* ``follow`` sends a call whose arguments the step already encoded, and reads its output (to the
  current log sink) up to its end, which it leaves undecoded: the waiting process needs tether
  only, never the user's code or its libraries. Cancelling it only closes the connection: the
  daemon runs a call whose caller went away to its end and keeps its result (a generator is the
  exception: it stops, so generators are refused here);
* ``wait`` asks the daemon whether the call has ended, waiting up to a timeout for it (the
  daemon's long poll, ``GET /_tether/calls/{id}?timeout=``): one request per wait, no thread held.

Neither cancels the remote call when it is itself cancelled (``aio.acall`` does): a waiter that
stops (a triggerer restarting) is not the user stopping the call; ``DaemonClient.cancel`` is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether import errors
from tether.client import logsink
from tether.client.aio import _pool, _request
from tether.client.replies import issue_warning
from tether.protocol import wire
from tether.protocol.http_body import read_message

if TYPE_CHECKING:
    from tether.client.daemon_client import DaemonClient


async def follow(client: DaemonClient, name: str, method: str, body: bytes, call_id: str) -> None:
    """Start the call ``call_id`` of ``name.method`` from ``body`` (its CALL message, as
    ``wire.encode_bytes`` made it) and read its output until it ends (a result or a remote error:
    ``result(call_id)`` gives either).

    Raises:
        tether.NotFoundError, tether.ConfigError, tether.TetherError: the daemon refused the call
            (unknown service or method, a bad request, no worker): it never started.
        tether.ConnectionError: the connection was lost; the call may still run (``wait``).
        tether.ConfigError: the call returned a generator (stopped: it cannot be followed).
    """
    reply = client.reply({"service": name, "method": method, "call_id": call_id})
    pool = _pool(client)
    writer = None
    reusable = False
    try:
        with reply.transport():
            reader, writer, resp = await _request(client, pool, f"/{name}/{method}", [body],
                                                  {wire.CALL_ID_HEADER: call_id})
            if pool.port != client.port or pool.host != client.host:  # it followed the daemon
                pool = _pool(client)
            refused = await resp.read_rest() if resp.status != 200 else None
        if refused is not None:
            reusable = True
            raise reply.http_error(resp.status, refused)
        while True:
            with reply.transport():
                msg = await read_message(resp)
                if msg is not None and msg.kind in wire.TERMINAL_KINDS:
                    reusable = await resp.at_end()
                    return
            if msg is not None and msg.kind == wire.STREAM:
                raise errors.ConfigError(  # closing the connection stops the remote generator
                    f"{name}.{method} returned a generator: a followed call (a deferred step) must "
                    "return a value; iterate generators from a step that waits for them", service=name)
            if msg is not None and msg.kind == wire.WARN:
                _warn(msg)
                continue
            reply.take(msg)  # a LOG line, to the sink; the end of the body raises ConnectionError
    finally:
        if writer is not None:
            if reusable:
                pool.put(reader, writer)
            else:
                writer.close()


async def wait(client: DaemonClient, call_id: str, timeout: float) -> bool:
    """Whether the call ``call_id`` has ended, waiting up to ``timeout`` seconds for it (0: only
    look). Its result is read and dropped, not decoded.

    Raises:
        tether.NotFoundError: the daemon does not know the id (the call never started, or the
            daemon was restarted since).
        tether.ResultExpiredError: it ended so long ago that its result was dropped.
        tether.ConnectionError: the daemon cannot be reached.
    """
    reply = client.reply({"call_id": call_id})
    pool = _pool(client)
    writer = None
    reusable = False
    try:
        with reply.transport():
            reader, writer, resp = await _request(client, pool, f"/_tether/calls/{call_id}?timeout={timeout:.3f}",
                                                  [], {}, verb="GET")
            if pool.port != client.port or pool.host != client.host:
                pool = _pool(client)
            body = await resp.read_rest()
            reusable = True
        if resp.status == 200:
            return True
        error = reply.http_error(resp.status, body)
        if isinstance(error, errors.CallTimeoutError):  # 408: still running
            return False
        raise error
    finally:
        if writer is not None:
            if reusable:
                pool.put(reader, writer)
            else:
                writer.close()


def _warn(msg: wire.Message) -> None:
    """A WARN (an instance made again with fresh state) into the step's log when it has one."""
    try:
        text = str(msg.json(0).get("message", ""))
    except (ValueError, AttributeError):
        text = ""
    if not text or not logsink.deliver("err", f"[tether] warning: {text}\n"):
        issue_warning(msg)
