"""One Prefect test harness (a temporary server on SQLite) for the session, and what a finished flow
run left there: its task runs and its log lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# No telemetry from the harness's server (it also logs "database is locked" errors on SQLite).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def prefect_api(prefect_harness):
    """The harness's server (a real API server process) as a separate process sees it: ``env()``
    for a ``python flow.py`` subprocess (``PREFECT_API_URL``), ``flow_runs(flow_name)`` from its
    API, and ``run(script, *args, flow=...)``: the script run as a user runs it, with the flow runs
    of ``flow`` it made."""
    from prefect.settings import PREFECT_API_URL

    class Api:
        url = PREFECT_API_URL.value()

        def env(self, **extra: str) -> dict[str, str]:
            return {**os.environ, "PREFECT_API_URL": self.url, **extra}

        @staticmethod
        def flow_runs(flow_name: str) -> list:
            from prefect.client.orchestration import get_client
            from prefect.client.schemas.filters import FlowFilter, FlowFilterName

            with get_client(sync_client=True) as client:
                return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))

        def run(self, script: Path, *args: str, flow: str, **env: str) -> tuple:
            """``python script args...`` in its folder; (the finished process, its flow runs)."""
            before = {r.id for r in self.flow_runs(flow)}
            done = subprocess.run([sys.executable, script.name, *args], cwd=script.parent, timeout=240,
                                  env=self.env(**env), capture_output=True, text=True)
            assert "Starting temporary server" not in done.stdout + done.stderr  # it used this server
            return done, [r for r in self.flow_runs(flow) if r.id not in before]

    return Api()


@pytest.fixture
def task_runs():
    """``task_runs(state)``: the task runs of the finished flow run ``state``, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def read(state) -> list:
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        with get_client(sync_client=True) as client:
            return client.read_task_runs(flow_run_filter=runs)

    return read


def _logs(state, expect: tuple[str, ...] = ()) -> list:
    """The flow run's logs, once each of ``expect`` is in one of them (or after a minute): a run
    made by another process (``python flow.py``) sent its logs before it exited, but the server
    may store them a moment later."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=60)  # logs go to the API in the background: send them all
    logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            found = client.read_logs(log_filter=logs)
            if all(any(e in log.message for log in found) for e in expect) or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


@pytest.fixture
def run_logs():
    """``run_logs(state, expect=(...))``: the log messages of the finished flow run ``state``
    (``expect``: lines to wait for, from a run another process made)."""
    return lambda state, expect=(): [log.message for log in _logs(state, tuple(expect))]


@pytest.fixture
def task_run_logs():
    """``task_run_logs(state, expect=(...))``: the finished flow run's log messages by task run id
    (None: the flow run's own)."""

    def read(state, expect=()) -> dict:
        found: dict = {}
        for log in _logs(state, tuple(expect)):
            found.setdefault(log.task_run_id, []).append(log.message)
        return found

    return read


@pytest.fixture
def tag():
    """A fresh suffix for a test's cluster and services; the cluster ``pf-<tag>`` (and the clusters of
    its rungs) are torn down after."""
    import uuid

    import tether as rh

    value = uuid.uuid4().hex[:6]
    yield value
    for name in (f"pf-{value}", f"pf-{value}-rung2", f"pf-{value}-rung3"):  # rungs: TetherTaskRunner's
        try:
            rh.cluster(name).teardown()
        except rh.NotFoundError:
            pass
