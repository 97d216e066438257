"""Fixtures of the Dagster provider tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
#: where the code the tests deploy lives (memory_code...): on the steps' path too
INTEGRATION = HERE.parent.parent / "integration"


@pytest.fixture
def tag():
    """A fresh suffix for a test's cluster and services; the cluster ``dg-<tag>`` is torn down after."""
    import uuid

    import tether as rh

    value = uuid.uuid4().hex[:6]
    yield value
    try:
        rh.cluster(f"dg-{value}").teardown()
    except rh.NotFoundError:
        pass


class CliRun:
    """What ``dagster job execute`` did: its exit code and output, and the run in its instance."""

    def __init__(self, proc: subprocess.CompletedProcess, dagster_home: Path) -> None:
        import dagster as dg

        self.returncode, self.output = proc.returncode, proc.stdout + proc.stderr
        self.instance = dg.DagsterInstance.from_config(str(dagster_home))
        runs = self.instance.get_runs()
        assert len(runs) == 1, self.output[-3000:]
        self.run = runs[0]
        self.events = self.instance.all_logs(self.run.run_id)

    def of_type(self, name: str) -> list:
        return [e for e in self.events if e.dagster_event and e.dagster_event.event_type_value == name]

    def messages(self) -> list[str]:
        return [e.user_message for e in self.events]

    def metadata(self, asset: str) -> dict:
        """The metadata of ``asset``'s materialization in this run (plain values)."""
        for entry in self.of_type("ASSET_MATERIALIZATION"):
            materialization = entry.dagster_event.event_specific_data.materialization
            if materialization.asset_key.to_user_string() == asset:
                return {k: v.value for k, v in materialization.metadata.items()}
        raise AssertionError(f"no materialization of {asset}: {self.output[-3000:]}")


@pytest.fixture
def dagster_cli(tmp_path):
    """Run ``dagster job execute -f FILE -j JOB`` as a user does (the real CLI, Dagster's default
    multiprocess executor: a process per step), in its own DAGSTER_HOME; returns a ``CliRun``."""
    count = 0

    def execute(file: Path, job: str, env: dict[str, str] | None = None, timeout: float = 240,
                interrupt_when: Path | None = None) -> CliRun:
        """``interrupt_when``: once that file exists, press Ctrl-C (SIGINT to the CLI's process
        group, its step processes included), as a user stopping the run in a terminal does."""
        nonlocal count
        count += 1
        home = tmp_path / f"dagster-home-{count}"
        home.mkdir()
        path = os.pathsep.join(p for p in (str(INTEGRATION), os.environ.get("PYTHONPATH", "")) if p)
        args = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-f", file.name, "-j", job]
        proc = subprocess.Popen(args, cwd=file.parent, start_new_session=True, text=True,
                                env={**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": path, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            if interrupt_when is not None:
                deadline = time.monotonic() + timeout
                while not interrupt_when.exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return CliRun(subprocess.CompletedProcess(args, proc.returncode, out, err), home)

    return execute
