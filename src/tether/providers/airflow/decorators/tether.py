"""``@task.tether``: a TaskFlow task whose function runs on a tether cluster.

    @task.tether(cluster="train", ladder=[{"memory": "256Mi"}, {"memory": "2Gi"}])
    def featurize(rows: int) -> int:
        ...                      # runs in a worker on the cluster; prints go to the task log

The function is sent by value (cloudpickle), so it may live in the DAG file. Failures as in
``TetherCallOperator``: an OOM retries on the next rung (from ``try_number``), anything else fails
without a retry. Context arguments (``ti``, ...) are not passed: the function runs elsewhere. The
timeout is the task's ``execution_timeout`` as in ``TetherCallOperator`` (a little before it, the
remote call is cancelled: ``tether.CallTimeoutError``), else ``TETHER_CALL_TIMEOUT`` if set.

The cluster: a saved one is used as it is (brought up if it is down, at its saved size). One that
was never saved is brought up on the ladder's first rung; without a ladder the task fails, saying
to bring it up upstream (``TetherClusterOperator``) or to give the task a ladder.

``deferrable=True`` (default: Airflow's ``[operators] default_deferrable``) releases the worker slot
while the function runs: the task defers to ``TetherCallTrigger`` as ``TetherCallOperator`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from tether.providers.airflow.hooks.tether import TetherHook
from tether.providers.airflow.links.tether import TetherCallLink, remember_call
from tether.providers.airflow.operators.tether import (
    DEFAULT_DEFERRABLE,
    _rungs,
    complete_call,
    defer_call,
    ladder_retries,
    run_step,
    step_deadline,
)


class _TetherDecoratedOperator(DecoratedOperator):
    custom_operator_name = "@task.tether"
    template_fields: Sequence[str] = ("op_args", "op_kwargs", "cluster")
    operator_extra_links = (TetherCallLink(),)

    def __init__(self, *, cluster: str, ladder: Any = None,
                 tether_conn_id: str = TetherHook.default_conn_name,
                 deferrable: bool = DEFAULT_DEFERRABLE, **kwargs: Any) -> None:
        rungs = _rungs(ladder)
        ladder_retries(kwargs, rungs)
        super().__init__(**kwargs)
        self.cluster, self.ladder, self.tether_conn_id = cluster, rungs, tether_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> TetherHook:
        return TetherHook(tether_conn_id=self.tether_conn_id)

    def execute(self, context: Any) -> Any:
        from tether.steps import actions

        attempt = context["ti"].try_number
        started = time.monotonic()
        deadline = step_deadline(self, started)
        name = f"task-{self.dag_id}-{self.task_id}".replace("_", "-")
        remember_call(self, "")  # a call that does not defer has no id to link to
        if self.deferrable:
            from tether.steps import deferred

            def prepare() -> Any:
                self._cluster_up()
                return deferred.prepare_function(self.python_callable, self.cluster, ladder=self.ladder,
                                                 attempt=attempt, logger=self.log, name=name,
                                                 deadline=deadline, missing_hint=self._cluster_hint())

            defer_call(self, context, prepare, self.op_args, self.op_kwargs, started)

        def run() -> Any:
            with self.hook.activated():
                self._cluster_up()
                return actions.run_function(self.python_callable, self.cluster, self.op_args,
                                            self.op_kwargs, ladder=self.ladder, attempt=attempt,
                                            logger=self.log, deadline=deadline, name=name,
                                            missing_hint=self._cluster_hint())

        return self._handle_output(run_step(self, context, run))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """The deferred call ended (``TetherCallTrigger`` fired): its result, or its failure."""
        return self._handle_output(complete_call(self, context, event, self.ladder))

    def _cluster_up(self) -> None:
        """A cluster that was never saved comes up on the ladder's first rung; without a ladder,
        the step fails saying how (``_cluster_hint``); a saved one is the step's to bring up."""
        from tether.core.cluster import DEFAULT_CLUSTER
        from tether.core.registry import store
        from tether.steps import actions

        if not self.ladder or self.cluster == DEFAULT_CLUSTER or store.exists(self.cluster):
            return
        self.log.info("[tether] cluster %r is not saved: bringing it up on the ladder's first rung",
                      self.cluster)
        actions.bring_up(self.cluster, ladder=self.ladder, logger=self.log)

    def _cluster_hint(self) -> str:
        """What a task whose cluster no task brought up is told to do, in Airflow's terms."""
        return (f"Bring it up upstream: TetherClusterOperator(task_id='up', cluster_name={self.cluster!r}, "
                "spec={'memory': '2Gi'}) >> this task; or give @task.tether a ladder=[...], and it "
                "brings the cluster up on the first rung.")


def tether_task(python_callable: Callable | None = None, multiple_outputs: bool | None = None,
                **kwargs: Any):
    """``@task.tether(cluster=..., ladder=..., deferrable=...)``: run the decorated function on a
    tether cluster."""
    return task_decorator_factory(python_callable=python_callable, multiple_outputs=multiple_outputs,
                                  decorated_operator_class=_TetherDecoratedOperator, **kwargs)
