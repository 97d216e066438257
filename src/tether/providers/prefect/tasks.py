"""Prefect tasks for tether's four pipeline actions, and the retry condition for out-of-memory.

``call_service`` retries only an out-of-memory failure, and only while its ladder has a rung
left (``retry_on_oom``); the rung of each run comes from the task run's ``run_count``. Its
``retries`` is a cap (a ladder of up to 10 rungs); ``call_service.with_options(retries=...)``
raises it.

Its timeout is Prefect's own ``timeout_seconds`` (``call_service.with_options(timeout_seconds=60)``):
tether gives the remote call what is left of it, less a small margin (10%, at most 2 s), so that
tether's fires first, cancels the remote call and fails the run with ``tether.CallTimeoutError``
(not retried: it is not an out-of-memory error). Prefect's own timeout cannot interrupt a call
waiting in a worker thread, nor does it cancel the remote call. Without ``timeout_seconds``,
``TETHER_CALL_TIMEOUT`` seconds apply if set.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from tether.providers.prefect.blocks import (
    MISSING_SERVICE_HINT,
    TetherCluster,
    TetherService,
    in_registry,
)

MAX_RUNGS = 10


def retry_on_oom(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry an out-of-memory failure while a bigger rung is left."""
    from tether.errors import OutOfMemoryError

    error = state.data
    return isinstance(error, OutOfMemoryError) and not error.fields.get("exhausted", True)


def _deadline(started: float) -> float | None:
    """A little before the task's ``timeout_seconds`` (``actions.native_deadline``), if it has one."""
    from prefect.context import TaskRunContext

    from tether.steps import actions

    context = TaskRunContext.get()
    seconds = getattr(context.task, "timeout_seconds", None) if context else None
    return actions.native_deadline(seconds, started)


def _run_count() -> int:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return max(1, context.task_run.run_count) if context and context.task_run else 1


@task(name="tether-bring-up")
def bring_up_cluster(cluster: TetherCluster | str) -> str:
    """Bring a cluster up (a block, or the name of a saved cluster); returns its name."""
    block = cluster if isinstance(cluster, TetherCluster) else TetherCluster(cluster_name=cluster)
    return block.up(logger=get_run_logger())


@task(name="tether-deploy")
def deploy_service(service: TetherService) -> str:
    """Deploy a service from its block; returns its name."""
    return service.deploy(logger=get_run_logger())


@task(name="tether-call", retries=MAX_RUNGS - 1, retry_condition_fn=retry_on_oom)
def call_service(service: TetherService | str, method: str | None = None, args: list[Any] | None = None,
                 kwargs: dict[str, Any] | None = None, ladder: list[Any] | None = None) -> Any:
    """Call a named service's method (or the function); an OOM retries on the next rung. Past the
    task's ``timeout_seconds`` (a little before it) the remote call is cancelled and the run fails
    with ``tether.CallTimeoutError``."""
    from tether.steps import actions

    deadline = _deadline(time.monotonic())
    name = service.service_name if isinstance(service, TetherService) else service
    # a block's team registry; a name: the process's registry
    with in_registry(service) if isinstance(service, TetherService) else contextlib.nullcontext():
        return actions.call(name, method, args or [], kwargs or {}, ladder=ladder,
                            attempt=_run_count(), logger=get_run_logger(), deadline=deadline,
                            missing_hint=MISSING_SERVICE_HINT)


@task(name="tether-teardown")
def teardown_cluster(cluster: TetherCluster | str) -> None:
    """Tear a cluster down (a block, or a cluster's name)."""
    block = cluster if isinstance(cluster, TetherCluster) else TetherCluster(cluster_name=cluster)
    block.teardown(logger=get_run_logger())
