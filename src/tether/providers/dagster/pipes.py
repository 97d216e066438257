"""Dagster Pipes on a tether cluster: an asset runs a function on the cluster, and what the function
reports with ``dagster_pipes`` (logs, materializations and their metadata, asset checks) comes back
to the asset, live, as it would from a subprocess or a Kubernetes pod.

How the two sides meet, the way ``PipesK8sClient`` reads a pod's logs:

- **context**: injected as environment variables (``PipesEnvContextInjector``): the function runs
  in a tether worker with ``DAGSTER_PIPES_CONTEXT``/``DAGSTER_PIPES_MESSAGES`` set for the length
  of the call, so a plain ``open_dagster_pipes()`` finds them. A worker process has one
  environment: Pipes calls in the same worker take turns (concurrent ones wait for each other).
- **messages**: the function's default message writer writes them to its stderr; tether streams a
  call's output back to the caller as it is printed, and ``PipesTetherMessageReader`` hands each
  Pipes message to Dagster's handler and every other line to ``context.log``. Nothing is written to
  a file or bucket, so this works the same on every launcher (local, ssh, cloud).

The call is named by an id (``tether.steps.deferred``: prepared on its rung, followed, finished
here), so a terminated run cancels it. The function travels by value, with its own module (code
it imports must be importable on the cluster, and ``dagster-pipes`` must be installed there). Its return value is on the invocation
(``.return_value``); by Pipes' convention an asset reports results, not data: pass names (a
service, a table, a path on the cluster) to the next asset, never the data itself.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    DagsterExecutionInterruptedError,
    OpExecutionContext,
    PipesClient,
    PipesClientCompletedInvocation,
    PipesEnvContextInjector,
    PipesMessageHandler,
    PipesMessageReader,
    PipesSession,
    open_pipes_session,
)
from dagster_pipes import PIPES_PROTOCOL_VERSION_FIELD, PipesDefaultMessageWriter, PipesExtras
from pydantic import Field

from tether.providers.dagster.ops import attempt_of, cancel_interrupted, native_failures
from tether.providers.dagster.resources import TetherClusterResource

#: what a run on a cluster that is neither up nor saved is told to do, in Dagster's words
CLUSTER_HINT = ("In Dagster, give PipesTetherClient a TetherClusterResource that can bring it up: "
                "TetherClusterResource(cluster_name=..., ladder=[...]) or (..., launcher='local', "
                "memory='2Gi').")


class PipesTetherMessageReader(PipesMessageReader):
    """Reads the Pipes messages a remote function writes to its stderr, out of the call's own
    output that tether streams back; lines that are not Pipes messages go to the step's log."""

    def __init__(self) -> None:
        self._handler: PipesMessageHandler | None = None

    @contextlib.contextmanager
    def read_messages(self, handler: PipesMessageHandler) -> Iterator[dict[str, Any]]:
        self._handler = handler
        try:
            yield {PipesDefaultMessageWriter.STDIO_KEY: PipesDefaultMessageWriter.STDERR}
        finally:
            self._handler = None

    def lines_to(self, log: Any) -> _PipesLines:
        """A logger for tether's call output: Pipes messages to the handler, the rest to ``log``."""
        return _PipesLines(self, log)

    def handle_line(self, line: str) -> bool:
        """Hand ``line`` to Dagster's handler if it is a Pipes message; False if it is not."""
        if self._handler is None or not line.startswith("{") or PIPES_PROTOCOL_VERSION_FIELD not in line:
            return False
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict) or PIPES_PROTOCOL_VERSION_FIELD not in message:
            return False
        self._handler.handle_message(message)
        return True

    def no_messages_debug_text(self) -> str:
        return ("Attempted to read Pipes messages from the remote function's stderr, which tether "
                "streams back while the call runs. Open them in the function with "
                "`with open_dagster_pipes() as pipes:` (its default message writer); is "
                "dagster-pipes installed on the cluster, and did the call start?")


class _PipesLines:
    """The logger tether's steps write to (``info(msg, *args)``): remote lines and tether's own."""

    def __init__(self, reader: PipesTetherMessageReader, log: Any) -> None:
        self.reader, self.log = reader, log

    def info(self, msg: str, *args: Any) -> None:
        line = msg % args if args else msg
        if not self.reader.handle_line(line):
            self.log.info(line)

    def warning(self, msg: str, *args: Any) -> None:
        self.log.warning(msg % args if args else msg)


class PipesTetherInvocation(PipesClientCompletedInvocation):
    """What ``PipesTetherClient.run`` returns: Pipes' results, and the function's return value."""

    def __init__(self, session: PipesSession, return_value: Any, metadata: dict[str, Any]) -> None:
        super().__init__(session, metadata=metadata)
        self.return_value = return_value


