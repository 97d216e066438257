"""Calling a tether service from an op or an asset, the Dagster way: ``RetryRequested`` on
out-of-memory while the ladder has a rung left, ``Failure(allow_retries=False)`` otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from dagster import DagsterExecutionInterruptedError, Failure, RetryRequested

from tether.providers.dagster.resources import TetherClusterResource, TetherServiceResource


def missing_service_hint(name: str) -> str:
    """What to do when no service ``name`` was deployed, in Dagster's words."""
    return (f"In Dagster, give the step a TetherServiceResource(service_name={name!r}, "
            "target='package.module:Name', cluster=TetherClusterResource(...)) and pass it to call(): "
            "its first call deploys the service, later steps and runs reattach it by name.")


def call(context: Any, service: TetherServiceResource | str, method: str | None = None, *args: Any,
         ladder: list[Any] | None = None, cluster: TetherClusterResource | None = None,
         call_timeout: float | None = None, **kwargs: Any) -> Any:
    """Call ``service``'s ``method`` (or the function) on the rung of this try (``retry_number``).

    ``service``: a ``TetherServiceResource`` (its first call in a process brings the cluster up,
    or finds it up on any rung, and deploys the service unless the cluster has it as defined), or
    the name of a service deployed already.
    ``cluster``: a ``TetherClusterResource`` to tell of a failure (``teardown="on_failure"`` sees
    failed steps in the run's events by itself: this only counts a failure the step catches).
    ``call_timeout``: seconds the call may run, else the service resource's ``timeout``, else
    ``TETHER_CALL_TIMEOUT``; past it the remote call is cancelled and the step fails
    (``Failure`` from ``tether.CallTimeoutError``, no retry). ``kwargs`` go to the function (a
    ``timeout`` among them is its own).
    """
    from tether.steps import actions

    if isinstance(service, TetherServiceResource):
        name = service.service_name
        if call_timeout is None:
            call_timeout = service.timeout
    else:
        name = service
    with native_failures(context, ladder, cluster):
        if isinstance(service, TetherServiceResource):
            service.ensure_deployed(context)
        call_id = actions.new_call_id()
        try:
            return actions.call(name, method, args, kwargs, ladder=ladder, attempt=attempt_of(context),
                                logger=context.log, timeout=call_timeout, call_id=call_id,
                                missing_hint=missing_service_hint(name))
        except DagsterExecutionInterruptedError:
            # the run was terminated (the UI, Ctrl-C): the remote call must not run on unowned
            _cancel(context, name, call_id)
            raise


def _cancel(context: Any, service: str, call_id: str) -> None:
    from tether.steps import actions

    cancel_interrupted(context, f"call {call_id} of {service!r}",
                       lambda: actions.cancel(service, call_id, missing_hint=missing_service_hint(service)))


def cancel_interrupted(context: Any, what: str, cancel: Callable[[], bool]) -> None:
    """The run was terminated (Ctrl-C, the UI): ``cancel()`` the remote call so that it does not run
    on for nobody. In a thread of its own: Dagster interrupts the step's main thread again (the
    executor forwards the termination too), which must not cut the cancel short."""
    import threading

    def run() -> None:
        try:
            stopped = cancel()
        except Exception as exc:  # the step is going down anyway: say why the call may still run
            context.log.warning(f"[tether] the run was interrupted; cancelling {what} failed: "
                                f"{type(exc).__name__}: {exc}")
            return
        context.log.warning(f"[tether] the run was interrupted: {what} "
                            f"{'cancelled' if stopped else 'was over already'}")

    worker = threading.Thread(target=run, name="tether-cancel")  # not a daemon: it ends first
    worker.start()
    worker.join()


def attempt_of(context: Any) -> int:
    """This try of the step, from 1: the rung of the ladder it runs on."""
    return getattr(context, "retry_number", 0) + 1


@contextlib.contextmanager
def native_failures(context: Any, ladder: list[Any] | None, cluster: TetherClusterResource | None) -> Iterator[None]:
    """Turn tether's failures into Dagster's: ``RetryRequested`` (as many retries as the ladder has
    rungs, no wait) for an out-of-memory failure with a rung left, ``Failure`` without retries for
    anything else, its description saying what to do."""
    from tether.errors import NotFoundError, OutOfMemoryError

    attempt = attempt_of(context)
    try:
        yield
    except OutOfMemoryError as exc:
        if not exc.fields.get("exhausted", True) and ladder:
            context.log.warning(f"try {attempt}: {exc}")  # says why, and the rung of the retry
            raise RetryRequested(max_retries=len(ladder) - 1, seconds_to_wait=0) from exc
        _failed(context, cluster)
        raise Failure(description=str(exc), allow_retries=False) from exc
    except NotFoundError as exc:
        _failed(context, cluster)
        # a missing service's error ends with missing_service_hint (passed to the steps)
        raise Failure(description=f"NotFoundError: {exc}", allow_retries=False) from exc
    except (Failure, RetryRequested):
        raise
    except Exception as exc:
        _failed(context, cluster)
        raise Failure(description=f"{type(exc).__name__}: {exc} (not an out-of-memory error: not "
                                  "retried on a bigger machine)", allow_retries=False) from exc


def _failed(context: Any, cluster: TetherClusterResource | None) -> None:
    if cluster is not None:
        cluster.mark_failed(context)
