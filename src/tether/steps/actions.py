"""What a pipeline step does with tether: the four actions every orchestrator provider wraps.

1. ``bring_up(name, ...)``: bring up (or reuse) a named cluster and save it, so later steps, in
   other processes, find it by name.
2. ``deploy(target, name, cluster)``: deploy a function or a class instance by import path under a
   name, and save how it was made (``tether.steps.services.Service``).
3. ``call(service, method, ladder=..., attempt=n)``: call it. With a ladder, the ``n``-th attempt
   runs on the rung chosen for it (the cluster is resized, or the service moves to the rung's
   cluster, and is made again there); an out-of-memory failure raises ``tether.OutOfMemoryError``
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
from tether.core.invoke import check_timeout, default_timeout
from tether.errors import CallTimeoutError, ConfigError, OutOfMemoryError
from tether.steps import upscale
from tether.steps.ladder import Ladder, as_ladder
from tether.steps.services import Service, target_of


class Logger(Protocol):
    def info(self, msg: str, *args: Any) -> Any: ...


def _say(logger: Logger | None, message: str) -> None:
    if logger is not None:
        logger.info("[tether] %s", message)


# -- 1. clusters ------------------------------------------------------------------------------------


def bring_up(name: str, *, launcher: str | None = None, spec: dict[str, Any] | None = None,
             ladder: Ladder | Sequence[Any] | None = None, logger: Logger | None = None):
    """The named cluster, up and saved. Without ``launcher``/``spec``/``ladder`` it must be saved
    already (or be ``"local"``); with a ladder and no spec, it starts on the first rung."""
    ladder = as_ladder(ladder)
    spec = dict(spec or {})
    if ladder is not None and not spec and launcher is None:
        first = ladder[0]
        if "cluster" in first:  # the first rung is a cluster defined elsewhere: that one
            name = first["cluster"]
        else:
            spec = {k: v for k, v in first.items() if k != "cluster"}
    if launcher is None and not spec:
        cluster = named_cluster(name)
    else:
        cluster = named_cluster(name=name, launcher=launcher or "local", **spec)
    _say(logger, f"bringing up cluster {cluster.name!r} ({cluster.launcher_name}, "
                 f"{compute.describe(cluster.spec) if cluster.spec else 'default size'})")
    cluster.up_if_not()
    cluster.save()
    return cluster


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
         timeout: float | None = None, deadline: float | None = None) -> Any:
    """Call ``service`` (its ``method``, or the function) on the rung of ``attempt``.

    ``call_id`` names the call so that ``cancel(service, call_id)`` can stop it from elsewhere.
    ``kwargs`` are the function's own (a ``timeout`` among them reaches it untouched).

    Args:
        timeout: seconds the remote call may run, from when it is sent (moving the service to its
            rung first is not counted). None: ``TETHER_CALL_TIMEOUT``, else no timeout.
        deadline: when the step must be over (``time.monotonic()``), set by a provider from the
            orchestrator's own task timeout (``native_deadline``): the call gets what is left of
            it when it is sent, if that is less than ``timeout``.

    Raises:
        tether.OutOfMemoryError: the call ran out of memory; ``exhausted`` says whether a bigger
            rung is left, ``next_rung`` is it, ``rungs_tried`` lists the rungs so far.
        tether.CallTimeoutError: the call outlived its timeout and was cancelled (no rung climbed).
        Exception: any other failure, as the remote code raised it.
    """
    ladder = as_ladder(ladder)
    timeout = check_timeout(timeout, "timeout")
    svc = Service.load(service)
    if ladder is not None:
        moved = climb(svc.cluster, ladder, attempt, logger, what=f"service {service!r}")
        if moved != svc.cluster:
            svc = svc.moved_to(moved)
    what = f"{service}.{method}" if method and method != "call" else service
    with _oom_guard(what, svc.cluster, svc.name, ladder, attempt), _remote_logs(logger):
        left = time_left(timeout, deadline, what, svc.cluster)
        return svc.call(method, args, kwargs, call_id=call_id, timeout=left)


def run_function(fn: Any, cluster: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                 *, ladder: Ladder | Sequence[Any] | None = None, attempt: int = 1,
                 logger: Logger | None = None, name: str | None = None,
                 timeout: float | None = None, deadline: float | None = None) -> Any:
    """Run a function (sent by value: it may live in a DAG file) on ``cluster`` at the rung of
    ``attempt``, and return its result. ``timeout``, ``deadline`` and failures as in ``call``."""
    ladder = as_ladder(ladder)
    timeout = check_timeout(timeout, "timeout")
    if ladder is not None:
        cluster = climb(cluster, ladder, attempt, logger, what=f"function {fn.__name__!r}")
    name = name or f"task-{fn.__name__}"
    with _oom_guard(fn.__name__, cluster, name, ladder, attempt), _remote_logs(logger):
        remote = function(fn, name=name, serialize=True).to(named_cluster(cluster))
        left = time_left(timeout, deadline, fn.__name__, cluster)
        return remote(*args, **(kwargs or {}), call_timeout=left)


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
def _oom_guard(what: str, cluster: str, service: str, ladder: Ladder | None, attempt: int):
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
        raise _oom(exc, cluster, service, what, ladder, attempt) from exc


def cancel(service: str, call_id: str) -> bool:
    """Stop the call ``call_id`` of ``service`` (e.g. from an orchestrator's ``on_kill``)."""
    return Service.load(service).cancel(call_id)


def current_spec(cluster: str) -> dict[str, Any]:
    """A cluster as a compute spec: its name and its launcher's spec."""
    return {**named_cluster(cluster).spec, "cluster": cluster}


def rung_for(ladder: Ladder, attempt: int, current: dict[str, Any]) -> dict[str, Any]:
    """The rung of ``attempt``: the ``attempt``-th rung, and on a retry (which follows an OOM on
    ``current``) at least the rung after ``current``."""
    target = ladder.for_attempt(attempt)
    if attempt > 1:
        after = ladder.next(current, "oom")
        if after is not None and (ladder.index(after) or 0) > (ladder.index(target) or 0):
            target = after
    return target


def covers(current: dict[str, Any], rung: dict[str, Any]) -> bool:
    """Whether the cluster ``current`` is already at least ``rung`` (a step never shrinks it)."""
    if "cluster" in rung:
        return current.get("cluster") == rung["cluster"]
    for key, wanted in rung.items():
        have = current.get(key)
        if have is None:
            return False
        if key in ("memory", "cpus"):
            parse = compute.parse_memory if key == "memory" else compute.parse_cpus
            if parse(have) < parse(wanted):
                return False
        elif not compute.same_value(key, have, wanted):
            return False
    return True


def climb(cluster: str, ladder: Ladder, attempt: int, logger: Logger | None = None,
          what: str = "the step") -> str:
    """Put the work of ``attempt`` on its rung: resize ``cluster``, or pick the rung's cluster.
    Returns the name of the cluster to run on."""
    current = current_spec(cluster)
    rung = rung_for(ladder, attempt, current)
    if covers(current, rung):
        return cluster
    position = f"rung {(ladder.index(rung) or 0) + 1} of {len(ladder)}"
    if "cluster" in rung:
        _say(logger, f"attempt {attempt}: {what} moves from cluster {cluster!r} to cluster "
                     f"{rung['cluster']!r} ({position})")
        named_cluster(rung["cluster"]).up_if_not()
        return rung["cluster"]
    handle = named_cluster(cluster)
    _say(logger, f"attempt {attempt}: cluster {cluster!r} goes from "
                 f"{compute.describe(handle.spec) if handle.spec else 'its default size'} to "
                 f"{compute.describe(rung)} ({position}); its services are made again there")
    resize(handle, rung)
    return cluster


def resize(cluster, rung: dict[str, Any]):
    """The same named cluster on another size: torn down, redefined with ``rung``, saved, up."""
    spec = {**cluster.spec, **{k: v for k, v in rung.items() if k != "cluster"}}
    resized = named_cluster(name=cluster.name, launcher=cluster.launcher_name, **spec)
    if cluster.is_up():
        cluster.teardown()
    resized.up_if_not()
    resized.save()
    return resized


def _oom(exc: BaseException, cluster: str, service: str, what: str, ladder: Ladder | None,
         attempt: int) -> OutOfMemoryError:
    base = upscale.out_of_memory(exc)
    why = getattr(base, "oom_reason", None) or base.message
    here = current_spec(cluster)
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
                  timeout: float | None = None, deadline: float | None = None) -> Any:
    """Call the function deployed as ``name`` on ``cluster`` (``deploy()`` runs first when given:
    the caller deploys once per cluster, its own way), where the caller put this attempt.

    For callers that choose the cluster of each rung themselves (Prefect's task runner gives each
    rung its own cluster, so that one task's climb never stops the tasks running beside it): no
    cluster is resized here. The deploy's and the call's remote output go to ``logger``; an
    out-of-memory failure is raised as ``tether.OutOfMemoryError`` saying what comes next on
    ``ladder`` (``next_rung``, ``exhausted``); ``call_id``, ``timeout`` and ``deadline`` as in
    ``call``."""
    ladder = as_ladder(ladder)
    timeout = check_timeout(timeout, "timeout")
    what = what or name
    with _oom_guard(what, cluster, name, ladder, attempt), _remote_logs(logger):
        if deploy is not None:
            deploy()
        left = time_left(timeout, deadline, what, cluster)
        return named_cluster(cluster).client.call(name, "call", list(args), dict(kwargs or {}),
                                                  call_id=call_id, timeout=left)