class PipesTetherClient(ConfigurableResource, PipesClient):
    """Runs a function on a tether cluster in a Dagster Pipes session.

    A resource: give it a ``TetherClusterResource`` (brought up on first use, torn down by its
    policy when the run ends) and call ``run`` in an asset::

        @dg.asset
        def features(context: dg.AssetExecutionContext, pipes: PipesTetherClient) -> dg.MaterializeResult:
            return pipes.run(context=context, function=build_features, args=("2024-01",),
                             extras={"table": "raw"}).get_materialize_result()

    where ``build_features`` (run on the cluster) uses ``dagster_pipes``::

        def build_features(month):
            with open_dagster_pipes() as pipes:
                pipes.log.info(f"building {month}")
                pipes.report_asset_materialization(metadata={"rows": 1200})

    An out-of-memory kill on a rung of ``ladder`` asks Dagster for a retry on the next rung
    (``RetryRequested``); any other failure fails the step at once (``Failure``).
    """

    cluster: TetherClusterResource = Field(description="The cluster the functions run on.")
    ladder: list[Any] | None = Field(
        default=None, description="Compute to climb to on out-of-memory, smallest first (as the "
                                  "cluster's). None: the cluster's ladder.")
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds a run may take before the remote call is cancelled "
                                        "(tether's CallTimeoutError); None: TETHER_CALL_TIMEOUT, else none.")
    env: dict[str, str] = Field(default_factory=dict,
                                description="Environment variables the function runs with.")

    def run(  # type: ignore[override]
        self, *, context: OpExecutionContext | AssetExecutionContext, function: Callable[..., Any],
        args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, extras: PipesExtras | None = None,
        timeout: float | None = None,
    ) -> PipesTetherInvocation:
        """Run ``function(*args, **kwargs)`` on the cluster, at the rung of this try, in a Pipes
        session: ``extras`` reach it as ``pipes.extras``; its reports come back to ``context``.

        Returns the invocation: ``get_materialize_result()`` (an asset), ``get_results()``, and the
        function's ``return_value``.
        """
        ladder = self.ladder if self.ladder is not None else self.cluster.ladder
        reader = PipesTetherMessageReader()
        with native_failures(context, ladder, self.cluster):
            cluster = self.cluster.ensure_up(context)
            with open_pipes_session(context=context, context_injector=PipesEnvContextInjector(),
                                    message_reader=reader, extras=extras) as session:
                env = {**self.env, **session.get_bootstrap_env_vars()}
                value = _run(context, function, env, cluster, args, kwargs, ladder,
                             reader.lines_to(context.log), timeout if timeout is not None else self.timeout)
        return PipesTetherInvocation(session, value, metadata={"tether cluster": cluster})


def _run(context: Any, function: Callable[..., Any], env: dict[str, str], cluster: str, args: Sequence[Any],
         kwargs: dict[str, Any] | None, ladder: list[Any] | None, logger: Any, timeout: float | None) -> Any:
    """Run ``function`` with ``env`` on ``cluster`` as ``actions.run_function`` does (its rung, its
    OOM errors, its output to ``logger``), through a call named by an id: a terminated run cancels
    it."""
    import asyncio

    from tether.steps import deferred

    attempt = attempt_of(context)
    with _module_by_value(function):
        call = deferred.prepare_function(in_environment(function, env), cluster, ladder=ladder,
                                         attempt=attempt, logger=logger,
                                         name=f"pipes-{function.__name__}", timeout=timeout,
                                         missing_hint=CLUSTER_HINT)
        arguments = deferred.encode_arguments(args, kwargs)
    try:
        outcome = asyncio.run(deferred.follow(deferred.connect(call["cluster"]), call, arguments, logger))
    except DagsterExecutionInterruptedError:
        cancel_interrupted(context, f"call {call['call_id']} of {call['what']!r}", lambda: deferred.cancel(call))
        raise
    return deferred.finish(call, outcome, ladder=ladder, attempt=attempt)


@contextlib.contextmanager
def _module_by_value(function: Callable[..., Any]) -> Iterator[None]:
    """Pickle the module ``function`` is defined in by value while it is sent, unless it is an
    installed package: a function in the project's definitions file then runs on a cluster that
    does not have that file (what the module imports must be importable there)."""
    import cloudpickle

    module = sys.modules.get(getattr(function, "__module__", "") or "")
    where = getattr(module, "__file__", None) or ""
    if (module is None or module.__name__ == "__main__" or not where
            or any(part in where for part in ("site-packages", "dist-packages"))
            or module.__name__ in cloudpickle.list_registry_pickle_by_value()):
        yield
        return
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def in_environment(function: Callable[..., Any], env: dict[str, str]) -> Callable[..., Any]:
    """``function``, run with ``env`` set in the worker's environment for the length of the call.

    A closure, so it travels by value: the worker needs neither Dagster nor this module. The
    environment is the process's: calls that set one hold a lock of the worker process.
    """

    def run_with_environment(*args: Any, **kwargs: Any) -> Any:
        import os
        import sys
        import threading

        lock = sys.__dict__.setdefault("_tether_pipes_environment_lock", threading.Lock())
        with lock:
            saved = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            try:
                return function(*args, **kwargs)
            finally:
                for key, old in saved.items():
                    if old is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = old

    run_with_environment.__name__ = getattr(function, "__name__", "function")
    run_with_environment.__qualname__ = f"in_environment.<locals>.{run_with_environment.__name__}"
    return run_with_environment
