"""Calling a tether service from an op or an asset, the Dagster way: ``RetryRequested`` on
out-of-memory while the ladder has a rung left, ``Failure(allow_retries=False)`` otherwise."""

from __future__ import annotations

from typing import Any

from dagster import Failure, RetryRequested

from tether.providers.dagster.resources import TetherServiceResource


def call(context: Any, service: TetherServiceResource | str, method: str | None = None, *args: Any,
         ladder: list[Any] | None = None, cluster: Any = None, call_timeout: float | None = None,
         **kwargs: Any) -> Any:
    """Call ``service``'s ``method`` (or the function) on the rung of this try (``retry_number``).

    ``cluster``: the ``TetherClusterResource``, told about failures (``teardown="on_failure"``).
    ``call_timeout``: seconds the call may run, else the service resource's ``timeout``, else
    ``TETHER_CALL_TIMEOUT``; past it the remote call is cancelled and the step fails
    (``Failure`` from ``tether.CallTimeoutError``, no retry). ``kwargs`` go to the function (a
    ``timeout`` among them is its own).
    """
    from tether.errors import OutOfMemoryError
    from tether.steps import actions

    name = service.service_name if isinstance(service, TetherServiceResource) else service
    if call_timeout is None and isinstance(service, TetherServiceResource):
        call_timeout = service.timeout
    attempt = getattr(context, "retry_number", 0) + 1
    try:
        return actions.call(name, method, args, kwargs, ladder=ladder, attempt=attempt, logger=context.log,
                            timeout=call_timeout)
    except OutOfMemoryError as exc:
        if not exc.fields.get("exhausted", True) and ladder:
            context.log.warning(f"try {attempt}: {exc}")  # says why, and the rung of the retry
            raise RetryRequested(max_retries=len(ladder) - 1, seconds_to_wait=0) from exc
        if cluster is not None:
            cluster.mark_failed()
        raise Failure(description=str(exc), allow_retries=False) from exc
    except Exception as exc:
        if cluster is not None:
            cluster.mark_failed()
        raise Failure(description=f"{type(exc).__name__}: {exc} (not an out-of-memory error: not "
                                  "retried on a bigger machine)", allow_retries=False) from exc
