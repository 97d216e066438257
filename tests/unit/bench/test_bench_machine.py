"""bench/machine.settle (the wait for an idle machine between steps) and background.py's
attribution of other work, against real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))  # the repository root: `bench` package

from bench import machine  # noqa: E402

SPIN = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"


def test_settle_returns_after_one_step_when_the_bound_is_met():
    # 2 cores cannot use more than 2: a bound of 64 cores is met by the first step, whatever runs
    took = machine.settle(max_s=10, below_cores=64, step_s=0.2)
    assert took < 5


def test_settle_waits_out_its_limit_and_says_so_while_a_process_spins():
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    said: list[str] = []
    try:
        took = machine.settle(said.append, max_s=1.2, below_cores=0.5, step_s=0.2)
    finally:
        spinner.kill()
        spinner.wait()
    assert took >= 1.2
    assert said and "did not settle" in said[0]


def _spinner(tmp_path: Path) -> str:
    """A python named ``benchspin`` (its command name in /proc), told apart from other work:
    the suite's other processes run alongside and count as "others" too."""
    link = tmp_path / "benchspin"
    link.symlink_to(sys.executable)
    return str(link)


def _sample_while(argv: list[str], parent: int = 1) -> dict:
    """background.py's report of 1.5 s during which ``argv`` spins (without the run's marker);
    ``parent``: the benchmark's pid (by default none of this test's processes)."""
    env = {**os.environ, "TETHER_BENCH_RUN": "test-run"}
    sampler = subprocess.Popen([sys.executable, str(ROOT / "bench" / "background.py"), "--interval", "0.2",
                                "--parent", str(parent)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    time.sleep(0.5)  # its first sample (and the namespaces it knows) before the spinner starts
    spinner = subprocess.Popen(argv, env={k: v for k, v in os.environ.items() if k != "TETHER_BENCH_RUN"})
    try:
        time.sleep(1.5)
        out, _ = sampler.communicate(b"", timeout=10)
    finally:
        spinner.kill()
        spinner.wait()
    return json.loads(out)


def test_background_names_the_commands_of_other_work(tmp_path):
    got = _sample_while([_spinner(tmp_path), "-c", SPIN])
    assert got["others_by_command"].get("benchspin", 0) > 0.3, got  # the spinner is not this run's


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare(1) for a new network namespace")
def test_a_process_in_a_network_namespace_made_during_the_run_is_the_runs(tmp_path):
    # the bench's test hosts: their sshd sessions have a clean environment, in a new namespace
    got = _sample_while(["unshare", "--net", _spinner(tmp_path), "-c", SPIN])
    assert "benchspin" not in got["others_by_command"], got
    assert got["ours_cpu_s"] > 0.3, got


def test_a_process_the_benchmark_started_with_its_own_environment_is_the_runs(tmp_path):
    # cold starts and orchestrator children get an environment of their own, without the marker
    got = _sample_while([_spinner(tmp_path), "-c", SPIN], parent=os.getpid())
    assert "benchspin" not in got["others_by_command"], got
    assert got["ours_cpu_s"] > 0.3, got
