"""Airflow operators for tether: bring up a named cluster, deploy a service, call it, tear down.

    from tether.providers.airflow.operators.tether import (
        TetherCallOperator, TetherClusterOperator, TetherDeployOperator, TetherTeardownOperator)

    LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "2Gi", "cpus": 2}]
    up = TetherClusterOperator(task_id="up", cluster_name="train", ladder=LADDER)
    deploy = TetherDeployOperator(task_id="deploy", target="my_project.train:Trainer",
                                  service_name="trainer", cluster_name=up.output)
    train = TetherCallOperator(task_id="train", service_name=deploy.output, method="train",
                               op_kwargs={"data_mib": 400}, ladder=LADDER)
    down = TetherTeardownOperator(task_id="down", cluster_name="train").as_teardown(setups=up)
    up >> deploy >> train >> down

Steps pass names (cluster, service) through XCom, never data. ``TetherCallOperator`` with a ladder
retries an out-of-memory failure on the next rung, chosen from the task's ``try_number`` (its
``retries`` default to one per rung above the first, with no delay: a bigger machine needs no
wait); any other failure fails the task at once, without a retry (``AirflowFailException``). The
remote output of a call goes live into the task log.

Deferrable calls: ``TetherCallOperator(deferrable=True)`` (default: Airflow's
``[operators] default_deferrable``) prepares the call in the worker (the rung, the service made
there, the arguments pickled), then defers to ``TetherCallTrigger``: the worker slot is released,
the triggerer starts the call by its id and writes its remote output into the task's log, and
the task resumes in ``execute_complete`` with the result (or the remote error, handled as above:
an OOM retries on the next rung) fetched from the daemon by id. Clearing the task, or marking it
failed or succeeded, cancels the remote call. The task's "Tether call" link points at the call on
its cluster's daemon.

Timeouts are Airflow's own: with ``execution_timeout`` set on a call task, tether gives the remote
call what is left of it when the call is sent, less a small margin (10%, at most 2 s), so that
tether's timeout fires first: the remote call is cancelled, and the task fails with
``tether.CallTimeoutError`` without a retry (a timeout is not an out-of-memory error: no bigger
rung). Without ``execution_timeout``, tether's process default applies (``TETHER_CALL_TIMEOUT``
seconds; unset: none). Should Airflow's own timeout fire first (bringing the cluster up took the
time), ``on_kill`` cancels the remote call. A deferred call gets the same timeout, counted from
when the task started: past it, the trigger cancels the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any, NoReturn

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowFailException

from tether.providers.airflow.hooks.tether import TetherHook
from tether.providers.airflow.links.tether import (
    TetherCallLink,
    call_url,
    push_call_link,
    remember_call,
)

#: Airflow's default for ``deferrable=`` (``[operators] default_deferrable``), as other providers read it
DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)


def ladder_retries(kwargs: dict[str, Any], ladder: Any) -> None:
    """One retry per rung above the first, with no delay, unless the DAG says otherwise."""
    if ladder:
        kwargs.setdefault("retries", len(ladder) - 1)
        kwargs.setdefault("retry_delay", timedelta(0))


def step_deadline(task: BaseOperator, started: float) -> float | None:
    """When tether's timeout of the task's call fires: a little before ``execution_timeout``
    (``tether.steps.actions.native_deadline``); None without one."""
    from tether.steps import actions

    limit = task.execution_timeout
    return actions.native_deadline(limit.total_seconds() if limit else None, started)


def run_step(task: BaseOperator, context: Any, action):
    """Run ``action()`` and turn its failure into Airflow's: an OOM with a rung left is a plain
    failure (Airflow retries it on the next try), anything else is an ``AirflowFailException``."""
    from tether.errors import OutOfMemoryError

    try:
        return action()
    except OutOfMemoryError as exc:
        try_number = context["ti"].try_number if context else 1
        if exc.fields.get("exhausted", True) or try_number > (task.retries or 0):
            raise AirflowFailException(str(exc)) from exc
        task.log.warning("out of memory on try %s: the next try runs on %s", try_number,
                         exc.fields.get("next_rung"))
        raise
    except Exception as exc:
        raise AirflowFailException(
            f"{type(exc).__name__}: {in_airflow(exc)} (not an out-of-memory error: not retried on a "
            "bigger machine)") from exc


def deploy_hint(service: str) -> str:
    """What a task calling a service that was never deployed is told to do, in Airflow's terms
    (``missing_hint=`` of tether's steps)."""
    return (f"Deploy it upstream of this task: TetherDeployOperator(task_id='deploy', "
            f"target='package.module:Name', service_name={service!r}, cluster_name=...) >> this task.")


def in_airflow(exc: BaseException) -> str:
    """tether's message, with what to do said in Airflow's terms when a cluster is missing (a
    deploy or teardown task naming a cluster no task brought up)."""
    from tether.errors import NotFoundError

    text = str(exc)
    cluster = (getattr(exc, "fields", None) or {}).get("cluster")
    if (isinstance(exc, NotFoundError) and cluster and text.startswith(f"no cluster named {cluster!r}")
            and "TetherClusterOperator" not in text):
        head = text.split(" Define it", 1)[0]
        return (f"{head} Bring it up upstream of this task: TetherClusterOperator(task_id='up', "
                f"cluster_name={cluster!r}, ladder=[...] or spec={{...}}) >> this task.")
    return text


def defer_call(task: Any, context: Any, prepare: Callable[[], Any], args: Sequence[Any],
               kwargs: dict[str, Any], started: float) -> NoReturn:
    """Prepare a deferrable call in this worker (``prepare()``: the rung, the service made there),
    hand it to ``TetherCallTrigger`` and release the worker slot; the task resumes in its
    ``execute_complete`` (``complete_call``)."""
    from tether.providers.airflow.triggers.tether import TetherCallTrigger
    from tether.steps import deferred

    def prepared() -> tuple[Any, str, str | None]:
        arguments = deferred.encode_arguments(args, kwargs)  # first: too big fails before any work
        with task.hook.activated():
            return prepare(), arguments, task.hook.registry_home()

    call, arguments, home = run_step(task, context, prepared)
    push_call_link(task, context, call["url"])
    task.log.info("[tether] deferred: the triggerer runs call %s of %s on cluster %r (%s)",
                  call["call_id"], call["what"], call["cluster"], call["url"])
    limit = task.execution_timeout
    timeout = None if limit is None else max(limit - timedelta(seconds=time.monotonic() - started),
                                             timedelta(0))
    task.defer(trigger=TetherCallTrigger(call=call, arguments=arguments, home=home),
               method_name="execute_complete", timeout=timeout)


def complete_call(task: Any, context: Any, event: dict[str, Any], ladder: Any) -> Any:
    """The result of a deferred call when its trigger fired, or its failure as Airflow's
    (``run_step``: an out-of-memory error retries on the next rung)."""
    from tether.steps import deferred

    attempt = context["ti"].try_number
    remember_call(task, event["call"]["url"])

    def finish() -> Any:
        with task.hook.activated():
            return deferred.finish(event["call"], event, ladder=ladder, attempt=attempt)

    return run_step(task, context, finish)


class _TetherOperator(BaseOperator):
    def __init__(self, *, tether_conn_id: str = TetherHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tether_conn_id = tether_conn_id

    @cached_property
    def hook(self) -> TetherHook:
        return TetherHook(tether_conn_id=self.tether_conn_id)


class TetherClusterOperator(_TetherOperator):
    """Bring up a named cluster, or reuse it; returns its name (XCom).

    :param cluster_name: the cluster's name (templated).
    :param launcher: its launcher when it is defined here (default: the connection's).
    :param spec: its spec when it is defined here, e.g. ``{"memory": "2Gi"}`` (templated).
    :param ladder: a ``tether.Ladder`` or its list of rungs: without a spec the cluster starts
        on the first rung.
    :param tether_conn_id: the ``tether`` connection (registry folder, default launcher).
    """

    template_fields: Sequence[str] = ("cluster_name", "launcher", "spec")
    template_fields_renderers = {"spec": "json"}
    ui_color = "#dce9f7"

    def __init__(self, *, cluster_name: str, launcher: str | None = None,
                 spec: dict[str, Any] | None = None, ladder: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster_name, self.launcher, self.spec = cluster_name, launcher, spec
        self.ladder = _rungs(ladder)

    def execute(self, context: Any) -> str:
        from tether.steps import actions

        def up() -> str:
            with self.hook.activated() as settings:
                launcher = self.launcher or (settings.launcher if self.spec else None)
                return actions.bring_up(self.cluster_name, launcher=launcher, spec=self.spec,
                                      ladder=self.ladder, logger=self.log).name

        return run_step(self, context, up)


class TetherDeployOperator(_TetherOperator):
    """Deploy a function or a class (by import path) on a cluster under a name; returns the name.

    :param target: ``"package.module:Name"`` of a function, or of a class to construct (templated).
    :param service_name: the service's name on the cluster (templated).
    :param cluster_name: the cluster (templated; e.g. a ``TetherClusterOperator``'s ``.output``).
    :param init_args: positional arguments of the class (templated).
    :param init_kwargs: keyword arguments of the class (templated).
    :param env: a ``tether.env(...)``, a list of requirements, or an env name.
    """

    template_fields: Sequence[str] = ("target", "service_name", "cluster_name", "init_args", "init_kwargs")
    template_fields_renderers = {"init_args": "py", "init_kwargs": "py"}
    ui_color = "#dce9f7"

    def __init__(self, *, target: Any, service_name: str, cluster_name: str,
                 init_args: Sequence[Any] | None = None, init_kwargs: dict[str, Any] | None = None,
                 env: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from tether.steps.services import target_of

        self.target = target_of(target)
        self.service_name, self.cluster_name = service_name, cluster_name
        self.init_args, self.init_kwargs, self.env = list(init_args or []), dict(init_kwargs or {}), env

    def execute(self, context: Any) -> str:
        from tether.steps import actions

        def deploy() -> str:
            with self.hook.activated():
                return actions.deploy(self.target, self.service_name, self.cluster_name,
                                    args=self.init_args, kwargs=self.init_kwargs, env=self.env,
                                    logger=self.log).name

        return run_step(self, context, deploy)


class TetherCallOperator(_TetherOperator):
    """Call a named service's method (or the function); returns the result (XCom).

    :param service_name: the service (templated).
    :param method: the method of an instance; None for a function (templated).
    :param op_args: positional arguments (templated).
    :param op_kwargs: keyword arguments (templated); a ``timeout`` among them is the function's own.
    :param ladder: a ``tether.Ladder`` or its rungs: an OOM retries on the next rung.
    :param deferrable: release the worker slot while the call runs (``TetherCallTrigger`` waits
        on it in the triggerer); default: Airflow's ``[operators] default_deferrable``.

    The call's timeout is the task's ``execution_timeout`` (a little before it: the remote call is
    cancelled and the task fails with ``tether.CallTimeoutError``, no retry); without one,
    ``TETHER_CALL_TIMEOUT`` seconds if set.
    """

    template_fields: Sequence[str] = ("service_name", "method", "op_args", "op_kwargs")
    template_fields_renderers = {"op_args": "py", "op_kwargs": "py"}
    operator_extra_links = (TetherCallLink(),)
    ui_color = "#c5e0b4"

    def __init__(self, *, service_name: str, method: str | None = None,
                 op_args: Sequence[Any] | None = None, op_kwargs: dict[str, Any] | None = None,
                 ladder: Any = None, deferrable: bool = DEFAULT_DEFERRABLE, **kwargs: Any) -> None:
        rungs = _rungs(ladder)
        ladder_retries(kwargs, rungs)
        super().__init__(**kwargs)
        self.service_name, self.method = service_name, method
        self.op_args, self.op_kwargs = list(op_args or []), dict(op_kwargs or {})
        self.ladder, self.deferrable = rungs, deferrable
        self._call_id: str | None = None

    def execute(self, context: Any) -> Any:
        from tether.steps import actions

        attempt = context["ti"].try_number
        started = time.monotonic()
        deadline = step_deadline(self, started)
        if self.deferrable:
            from tether.steps import deferred

            defer_call(self, context, lambda: deferred.prepare_call(
                self.service_name, self.method, self.op_args, self.op_kwargs, ladder=self.ladder,
                attempt=attempt, logger=self.log, deadline=deadline,
                missing_hint=deploy_hint(self.service_name)), self.op_args, self.op_kwargs, started)
        self._call_id = actions.new_call_id()

        def call() -> Any:
            with self.hook.activated():
                try:
                    return actions.call(self.service_name, self.method, self.op_args, self.op_kwargs,
                                        ladder=self.ladder, attempt=attempt, logger=self.log,
                                        call_id=self._call_id, deadline=deadline,
                                        missing_hint=deploy_hint(self.service_name))
                finally:
                    remember_call(self, call_url(self.service_name, self._call_id))

        return run_step(self, context, call)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """The deferred call ended (``TetherCallTrigger`` fired): its result, or its failure."""
        return complete_call(self, context, event, self.ladder)

    def on_kill(self) -> None:
        """The task is being killed: stop its remote call too."""
        if self._call_id is None:
            return
        from tether.steps import actions

        try:
            with self.hook.activated():
                actions.cancel(self.service_name, self._call_id, deploy_hint(self.service_name))
        except Exception as exc:  # noqa: BLE001 - killing goes on regardless
            self.log.warning("could not cancel remote call %s: %s", self._call_id, exc)


class TetherTeardownOperator(_TetherOperator):
    """Tear a named cluster (or several) down; use it as a teardown task (``.as_teardown(setups=up)``)
    so the cluster goes down even when a step failed.

    :param cluster_name: the cluster, or a list of them (templated).
    """

    template_fields: Sequence[str] = ("cluster_name",)
    ui_color = "#f4cccc"

    def __init__(self, *, cluster_name: str | Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name

    def execute(self, context: Any) -> list[str]:
        from tether.steps import actions

        names = [self.cluster_name] if isinstance(self.cluster_name, str) else list(self.cluster_name)

        def down() -> list[str]:
            with self.hook.activated():
                for name in names:
                    actions.teardown(name, logger=self.log)
            return names

        return run_step(self, context, down)


def _rungs(ladder: Any) -> list[dict[str, Any]] | None:
    """A ladder as its JSON rungs (what Airflow can serialize with the DAG)."""
    if ladder is None:
        return None
    from tether.steps.ladder import as_ladder

    return as_ladder(ladder).config()
