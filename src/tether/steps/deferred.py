"""A step's call that runs while the step is parked: prepared in the step's process, waited on
asynchronously elsewhere, finished in the step's process again (Airflow's deferrable operators:
the worker prepares, the triggerer waits, a worker resumes the task).

1. ``prepare_call`` / ``prepare_function`` (the step's process): climb the ladder to the rung of
   the attempt and make the service there, as ``actions.call`` does; the result is a
   ``DeferredCall``, plain JSON that an orchestrator persists, naming the call by a fresh id.
   ``encode_arguments`` pickles the arguments here, once: they travel as bytes.
2. ``follow`` (async, in any process that reaches the cluster): start the call and follow its
   output to its end into the step's logger, or, if it was started already (the waiting process
   restarted), wait for its end by id; it cancels the call past its deadline. Nothing there
   unpickles the arguments or the result: that process needs tether, not the user's code.
   It returns an outcome, JSON too.
3. ``finish`` (the step's process): the result by id, or the remote error raised as
   ``actions.call`` raises it: an out-of-memory error says whether a bigger rung is left.

``cancel`` stops the call (the step was killed). The daemon keeps a call's result for
``TETHER_RESULTS_MAX_AGE`` seconds (default 600) after it ends: a step resumed later than that
fails with ``tether.ResultExpiredError``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

from tether import errors
from tether.client import follow as following
from tether.client.daemon_client import CANCEL_TIMEOUT, new_call_id
from tether.core.cluster import Cluster
from tether.core.cluster import cluster as named_cluster
from tether.core.images import DEFAULT_ENV
from tether.core.invoke import check_timeout
from tether.protocol import wire
from tether.steps import resets
from tether.steps.actions import (
    Logger,
    _oom_guard,
    _remote_logs,
    _say,
    placed_function,
    service_on_rung,
    time_left,
)
from tether.steps.ladder import Ladder, as_ladder

#: the encoded arguments of a deferred call travel through the orchestrator's database
MAX_ARGUMENT_BYTES = 1 << 20
#: the longest single wait on the daemon (its long poll) while a call runs
POLL_SECONDS = 60.0
#: a daemon that cannot be reached while a call runs is asked again this many times, this far apart
RECONNECTS, RECONNECT_SECONDS = 6, 5.0


class DeferredCall(TypedDict):
    """What names a deferred call (JSON: an orchestrator stores it with the parked step)."""

    cluster: str  #: the cluster it runs on (after the climb)
    service: str  #: the object's name on the cluster
    method: str
    call_id: str
    what: str  #: "trainer.train", for messages
    deadline: float | None  #: ``time.time()`` past which it is cancelled (its timeout); None: none
    timeout: float | None  #: the seconds it was given, for the message
    url: str  #: where its daemon serves it: ``GET {url}`` (with the cluster's token)
    env: NotRequired[str | None]  #: the env whose worker runs it (what a climb grows); None: unknown


# -- 1. in the step's process ----------------------------------------------------------------------


def prepare_call(service: str, method: str | None = None, args: Sequence[Any] = (),
                 kwargs: dict[str, Any] | None = None, *, ladder: Ladder | Sequence[Any] | None = None,
                 attempt: int = 1, logger: Logger | None = None, timeout: float | None = None,
                 deadline: float | None = None, call_id: str | None = None,
                 missing_hint: str | None = None) -> DeferredCall:
    """Put ``service`` on the rung of ``attempt`` and name its call, as ``actions.call`` does up
    to the call: the climb (the step's log names the instances it reset, ``__tether_rebuild__``
    rebuilds them with the step's ``args``/``kwargs``), the service made again if its cluster lacks
    it. ``timeout``/``deadline``/``missing_hint`` as in ``actions.call`` (``deadline`` is
    ``time.monotonic()``)."""
    ladder = as_ladder(ladder)
    svc, climbed = service_on_rung(service, ladder, attempt, logger, missing_hint)
    env = svc.env_name
    if svc.kind == "instance" and method in (None, "", "call"):
        raise errors.ConfigError(f"service {svc.name!r} is an instance of {svc.target}: name the "
                                 "method to call", service=svc.name)
    what = f"{service}.{method}" if method and method != "call" else service
    with _oom_guard(what, svc.cluster, svc.name, ladder, attempt, env), _remote_logs(logger):
        def left() -> float | None:
            return time_left(timeout, deadline, what, svc.cluster)

        resets.rebuild_reset(climbed, svc.name, method, args, kwargs, attempt, logger, left)
        if named_cluster(svc.cluster).get(svc.name, remote=True) is None:  # a new machine, a move
            svc.make()  # here, where a constructor that runs out of memory climbs on the retry
            resets.remade(svc, method, args, kwargs, attempt, climbed.rung, logger, left)(
                f"cluster {svc.cluster!r} did not hold it")
    return _named(svc.cluster, svc.name, method or "call", what, timeout, deadline, call_id, env)


def prepare_function(fn: Any, cluster: str, *, ladder: Ladder | Sequence[Any] | None = None,
                     attempt: int = 1, logger: Logger | None = None, name: str | None = None,
                     timeout: float | None = None, deadline: float | None = None,
                     call_id: str | None = None, missing_hint: str | None = None) -> DeferredCall:
    """Deploy ``fn`` by value on ``cluster`` at the rung of ``attempt`` and name its call, as
    ``actions.run_function`` does up to the call (a saved cluster that is down is brought up; an
    unsaved one fails, ``missing_hint`` saying how)."""
    with placed_function(fn, cluster, ladder=ladder, attempt=attempt, logger=logger, name=name,
                         timeout=timeout, deadline=deadline, missing_hint=missing_hint) as (_, cluster, name):
        pass
    return _named(cluster, name, "call", fn.__name__, timeout, deadline, call_id, DEFAULT_ENV)


def _named(cluster: str, service: str, method: str, what: str, timeout: float | None,
           deadline: float | None, call_id: str | None, env: str | None) -> DeferredCall:
    left = time_left(check_timeout(timeout, "timeout"), deadline, what, cluster)
    call_id = call_id or new_call_id()
    return DeferredCall(cluster=cluster, service=service, method=method, call_id=call_id, what=what,
                        deadline=None if left is None else time.time() + left, timeout=left,
                        url=f"{named_cluster(cluster).client.url}/_tether/calls/{call_id}", env=env)


def encode_arguments(args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> str:
    """The arguments as the call's message (base64), pickled here, where the user's code is."""
    body = wire.encode_bytes(wire.CALL, wire.dumps((tuple(args), dict(kwargs or {})), "the arguments"))
    if len(body) > MAX_ARGUMENT_BYTES:
        raise errors.ConfigError(
            f"the arguments of this deferred call pickle to {len(body)} bytes: they are stored in the "
            f"orchestrator's database while the step is parked (at most {MAX_ARGUMENT_BYTES}). Keep the "
            "data on the cluster and pass names (a service, a key), or run the step without deferring.")
    return base64.b64encode(body).decode("ascii")


# -- 2. anywhere that reaches the cluster ------------------------------------------------------------


def connect(cluster: str) -> Cluster:
    """The cluster of a deferred call, connected (blocking: run it in a thread); never brought up:
    a cluster that went down took its call with it."""
    handle = named_cluster(cluster)
    if not handle.is_up():
        raise errors.ConnectionError(
            f"cluster {cluster!r} is down: it went down while a deferred call ran on it (torn down, or "
            "its daemon stopped), and the call with it. Bring it up and run the step again.",
            cluster=cluster)
    handle.client  # noqa: B018 - connects and checks the protocol
    return handle


async def follow(cluster: Cluster, call: DeferredCall, arguments: str, logger: Logger | None = None,
                 poll: float = POLL_SECONDS) -> dict[str, Any]:
    """Start ``call`` (unless it was started already) and wait for its end, within its deadline.

    Returns the outcome, JSON: ``{"status": "done"}`` (its result, or its error, is kept by the
    daemon: ``finish``), ``"timeout"`` (it was cancelled past its deadline), or ``"error"`` (it
    never started, or its daemon lost it), with ``message`` and ``type`` (a tether error's name).
    """
    client, call_id = cluster.client, call["call_id"]
    try:
        try:
            ended = await following.wait(client, call_id, 0)
        except errors.NotFoundError:
            ended = None  # the daemon does not know it: this is its start
        if ended is None:
            _say(logger, f"calling {call['what']} on cluster {call['cluster']!r} (call id {call_id})")
            if await _start(client, call, arguments, logger):
                return {"status": "done"}
        elif not ended:
            _say(logger, f"call {call_id} of {call['what']} was started earlier (this waiter was "
                         "restarted): waiting for its end; its output from here on is only in its "
                         f"worker's log (`tether logs --cluster {call['cluster']} --env ENV`)")
        return await _wait(client, call, poll, logger)
    except errors.TetherError as exc:
        return failure(exc)


async def _start(client, call: DeferredCall, arguments: str, logger: Logger | None) -> bool:
    """Start and follow the call: True once it ended, False if the connection was lost (wait)."""
    body = base64.b64decode(arguments)
    try:
        with _remote_logs(logger):
            async with asyncio.timeout(_left(call)) as scope:
                await following.follow(client, call["service"], call["method"], body, call["call_id"])
        return True
    except TimeoutError:
        if not scope.expired():
            raise
        return False  # past the deadline: _wait cancels it
    except errors.ConnectionError as exc:
        _say(logger, f"lost the connection to call {call['call_id']} ({exc}): waiting for it by id")
        return False


async def _wait(client, call: DeferredCall, poll: float, logger: Logger | None) -> dict[str, Any]:
    lost = 0
    while True:
        left = _left(call)
        if left is not None and left <= 0:
            return await _timed_out(client, call)
        try:
            if await following.wait(client, call["call_id"], poll if left is None else min(poll, left)):
                return {"status": "done"}
            lost = 0
        except errors.ConnectionError:
            lost += 1
            if lost > RECONNECTS:
                raise
            _say(logger, f"cannot reach cluster {call['cluster']!r}: asking again in {RECONNECT_SECONDS:.0f} s")
            await asyncio.sleep(RECONNECT_SECONDS)
        except errors.NotFoundError as exc:
            if isinstance(exc, errors.ResultExpiredError):
                raise
            raise errors.ConnectionError(
                f"the daemon of cluster {call['cluster']!r} no longer knows call {call['call_id']} of "
                f"{call['what']}: it was restarted (or the cluster resized) while the call ran, and the "
                "call was lost with it. Run the step again.", cluster=call["cluster"]) from exc


def _left(call: DeferredCall) -> float | None:
    return None if call["deadline"] is None else call["deadline"] - time.time()


async def _timed_out(client, call: DeferredCall) -> dict[str, Any]:
    reply = await asyncio.to_thread(client.cancel, call["call_id"], quiet=True, timeout=CANCEL_TIMEOUT)
    cancelled = bool(reply.get("cancelled"))
    return {"status": "timeout", "type": "CallTimeoutError", "cancelled": cancelled, "message": (
        f"the call to {call['what']} on cluster {call['cluster']!r} (call id {call['call_id']}) did not "
        f"finish within its timeout of {call['timeout']:.4g} s; tether asked the cluster to cancel it "
        f"({'cancelled' if cancelled else 'the daemon did not take the cancel'}). If it needs longer, "
        "raise the step's timeout (its orchestrator's, or TETHER_CALL_TIMEOUT).")}


def failure(exc: BaseException) -> dict[str, Any]:
    """An outcome for a call that could not be followed (JSON: it crosses processes)."""
    message = exc.message if isinstance(exc, errors.TetherError) else str(exc)
    return {"status": "error", "type": type(exc).__name__, "message": message}


# -- 3. in the step's process again ---------------------------------------------------------------


def finish(call: DeferredCall, outcome: dict[str, Any], *, ladder: Ladder | Sequence[Any] | None = None,
           attempt: int = 1) -> Any:
    """The call's result, or its error raised as ``actions.call`` raises it (an out-of-memory
    error says what the next rung is; a timeout is ``tether.CallTimeoutError``)."""
    status = outcome.get("status")
    context = {"cluster": call["cluster"], "service": call["service"], "call_id": call["call_id"]}
    if status == "timeout":
        raise errors.CallTimeoutError(outcome["message"], timeout=call["timeout"],
                                      cancelled=outcome.get("cancelled"), **context)
    if status != "done":
        kind = getattr(errors, str(outcome.get("type")), None)
        kind = kind if isinstance(kind, type) and issubclass(kind, errors.TetherError) else errors.TetherError
        raise kind(str(outcome.get("message") or f"the deferred call ended with {outcome!r}"), **context)
    with _oom_guard(call["what"], call["cluster"], call["service"], as_ladder(ladder), attempt,
                    call.get("env")):
        return named_cluster(call["cluster"]).result(call["call_id"])


def cancel(call: DeferredCall) -> bool:
    """Stop the call (the step was killed); False if it had ended or its cluster is down."""
    handle = named_cluster(call["cluster"])
    if not handle.is_up():
        return False
    return handle.cancel(call["call_id"])
