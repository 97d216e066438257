"""What a pipeline step does with tether: the four actions every orchestrator provider wraps.

1. ``bring_up(name, ...)``: bring up (or reuse) a named cluster and save it, so later steps, in
   other processes, find it by name.
2. ``deploy(target, name, cluster)``: deploy a function or a class instance by import path under a
   name, and save how it was made (``tether.steps.services.Service``).
3. ``call(service, method, ladder=..., attempt=n)``: call it. With a ladder, the ``n``-th attempt
   runs on the rung chosen for it (``tether.steps.climb``: the service's env gets the rung's
   limits on a local cluster, else the service moves to the rung's cluster or the whole cluster is
   resized; the step's log names every instance whose state that reset, and those that define
   ``__tether_rebuild__`` are rebuilt: ``tether.steps.resets``); an out-of-memory failure raises
   ``tether.OutOfMemoryError``
   saying whether a bigger rung is left (``exhausted``) and which rungs were tried. Any other
   failure is raised as it is: the providers fail those without a retry. A call that outlives its
   ``timeout`` (or the orchestrator's ``deadline``) is cancelled and raises
   ``tether.CallTimeoutError``: not an out-of-memory error, so no rung is climbed for it.
4. ``teardown(name)``.

Providers map these to native mechanisms (Airflow's ``try_number``, Prefect's ``run_count``,
Dagster's ``RetryRequested``); the rung of an attempt depends only on the attempt number and the
cluster as it is, so a retry in another process picks the same rung. A retry follows an OOM on the
cluster as it stands, so a retry never stays below the rung after it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tether import compute
from tether.client.daemon_client import new_call_id  # noqa: F401 - providers name their calls
from tether.client.logsink import remote_logs_to
from tether.core.cluster import cluster as named_cluster
from tether.core.function import function
from tether.core.images import DEFAULT_ENV
from tether.core.invoke import check_timeout, default_timeout
from tether.core.registry import store
from tether.errors import CallTimeoutError, ConfigError, NotFoundError, OutOfMemoryError
from tether.steps import resets, upscale
from tether.steps.climb import Climb, climb, covers, current_spec
from tether.steps.ladder import Ladder, as_ladder
from tether.steps.services import Service, target_of

#: what a step that runs a function on a cluster no step brought up is told to do, when its
#: provider gives no hint of its own
RUN_HINT = ("Bring it up in an earlier step (your pipeline's tether cluster step, or "
            "tether.steps.actions.bring_up(name, launcher=..., ladder=...)), or define and save it "
            "once: tether.cluster(name=NAME, launcher='local').save().")


class Logger(Protocol):
    def info(self, msg: str, *args: Any) -> Any: ...


def _say(logger: Logger | None, message: str) -> None:
    if logger is not None:
        logger.info("[tether] %s", message)


# -- 1. clusters ------------------------------------------------------------------------------------


def bring_up(name: str, *, launcher: str | None = None, spec: dict[str, Any] | None = None,
             ladder: Ladder | Sequence[Any] | None = None, logger: Logger | None = None):
    """The named cluster, up and saved. Without ``launcher``/``spec``/``ladder`` it must be saved
    already (or be ``"local"``). With a ladder and no spec, a saved cluster of that name that is up
    on any rung (or above the first) is kept as it is: a later run, or another step process of the
    same run, never shrinks a cluster that climbed. Otherwise it starts on the first rung."""
    ladder = as_ladder(ladder)
    spec = compute.normalize(spec) if spec else {}
    if ladder is not None and not spec and launcher is None:
        first = ladder[0]
        if "cluster" in first:  # the first rung is a cluster defined elsewhere: that one
            name = first["cluster"]
        else:
            running = _running(name)
            if running is not None and covers({**running.spec, "cluster": name}, first):
                _say(logger, f"cluster {name!r} is up at {compute.describe(running.spec)}: kept as it is")
                return running
            spec = {k: v for k, v in first.items() if k != "cluster"}
    if launcher is None and not spec:
        cluster = named_cluster(name)
    else:
        cluster = named_cluster(name=name, launcher=launcher, **spec)  # None: from the spec
    _say(logger, f"bringing up cluster {cluster.name!r} ({cluster.launcher_name}, "
                 f"{compute.describe(cluster.spec) if cluster.spec else 'default size'})")
    cluster.up_if_not()
    cluster.save()
    return cluster


def _running(name: str):
    """The saved cluster ``name`` if it is up, else None (never starts anything)."""
    if not store.exists(name):  # the team registry's, when one is configured
        return None
    try:
        handle = named_cluster(name)
        return handle if handle.is_up() else None
    except ConfigError:
        return None


def teardown(name: str, *, logger: Logger | None = None) -> None:
    """Tear the named cluster down (its saved config stays, so it can be brought up again)."""
    cluster = named_cluster(name)
    _say(logger, f"tearing down cluster {name!r}")
    cluster.teardown()


# -- 2. services ------------------------------------------------------------------------------------


def deploy(target: Any, name: str, cluster: str, *, args: Sequence[Any] = (),
           kwargs: dict[str, Any] | None = None, env: Any = None,
           logger: Logger | None = None) -> Service:
    """Deploy ``target`` (``"package.module:Name"``, a function or a class) as service ``name``."""
    named_cluster(cluster)  # a NotFoundError naming the cluster, before anything is imported
    _say(logger, f"deploying {target_of(target)} as service {name!r} on cluster {cluster!r}")
    with _remote_logs(logger):
        return Service.deploy(target, name=name, cluster=cluster, args=args, kwargs=kwargs, env=env)


# -- 3. calls ---------------------------------------------------------------------------------------


def call(service: str, method: str | None = None, args: Sequence[Any] = (),
         kwargs: dict[str, Any] | None = None, *, ladder: Ladder | Sequence[Any] | None = None,
         attempt: int = 1, logger: Logger | None = None, call_id: str | None = None,
         timeout: float | None = None, deadline: float | None = None,
         missing_hint: str | None = None) -> Any:
    """Call ``service`` (its ``method``, or the function) on the rung of ``attempt``.

    ``call_id`` names the call so that ``cancel(service, call_id)`` can stop it from elsewhere.
    ``kwargs`` are the function's own (a ``timeout`` among them reaches it untouched).

    Args:
        timeout: seconds the remote call may run, from when it is sent (moving the service to its
            rung first is not counted). None: ``TETHER_CALL_TIMEOUT``, else no timeout.
        deadline: when the step must be over (``time.monotonic()``), set by a provider from the
            orchestrator's own task timeout (``native_deadline``): the call gets what is left of
            it when it is sent, if that is less than ``timeout``.
        missing_hint: what a service that was never deployed tells the user to do, in the
            provider's words (e.g. "Add a TetherDeployOperator task before this one."); None:
            a hint that names no orchestrator.

    Raises:
        tether.OutOfMemoryError: the call ran out of memory; ``exhausted`` says whether a bigger
            rung is left, ``next_rung`` is it, ``rungs_tried`` lists the rungs so far.
        tether.CallTimeoutError: the call outlived its timeout and was cancelled (no rung climbed).
        tether.NotFoundError: no service of that name was deployed (``missing_hint`` says what to do).
        Exception: any other failure, as the remote code raised it (``__tether_rebuild__``'s too).
    """
    ladder = as_ladder(ladder)
    timeout = check_timeout(timeout, "timeout")
    svc, climbed = service_on_rung(service, ladder, attempt, logger, missing_hint)
    env = svc.env_name
    what = f"{service}.{method}" if method and method != "call" else service
    with _oom_guard(what, svc.cluster, svc.name, ladder, attempt, env), _remote_logs(logger):
        def left() -> float | None:
            return time_left(timeout, deadline, what, svc.cluster)

        resets.rebuild_reset(climbed, svc.name, method, args, kwargs, attempt, logger, left)
        on_remade = resets.remade(svc, method, args, kwargs, attempt, climbed.rung, logger, left)
        return svc.call(method, args, kwargs, call_id=call_id, timeout=left(), on_remade=on_remade)


def service_on_rung(service: str, ladder: Ladder | None, attempt: int, logger: Logger | None,
                    missing_hint: str | None) -> tuple[Service, Climb]:
    """The saved ``service``, put on the rung of ``attempt`` (moved with its cluster when the rung
    is another cluster; the step's log names the instances the climb reset), and the climb."""
    svc = Service.load(service, hint=missing_hint)
    climbed = Climb(svc.cluster)
    if ladder is not None:
        climbed = climb(svc.cluster, ladder, attempt, _teller(logger), what=f"service {service!r}",
                        env=svc.env_name)
        if climbed.cluster != svc.cluster:
            svc = svc.moved_to(climbed.cluster)
        resets.tell(logger, climbed)
    return svc, climbed


def run_function(fn: Any, cluster: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                 *, ladder: Ladder | Sequence[Any] | None = None, attempt: int = 1,
                 logger: Logger | None = None, name: str | None = None,
                 timeout: float | None = None, deadline: float | None = None,
                 missing_hint: str | None = None) -> Any:
    """Run a function (sent by value: it may live in a DAG file) on ``cluster`` at the rung of
    ``attempt``, and return its result. ``timeout``, ``deadline`` and failures as in ``call``.

    A cluster that is saved (or ``"local"``) and down is brought up first, at its saved size
    (a ladder then puts the function on its rung). One that no step brought up and that is not
    saved fails with a NotFoundError saying how to bring it up (``missing_hint``: in the
    provider's words)."""
    timeout = check_timeout(timeout, "timeout")
    with placed_function(fn, cluster, ladder=ladder, attempt=attempt, logger=logger, name=name,
                         timeout=timeout, deadline=deadline, missing_hint=missing_hint) as (remote, cluster, _):
        left = time_left(timeout, deadline, fn.__name__, cluster)
        return remote(*args, **(kwargs or {}), call_timeout=left)


@contextlib.contextmanager
def placed_function(fn: Any, cluster: str, *, ladder: Ladder | Sequence[Any] | None = None, attempt: int = 1,
                    logger: Logger | None = None, name: str | None = None, timeout: float | None = None,
                    deadline: float | None = None, missing_hint: str | None = None):
    """``fn`` deployed by value on ``cluster`` at the rung of ``attempt``: yields ``(remote,
    cluster, name)`` (the cluster it landed on, after a move) inside the out-of-memory guard and
    the remote-log capture, so that what the caller does with it (call it now, or name a call
    for later: ``steps.deferred``) is covered by them."""
    ladder = as_ladder(ladder)
    _up_for_run(cluster, fn.__name__, logger, missing_hint)
    climbed = Climb(cluster)
    if ladder is not None:
        climbed = climb(cluster, ladder, attempt, _teller(logger), what=f"function {fn.__name__!r}",
                        env=DEFAULT_ENV)
        cluster = climbed.cluster
        resets.tell(logger, climbed)
    name = name or f"task-{fn.__name__}"
    with _oom_guard(fn.__name__, cluster, name, ladder, attempt, DEFAULT_ENV), _remote_logs(logger):
        resets.rebuild_reset(climbed, None, None, (), None, attempt, logger,
                             lambda: time_left(timeout, deadline, fn.__name__, cluster))
        yield function(fn, name=name, serialize=True).to(named_cluster(cluster)), cluster, name


def _up_for_run(cluster: str, what: str, logger: Logger | None, hint: str | None) -> None:
    """``cluster`` up for a function step: brought up if saved and down; else what to do."""
    try:
        handle = named_cluster(cluster)
    except NotFoundError:
        raise NotFoundError(
            f"function {what!r} runs on cluster {cluster!r}, which no step brought up and which is "
            f"not saved. {hint or RUN_HINT.replace('NAME', repr(cluster))}", cluster=cluster) from None
    if not handle.is_up():
        _say(logger, f"cluster {cluster!r} is down: bringing it up ({handle.launcher_name}, "
                     f"{compute.describe(handle.spec) if handle.spec else 'default size'})")
        handle.up_if_not()


def _teller(logger: Logger | None):
    return lambda message: _say(logger, message)


#: how long before an orchestrator's own task timeout tether's call timeout fires, as a share of
#: it (at most MARGIN_SECONDS): tether's goes first, cancels the remote call and fails cleanly
MARGIN_SHARE, MARGIN_SECONDS = 0.1, 2.0


def native_deadline(seconds: float | None, started: float) -> float | None:
    """The deadline (``time.monotonic()``) of a step whose orchestrator stops it ``seconds`` after
    ``started`` (Airflow's ``execution_timeout``, Prefect's ``timeout_seconds``), a little before
    the orchestrator's own: then tether's timeout fires first, cancels the remote call and raises
    CallTimeoutError (the orchestrator's would interrupt the wait without cancelling, or let a
    retry climb the ladder)."""
    if not seconds or seconds <= 0:
        return None
    return started + seconds - min(MARGIN_SECONDS, MARGIN_SHARE * seconds)


def time_left(timeout: float | None, deadline: float | None, what: str, cluster: str) -> float | None:
    """The timeout of a step's call as it is sent: ``timeout`` (else the process default), cut
    to what is left before ``deadline``."""
    if timeout is None:
        timeout = default_timeout()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise CallTimeoutError(
            f"no time was left to call {what} on cluster {cluster!r}: the step's own timeout (its "
            "orchestrator's) ran out before the call could start (bringing the cluster up or moving "
            "to a bigger rung took it). Give the task a longer timeout.", cluster=cluster,
            service=what, timeout=0.0, cancelled=False)
    return left if timeout is None else min(timeout, left)


@contextlib.contextmanager
def _oom_guard(what: str, cluster: str, service: str, ladder: Ladder | None, attempt: int,
               env: str | None = None):
    """Re-raise an out-of-memory failure (as the hook classifies it) as a tether.OutOfMemoryError
    that says what comes next; anything else passes as it is."""
    if attempt < 1:
        raise ConfigError(f"attempts count from 1, not {attempt}")
    try:
        yield
    except Exception as exc:
        context = {"cluster": cluster, "service": service, "attempt": attempt}
        if upscale.classify(exc, context) != "oom":
            raise
        raise _oom(exc, cluster, service, what, ladder, attempt, env) from exc


def cancel(service: str, call_id: str, missing_hint: str | None = None) -> bool:
    """Stop the call ``call_id`` of ``service`` (e.g. from an orchestrator's ``on_kill``)."""
    return Service.load(service, hint=missing_hint).cancel(call_id)


def _oom(exc: BaseException, cluster: str, service: str, what: str, ladder: Ladder | None,
         attempt: int, env: str | None = None) -> OutOfMemoryError:
    base = upscale.out_of_memory(exc)
    why = getattr(base, "oom_reason", None) or base.message
    here = current_spec(cluster, env)
    fields: dict[str, Any] = {"cluster": cluster, "service": service, "attempt": attempt, "rung": here}
    on = f"cluster {cluster!r} ({upscale.describe_oom(base)})"
    if ladder is None:
        return upscale.out_of_memory(
            exc, f"{what} ran out of memory on {on}: {why}. No ladder says what to try next.",
            exhausted=True, next_rung=None, rungs_tried=[], **fields)
    tried = ladder.tried(attempt)
    index = ladder.index(here)
    if index is not None and ladder.index(tried[-1]) != index:
        tried = [*tried[:-1], ladder[index]]  # the cluster was bigger than this attempt's rung
    after = ladder.next(here, "oom")
    if after is None:
        listing = ", ".join(f"{compute.describe(r)} (attempt {i + 1})" for i, r in enumerate(tried))
        message = (f"{what} ran out of memory on every rung of the ladder: tried {listing}. "
                   f"The last, on {on}: {why.rstrip('.')}. Add a bigger rung to the ladder, or "
                   f"give the step less to hold at once.")
    else:
        message = (f"{what} ran out of memory on {on}, attempt {attempt} on "
                   f"{compute.describe(tried[-1])}: {why}. The next attempt runs on {compute.describe(after)}.")
    return upscale.out_of_memory(exc, message, exhausted=after is None, next_rung=after,
                                 rungs_tried=tried, **fields)


@contextlib.contextmanager
def _remote_logs(logger: Logger | None):
    if logger is None:
        yield
        return
    with remote_logs_to(lambda line, stream: logger.info("%s", line)):
        yield


def call_deployed(name: str, cluster: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                  *, deploy: Callable[[], Any] | None = None, what: str | None = None,
                  ladder: Ladder | Sequence[Any] | None = None, attempt: int = 1,
                  logger: Logger | None = None, call_id: str | None = None,
                  timeout: float | None = None, deadline: float | None = None,
                  env: str | None = None) -> Any:
    """Call the function deployed as ``name`` on ``cluster`` (``deploy()`` runs first when given:
    the caller deploys once per cluster, its own way), where the caller put this attempt.

    For callers that choose the cluster of each rung themselves (Prefect's task runner gives each
    rung its own cluster, so that one task's climb never stops the tasks running beside it): no
    cluster is resized here. The deploy's and the call's remote output go to ``logger``; an
    out-of-memory failure is raised as ``tether.OutOfMemoryError`` saying what comes next on
    ``ladder`` (``next_rung``, ``exhausted``, read from ``env``'s limits when it has its own);
    ``call_id``, ``timeout`` and ``deadline`` as in ``call``."""
    ladder = as_ladder(ladder)
    timeout = check_timeout(timeout, "timeout")
    what = what or name
    with _oom_guard(what, cluster, name, ladder, attempt, env), _remote_logs(logger):
        if deploy is not None:
            deploy()
        left = time_left(timeout, deadline, what, cluster)
        return named_cluster(cluster).client.call(name, "call", list(args), dict(kwargs or {}),
                                                  call_id=call_id, timeout=left)
