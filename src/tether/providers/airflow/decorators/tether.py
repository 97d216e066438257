"""``@task.tether``: a TaskFlow task whose function runs on a tether cluster.

    @task.tether(cluster="train", ladder=[{"memory": "256Mi"}, {"memory": "2Gi"}])
    def featurize(rows: int) -> int:
        ...                      # runs in a worker on the cluster; prints go to the task log

The function is sent by value (cloudpickle), so it may live in the DAG file. Failures as in
``TetherCallOperator``: an OOM retries on the next rung (from ``try_number``), anything else fails
without a retry. Context arguments (``ti``, ...) are not passed: the function runs elsewhere. The
timeout is the task's ``execution_timeout`` as in ``TetherCallOperator`` (a little before it, the
remote call is cancelled: ``tether.CallTimeoutError``), else ``TETHER_CALL_TIMEOUT`` if set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from tether.providers.airflow.hooks.tether import TetherHook
from tether.providers.airflow.operators.tether import (
    _rungs,
    ladder_retries,
    run_step,
    step_deadline,
)


class _TetherDecoratedOperator(DecoratedOperator):
    custom_operator_name = "@task.tether"
    template_fields: Sequence[str] = ("op_args", "op_kwargs", "cluster")

    def __init__(self, *, cluster: str, ladder: Any = None,
                 tether_conn_id: str = TetherHook.default_conn_name, **kwargs: Any) -> None:
        rungs = _rungs(ladder)
        ladder_retries(kwargs, rungs)
        super().__init__(**kwargs)
        self.cluster, self.ladder, self.tether_conn_id = cluster, rungs, tether_conn_id

    @cached_property
    def hook(self) -> TetherHook:
        return TetherHook(tether_conn_id=self.tether_conn_id)

    def execute(self, context: Any) -> Any:
        from tether.steps import actions

        attempt = context["ti"].try_number
        deadline = step_deadline(self, time.monotonic())

        def run() -> Any:
            with self.hook.activated():
                return actions.run_function(self.python_callable, self.cluster, self.op_args,
                                          self.op_kwargs, ladder=self.ladder, attempt=attempt,
                                          logger=self.log, deadline=deadline,
                                          name=f"task-{self.dag_id}-{self.task_id}".replace("_", "-"))

        return self._handle_output(run_step(self, context, run))


def tether_task(python_callable: Callable | None = None, multiple_outputs: bool | None = None,
                **kwargs: Any):
    """``@task.tether(cluster=..., ladder=...)``: run the decorated function on a tether cluster."""
    return task_decorator_factory(python_callable=python_callable, multiple_outputs=multiple_outputs,
                                  decorated_operator_class=_TetherDecoratedOperator, **kwargs)
