"""``TetherTaskRunner``: Prefect's task runner on a tether cluster, as ``RayTaskRunner`` is on Ray.

Each task a flow submits (``task.submit()``, ``task.map()``) runs in a worker of a tether cluster,
concurrently, and Prefect gets futures back. The function travels the way tether sends code: by
import path (a task of your project's modules is imported by the worker), or pickled by value when
it has none (a task defined in ``__main__``, a flow file run as ``python flow.py``, or in a
function). Its remote output goes to the task run's logger, and a task run that runs out of
memory is retried by Prefect's own retries on the next rung of the ladder.

Example:
    A flow that shards its work over a cluster that starts on 256 MiB; a shard that runs out of
    memory is retried on 2 GiB, on its own, while the other shards carry on::

        from prefect import flow, task
        from tether.providers.prefect import TetherTaskRunner

        LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "2Gi", "cpus": 2}]

        @task
        def load(shard: int) -> int:
            print(f"loading shard {shard}")      # in the task run's logs
            return shard * 100

        @task
        def total(sizes: list[int]) -> int:
            return sum(sizes)

        @flow(task_runner=TetherTaskRunner(cluster="train", ladder=LADDER))
        def pipeline() -> int:
            sizes = load.map(range(8))           # eight task runs, up to max_workers at once
            return total.submit(sizes).result()  # futures as arguments: Prefect resolves them

        if __name__ == "__main__":
            pipeline()

Where Prefect's task engine runs. prefect-ray sends the whole task engine (``run_task_sync``) into
a Ray worker. This runner runs the engine here, in a thread of the flow's process, as Prefect's
own ``ThreadPoolTaskRunner`` does, and sends only the task's function to the cluster, because:

1. running out of memory is a kill: the kernel kills the worker process, and an engine inside it
   would die with it (the task run left Running, later Crashed, and Prefect never retries a
   crash). Here the engine sees ``tether.OutOfMemoryError``, its ``retry_condition_fn`` says
   retry, and the retry runs on the next rung;
2. the cluster needs no route to the Prefect API and no API key, and a worker's env needs no
   Prefect unless the task's own module imports it;
3. states, retries, caching, result persistence, hooks, timeouts, tags and concurrency limits are
   Prefect's own code, run where Prefect runs them.

tether's own tasks (``bring_up_cluster``, ``deploy_service``, ``call_service``,
``teardown_cluster``) submitted to this runner run here, as under Prefect's default runner: they
drive clusters, and their calls already run remotely.

The cost: a thread per task run in flight (waiting on the network), and arguments and results go
through the flow's process, as with Prefect's default runner: pass names (a service, a path)
rather than big data between tasks.

Each of the ``max_workers`` threads has its own worker process on each cluster (env
``prefect-<n>``): task runs in flight never share a worker, and a task's module is imported once
per worker, not per task run. The cluster's memory limit is shared by its workers: when they
outgrow it the kernel kills the largest, normally the task run that needed more, and the others
carry on.

The ladder per task run. Every task run starts on the runner's cluster. One that runs out of
memory moves, for its retry, to the cluster of the next rung: a rung ``{"cluster": "big"}`` is that
cluster, any other rung is a cluster of its own named ``<cluster>-rung<n>`` (the runner's cluster's
launcher and spec, with the rung's sizes), brought up the first time a task run climbs to it.
Nothing is resized, so the task runs beside it, and services deployed on the runner's cluster, are
never stopped by a climb. Its retries are the task's ``retries`` plus one per rung; only an
out-of-memory failure climbs, and any other failure is retried only as the task's own ``retries``
and ``retry_condition_fn`` say.

Teardown (``teardown=``), once, when the flow run ends (after its task runs finished):
``"started"`` (the default) tears down what this runner brought up (its cluster if it was down,
each rung's cluster it started), ``"always"`` also its cluster if it was up already, ``"never"``
nothing.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import inspect
import itertools
import re
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, TypeVar

from prefect.futures import PrefectConcurrentFuture, PrefectFuture
from prefect.logging import get_run_logger
from prefect.task_runners import TaskRunner

from tether.core.cluster import cluster as named_cluster
from tether.core.function import Function
from tether.core.images import Env, resolve_env
from tether.core.packaging import ImportSpec, import_spec
from tether.errors import ConfigError, NotFoundError, OutOfMemoryError
from tether.providers.prefect.blocks import TetherCluster
from tether.providers.prefect.runner_clusters import RunnerClusters
from tether.steps import actions
from tether.steps.ladder import as_ladder

if TYPE_CHECKING:
    from prefect.client.schemas.objects import RunInput
    from prefect.tasks import Task

R = TypeVar("R")
TEARDOWN = ("started", "always", "never")


@dataclasses.dataclass
class _Run:
    """One task run, across its retries: where it runs now, and what failed so far."""

    cluster: str | None  # None: a task run that runs here (tether's own tasks)
    ooms: int = 0
    other_retries: int = 0


class PrefectTetherFuture(PrefectConcurrentFuture[R]):
    """The future of a task run on a tether cluster (a thread here waits on its remote call).

    ``cluster`` is where the task run runs, or ran last: the runner's cluster, or a rung's after
    it ran out of memory (None for tether's own tasks, which run here)."""

    def __init__(self, task_run_id: uuid.UUID, wrapped_future: concurrent.futures.Future,
                 run: _Run) -> None:
        super().__init__(task_run_id=task_run_id, wrapped_future=wrapped_future)
        self._run = run

    @property
    def cluster(self) -> str | None:
        return self._run.cluster


class TetherTaskRunner(TaskRunner[PrefectTetherFuture[Any]]):
    """Runs a flow's submitted tasks in the workers of a tether cluster (see the module docstring).

    Args:
        cluster: the cluster's name (saved, or defined here by ``launcher``/``spec``/``ladder``),
            or a ``TetherCluster`` block. A cluster that is up is used as it is; one that is down
            is brought up by the first task run (with a ladder and no spec: on its first rung).
        ladder: compute to climb to when a task run runs out of memory, smallest first.
        launcher: the cluster's launcher when defined here (``local``, ``ssh``...).
        spec: the cluster's spec when defined here, e.g. ``{"memory": "2Gi"}``.
        env: the workers' env (``tether.env(reqs=[...])``, a name, a list of requirements).
        max_workers: task runs at once, each in its own worker process on the cluster.
        teardown: ``"started"``, ``"always"`` or ``"never"``, when the flow run ends.
    """

    def __init__(self, cluster: str | TetherCluster = "local", *, ladder: Any = None,
                 launcher: str | None = None, spec: dict[str, Any] | None = None, env: Any = None,
                 max_workers: int = 4, teardown: str = "started") -> None:
        if isinstance(cluster, TetherCluster):
            launcher = launcher or cluster.launcher
            spec = spec or cluster.spec or None
            ladder = ladder if ladder is not None else cluster.ladder
            cluster = cluster.cluster_name
        if not isinstance(cluster, str) or not cluster:
            raise ConfigError(f"TetherTaskRunner(cluster=...) is a cluster's name or a TetherCluster "
                              f"block, not {cluster!r}")
        if teardown not in TEARDOWN:
            raise ConfigError(f"TetherTaskRunner(teardown={teardown!r}): use one of "
                              f"{', '.join(map(repr, TEARDOWN))}")
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError(f"TetherTaskRunner(max_workers={max_workers!r}): a number of task runs "
                              "at once, at least 1")
        self.cluster, self.launcher, self.spec, self.env = cluster, launcher, dict(spec or {}), env
        self.ladder = as_ladder(ladder)  # a bad rung fails here, where the flow is defined
        self.max_workers, self.teardown = max_workers, teardown
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._cancel_events: dict[uuid.UUID, threading.Event] = {}
        self._in_flight: dict[str, str] = {}    # call id -> cluster
        self._copies: list[weakref.ref[TetherTaskRunner]] = []  # a runner compares by its options
        super().__init__()

    # -- Prefect's TaskRunner interface ------------------------------------------------------------

    def duplicate(self) -> TetherTaskRunner:
        """The copy a flow run enters (Prefect runs each flow run with its own). Prefect stops a
        flow run (SIGTERM: a cancellation, a worker stopping) through ``cancel_all`` of the flow's
        runner, this one: it reaches the copies through ``_copies``."""
        copy = type(self)(self.cluster, ladder=self.ladder, launcher=self.launcher,
                          spec=self.spec or None, env=self.env, max_workers=self.max_workers,
                          teardown=self.teardown)
        self._copies = [ref for ref in self._copies if ref() is not None] + [weakref.ref(copy)]
        return copy

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TetherTaskRunner) and self._options() == other._options()

    def _options(self) -> tuple:
        return (self.cluster, self.ladder, self.launcher, self.spec, repr(self.env), self.max_workers,
                self.teardown)

    def __enter__(self) -> TetherTaskRunner:
        super().__enter__()
        self._slots = itertools.count()
        self._local = threading.local()
        self._clusters: RunnerClusters | None = None  # made by the first submit (the flow's logger)
        self._deployed: set[tuple[str, str]] = set()
        self._prepared: dict[int, tuple[Task, Task, str]] = {}
        self._runs: dict[uuid.UUID, _Run] = {}
        self._cancel_events.clear()
        self._in_flight.clear()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_workers, thread_name_prefix="tether-task",
            initializer=self._take_slot)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Queued task runs do not start; running ones finish (as under ``ThreadPoolTaskRunner``),
        unless the flow run is being stopped (SIGTERM, Ctrl-C): then their remote calls are
        cancelled. Prefect leaves the task runner before it calls ``cancel_all``, so it is here
        that a stopped flow run stops its calls; then the teardown policy runs."""
        try:
            error = exc_info[1] if len(exc_info) > 1 else None
            if isinstance(error, BaseException) and not isinstance(error, Exception):
                self.cancel_all()
            for event in list(self._cancel_events.values()):
                event.set()
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
            if self._clusters is not None:
                self._clusters.tear_down()
        finally:
            super().__exit__(*exc_info)

    def submit(self, task: Task[Any, Any], parameters: dict[str, Any],
               wait_for: Iterable[PrefectFuture[Any]] | None = None,
               dependencies: dict[str, set[RunInput]] | None = None) -> PrefectTetherFuture[Any]:
        """Run ``task`` on the cluster in a thread of this runner; returns its future."""
        from prefect.context import FlowRunContext
        from prefect.task_engine import run_task_sync

        if not self._started or self._executor is None:
            raise RuntimeError("The task runner must be started before submitting work.")
        here = _runs_here(task)
        remote = task if here else self._prepare(task)
        if self._clusters is None:
            context = FlowRunContext.get()
            self._clusters = RunnerClusters(
                self.cluster, launcher=self.launcher, spec=self.spec, ladder=self.ladder,
                teardown=self.teardown, logger=get_run_logger(context) if context else self.logger)
        task_run_id = uuid.uuid4()
        run = self._runs[task_run_id] = _Run(cluster=None if here else self.cluster)
        cancel_event = self._cancel_events[task_run_id] = threading.Event()
        future = self._executor.submit(
            copy_context().run, run_task_sync, task=remote, task_run_id=task_run_id,
            parameters=parameters, wait_for=wait_for, return_type="state", dependencies=dependencies,
            context={"cancel_event": cancel_event})
        future.add_done_callback(lambda _: self._forget(task_run_id))
        return PrefectTetherFuture(task_run_id, future, run)

    def _forget(self, task_run_id: uuid.UUID) -> None:
        self._runs.pop(task_run_id, None)
        self._cancel_events.pop(task_run_id, None)

    def cancel_all(self) -> None:
        """Stop every task run: queued ones do not start, running ones' remote calls are cancelled
        (in each flow run's copy of this runner too)."""
        for ref in list(self._copies):
            copy = ref()
            if copy is not None:
                copy.cancel_all()
        for event in list(self._cancel_events.values()):
            event.set()
        for call_id, cluster in list(self._in_flight.items()):
            try:
                named_cluster(cluster).cancel(call_id)
            except Exception as exc:  # noqa: BLE001 - best effort, each call on its own
                self.logger.warning("could not cancel call %s on cluster %r: %s", call_id, cluster, exc)

    # -- the task, made to run remotely ------------------------------------------------------------

    def _prepare(self, task: Task[Any, Any]) -> Task[Any, Any]:
        """A copy of ``task`` whose function calls the original on the cluster, with retries for
        the ladder (once per task object; Prefect's engine runs the copy here)."""
        found = self._prepared.get(id(task))
        if found is not None and found[0] is task:
            return found[1]
        if task.isgenerator:
            raise ConfigError(f"task {task.name!r} is a generator: TetherTaskRunner sends a task's "
                              "function to a worker and returns its result; return a list instead")
        code = _import_path(task)
        digest = hashlib.sha1(f"{task.task_key}|{code}".encode()).hexdigest()[:8]
        name = f"prefect-{re.sub(r'[^A-Za-z0-9_.-]', '-', task.name)[:60]}-{digest}"
        user_retries, user_condition = task.retries, task.retry_condition_fn
        runner = self

        @functools.wraps(task.fn)
        def on_cluster(*args: Any, **kwargs: Any) -> Any:
            return runner._run_remotely(task, code, name, args, kwargs)

        def retry_condition(_task: Any, task_run: Any, state: Any) -> bool:
            return runner._should_retry(task, task_run, state, user_retries, user_condition)

        climbs = len(self.ladder) - 1 if self.ladder is not None else 0
        remote = task.with_options(retries=user_retries + climbs, retry_condition_fn=retry_condition)
        remote.fn, remote.isasync = on_cluster, False  # the engine runs here, sync; the worker awaits
        self._prepared[id(task)] = (task, remote, name)
        return remote

    def _run_remotely(self, task: Task[Any, Any], code: ImportSpec | None, name: str,
                      args: tuple, kwargs: dict[str, Any]) -> Any:
        """One run of a task run, in a thread of the runner: the call on the run's cluster."""
        from prefect.context import TaskRunContext

        started = time.monotonic()
        context = TaskRunContext.get()
        task_run = context.task_run
        run = self._runs.setdefault(task_run.id, _Run(cluster=self.cluster))
        logger = get_run_logger()
        assert self._clusters is not None and run.cluster is not None
        self._clusters.ensure_up(run.cluster)
        if run.ooms:
            logger.info("[tether] run %d of task run %r: on cluster %r, after running out of memory",
                        task_run.run_count, task_run.name, run.cluster)
        service = f"{name}-{self._local.slot}"
        call_id = actions.new_call_id()
        self._in_flight[call_id] = run.cluster
        try:
            return self._call(task, code, service, run.cluster, args, kwargs, call_id,
                              what=f"task run {task_run.name!r}", attempt=run.ooms + 1, logger=logger,
                              deadline=actions.native_deadline(task.timeout_seconds, started))
        except OutOfMemoryError as exc:
            run.ooms += 1
            if exc.fields.get("next_rung") is not None:
                run.cluster = self._clusters.for_rung(exc.fields["next_rung"])
            raise
        finally:
            self._in_flight.pop(call_id, None)

    def _call(self, task: Task[Any, Any], code: ImportSpec | None, service: str, cluster: str,
              args: tuple, kwargs: dict[str, Any], call_id: str, **step: Any) -> Any:
        """The call, deploying the function first the first time this worker runs it; again if
        the cluster lost it (a daemon restarted empty, a cluster torn down and brought back)."""
        deployed = (cluster, service) in self._deployed
        deploy = None if deployed else functools.partial(self._deploy, task, code, cluster, service)
        try:
            return actions.call_deployed(service, cluster, args, kwargs, deploy=deploy, ladder=self.ladder,
                                         call_id=call_id, env=self._env().name, **step)
        except NotFoundError as exc:
            if not deployed or getattr(exc, "remote_traceback", None):  # not a lost deploy
                raise
            self._deployed.discard((cluster, service))
            return self._call(task, code, service, cluster, args, kwargs, call_id, **step)

    def _env(self) -> Env:
        """This thread's env: the runner's, named for the thread, so each has its own worker."""
        env = resolve_env(self.env)
        return dataclasses.replace(env, name=f"{env.name or 'prefect'}-{self._local.slot}")

    def _deploy(self, task: Task[Any, Any], code: ImportSpec | None, cluster: str, service: str) -> None:
        env = self._env()
        function = Function(task.fn, service, serialize=code is None, spec=code)
        function.to(named_cluster(cluster), env=env, name=service)
        self._deployed.add((cluster, service))

    def _should_retry(self, task: Task[Any, Any], task_run: Any, state: Any, user_retries: int,
                      user_condition: Any) -> bool:
        """An out-of-memory failure: retry while a rung is left. Anything else: as the task's own
        ``retries`` and ``retry_condition_fn`` say."""
        from prefect.utilities.asyncutils import run_coro_as_sync

        error = state.data
        if isinstance(error, OutOfMemoryError):
            return not error.fields.get("exhausted", True)
        run = self._runs.get(task_run.id)
        if run is None or run.other_retries >= user_retries:
            return False
        retry = True
        if user_condition is not None:
            retry = user_condition(task, task_run, state)
            if inspect.iscoroutine(retry):
                retry = run_coro_as_sync(retry)
        if retry:
            run.other_retries += 1
        return bool(retry)

    def _take_slot(self) -> None:
        self._local.slot = next(self._slots)


def _runs_here(task: Task[Any, Any]) -> bool:
    """tether's own tasks (``bring_up_cluster``, ``deploy_service``, ``call_service``...) drive a
    cluster from here, as they do under any task runner: a worker has no flow run to log to."""
    return getattr(task.fn, "__module__", "").startswith(f"{__package__}.")


def _import_path(task: Task[Any, Any]) -> ImportSpec | None:
    """How a worker imports ``task``'s function: its import path (through the task object when
    the module's name is the task: ``module:name.fn``), or None to send it pickled by value."""
    fn = task.fn
    try:
        spec = import_spec(fn)
    except ConfigError:  # __main__, a lambda, a function inside a function
        return None
    found: Any = sys.modules.get(spec.module)
    for part in spec.qualname.split("."):
        found = getattr(found, part, None)
    if found is fn:
        return spec
    if getattr(found, "fn", None) is fn:  # @task at module level: the module holds the Task
        return dataclasses.replace(spec, qualname=f"{spec.qualname}.fn")
    return None
