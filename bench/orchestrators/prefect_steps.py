"""Prefect's step-overhead rows: a flow of N ``call_service`` tasks vs a flow of N ``@task`` no-ops;
and N no-ops submitted under ``TetherTaskRunner`` vs under Prefect's ``ThreadPoolTaskRunner``.

Both flows run in this process against one ``prefect_test_harness()`` server (a temporary Prefect
server on SQLite, started once before timing), each task called in turn from the flow, as a user
calls tasks: ``call_service(<deployed no-op>)`` (``tether.providers.prefect``) on one side, a
``@task`` returning None on the other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import metadata

from bench.orchestrators.child import CLUSTER, SERVICE, Pair, exit_now, failed, main


def run(flow) -> None:
    state = flow(return_state=True)
    if not state.is_completed():
        raise failed(f"flow {flow.name}", state)


@contextlib.contextmanager
def pipelines(n: int) -> Iterator[list[Pair]]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect import flow, task
    from prefect.testing.utilities import prefect_test_harness

    from tether.providers.prefect import call_service

    @task
    def noop() -> None:
        return None

    @flow(name="bench-native")
    def native() -> None:
        for _ in range(n):
            noop()

    @flow(name="bench-tether")
    def tether() -> None:
        for _ in range(n):
            call_service(SERVICE)

    from prefect.task_runners import ThreadPoolTaskRunner

    from tether.providers.prefect import TetherTaskRunner

    @flow(name="bench-thread-pool", task_runner=ThreadPoolTaskRunner(max_workers=1))
    def submitted_here() -> None:
        for _ in range(n):
            noop.submit().result()

    # The cluster is up already (the child's): the runner uses it and leaves it up ("started").
    @flow(name="bench-task-runner", task_runner=TetherTaskRunner(cluster=CLUSTER, max_workers=1))
    def submitted_there() -> None:
        for _ in range(n):
            noop.submit().result()

    with prefect_test_harness(server_startup_timeout=120):
        yield [Pair("prefect", "Prefect: call_service vs @task", lambda: run(native), lambda: run(tether),
                    "a flow calling N @task no-ops in turn, prefect_test_harness() server",
                    "a flow calling N call_service(<deployed no-op>) in turn, the same server"),
               Pair("prefect_task_runner", "Prefect: TetherTaskRunner vs ThreadPoolTaskRunner",
                    lambda: run(submitted_here), lambda: run(submitted_there),
                    "a flow submitting N @task no-ops in turn (.submit().result()), ThreadPoolTaskRunner",
                    "the same flow under TetherTaskRunner: each no-op in a worker of the cluster, "
                    "deployed once per flow run")]


def versions() -> dict[str, str]:
    return {"prefect": metadata.version("prefect")}


if __name__ == "__main__":
    exit_now(main("prefect", pipelines, versions))
