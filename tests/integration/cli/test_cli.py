"""The ``tether`` command line, run as the real console script against real daemon subprocesses.

Each test gives the CLI its own ``TETHER_HOME``; a test that also uses the Python API points this
process at the same home (``monkeypatch.setenv``), so both sides see the same clusters. Cluster
names are unique: this process caches cluster handles by name. Every daemon a test starts is
stopped by the fixture that owns its home, even when the test fails.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import remote_code

import tether as rh

TETHER = Path(sys.executable).with_name("tether")
if not TETHER.exists():
    TETHER = Path(shutil.which("tether") or TETHER)


def tether_cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["TETHER_HOME"] = str(home)
    return subprocess.run([str(TETHER), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def _unique(prefix: str = "cli") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _daemon_pid(home: Path, cluster: str) -> int | None:
    try:
        return json.loads((home / "clusters" / cluster / "daemon.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _stop_all(home: Path) -> None:
    """Stop every daemon started under ``home``: with the CLI, then by signal if one survived."""
    for record in (home / "clusters").glob("*/daemon.json"):
        name, pid = record.parent.name, _daemon_pid(home, record.parent.name)
        tether_cli(home, "daemon", "stop", "--cluster", name)
        if pid and not _gone(pid, timeout=5) and b"tether.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
            _gone(pid)


def _assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("Error: ")
    for needle in needles:
        assert needle in result.stderr


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A TETHER_HOME of this test, shared by the CLI and this process's Python API."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("TETHER_HOME", str(path))
    yield path
    _stop_all(path)


@dataclass
class Running:
    home: Path
    name: str


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Running:
    """One daemon started with `tether daemon start`, for the tests that only look at it."""
    home = tmp_path_factory.mktemp("cli-home")
    name = _unique("shared")
    try:
        result = tether_cli(home, "daemon", "start", "--cluster", name)
        assert result.returncode == 0, result
        yield Running(home, name)
    finally:
        _stop_all(home)


@pytest.fixture
def api_on(monkeypatch):
    """Point this process's Python API at the home of ``running``."""

    def point(run: Running) -> rh.Cluster:
        monkeypatch.setenv("TETHER_HOME", str(run.home))
        return rh.cluster(name=run.name, launcher="local")

    return point


# -- help ----------------------------------------------------------------------------------------

COMMANDS = [
    ([], None),
    (["daemon"], None),
    (["daemon", "start"], "tether daemon start"),
    (["daemon", "stop"], "tether daemon stop"),
    (["daemon", "status"], "tether daemon status"),
    (["daemon", "restart"], "tether daemon restart"),
    (["keys"], "tether keys"),
    (["ls"], "tether ls"),
    (["logs"], "tether logs -n 100"),
    (["version"], "tether version"),
    (["run"], "tether run -- nvidia-smi"),
]


@pytest.mark.parametrize("command,example", COMMANDS, ids=[" ".join(c) or "tether" for c, _ in COMMANDS])
def test_help_explains_the_command_with_an_example(tmp_path, command, example):
    result = tether_cli(tmp_path, *command, "--help")
    assert result.returncode == 0, result
    assert f"Usage: tether {' '.join(command)}".strip() in result.stdout
    if example:
        assert "Example" in result.stdout
        assert example in result.stdout


def test_root_help_lists_every_command(tmp_path):
    result = tether_cli(tmp_path, "--help")
    for name in ("daemon", "keys", "ls", "logs", "version", "run"):
        assert re.search(rf"^\W*{name}\s", result.stdout, re.MULTILINE), name


def test_importing_the_cli_does_not_import_the_daemon():
    code = "import sys, tether.cli; print(sorted({'fastapi', 'uvicorn'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- tether daemon ... ---------------------------------------------------------------------------


def test_daemon_lifecycle_start_status_keys_stop(home):
    name = _unique()
    started = tether_cli(home, "daemon", "start", "--cluster", name)
    assert started.returncode == 0, started
    pid = _daemon_pid(home, name)
    assert pid and _alive(pid)
    state = home / "clusters" / name
    assert re.search(r"127\.0\.0\.1:\d+", started.stdout)
    assert str(pid) in started.stdout
    assert str(state) in started.stdout
    assert str(state / "daemon.log") in started.stdout

    status = tether_cli(home, "daemon", "status", "--cluster", name)
    assert status.returncode == 0, status
    assert "up" in status.stdout and str(pid) in status.stdout
    assert "No objects deployed" in status.stdout

    # Deploy with the Python API of this process: it finds the daemon the CLI started.
    cluster = rh.cluster(name=name, launcher="local")
    adder = rh.function(remote_code.add).to(cluster, name="adder")
    assert adder(1, 2) == 3
    cluster.put("answer", 42)
    keys = tether_cli(home, "keys", "--cluster", name)
    assert keys.returncode == 0, keys
    rows = {line.split("│")[1].strip(): line for line in keys.stdout.splitlines() if line.count("│") > 2}
    assert set(rows) >= {"adder", "answer"}
    assert "function" in rows["adder"] and "remote_code.add" in rows["adder"]
    assert "value" in rows["answer"] and "builtins.int" in rows["answer"]

    status = tether_cli(home, "daemon", "status", "--cluster", name)
    assert "adder" in status.stdout and "worker-default.log" in status.stdout

    again = tether_cli(home, "daemon", "start", "--cluster", name)
    assert again.returncode == 0 and "already up" in again.stdout
    assert _daemon_pid(home, name) == pid

    stopped = tether_cli(home, "daemon", "stop", "--cluster", name)
    assert stopped.returncode == 0, stopped
    assert _gone(pid)
    status = tether_cli(home, "daemon", "status", "--cluster", name)
    assert status.returncode == 3, status
    assert "down" in status.stdout
    assert f"tether daemon start --cluster {name}" in status.stdout

    twice = tether_cli(home, "daemon", "stop", "--cluster", name)
    assert twice.returncode == 0 and "not running" in twice.stdout


def test_restart_replaces_the_daemon(home):
    name = _unique()
    assert tether_cli(home, "daemon", "start", "--cluster", name).returncode == 0
    old = _daemon_pid(home, name)
    result = tether_cli(home, "daemon", "restart", "--cluster", name)
    assert result.returncode == 0, result
    new = _daemon_pid(home, name)
    assert new and new != old
    assert _gone(old) and _alive(new)
    assert tether_cli(home, "daemon", "status", "--cluster", name).returncode == 0


def test_daemon_start_uses_the_default_local_cluster(home):
    result = tether_cli(home, "daemon", "start")
    assert result.returncode == 0, result
    assert _alive(_daemon_pid(home, "local"))
    assert str(home / "clusters" / "local") in result.stdout


def test_daemon_start_loads_a_saved_cluster(home):
    name = _unique("saved")
    rh.cluster(name=name, launcher="local").save()
    result = tether_cli(home, "daemon", "start", "--cluster", name)
    assert result.returncode == 0, result
    assert _alive(_daemon_pid(home, name))


# -- keys / status on a down cluster ---------------------------------------------------------------


def test_keys_on_a_down_cluster_says_how_to_start_it_and_starts_nothing(home):
    name = _unique("down")
    result = tether_cli(home, "keys", "--cluster", name)
    _assert_clean_error(result, "not running", f"tether daemon start --cluster {name}")
    assert not (home / "clusters" / name).exists()


def test_keys_on_a_stopped_local_cluster(home):
    assert tether_cli(home, "daemon", "start").returncode == 0
    assert tether_cli(home, "daemon", "stop").returncode == 0
    result = tether_cli(home, "keys")
    _assert_clean_error(result, "cluster 'local' is not running", "tether daemon start --cluster local")
    assert _daemon_pid(home, "local") is None


def test_status_of_a_cluster_never_started(home):
    result = tether_cli(home, "daemon", "status")
    assert result.returncode == 3
    assert "down" in result.stdout and "tether daemon start --cluster local" in result.stdout
    assert not (home / "clusters" / "local").exists()


def test_keys_of_an_empty_cluster(running):
    result = tether_cli(running.home, "keys", "--cluster", running.name)
    assert result.returncode == 0, result
    assert "No objects" in result.stdout or "│" in result.stdout


# -- logs ------------------------------------------------------------------------------------------


def test_logs_print_the_daemon_log_and_worker_logs(running, api_on):
    cluster = api_on(running)
    rh.function(remote_code.add).to(cluster, name="logs-adder")(20, 22)

    daemon = tether_cli(running.home, "logs", "--cluster", running.name)
    assert daemon.returncode == 0, daemon
    assert f"daemon for '{running.name}'" in daemon.stdout

    one = tether_cli(running.home, "logs", "--cluster", running.name, "-n", "1")
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 1

    worker = tether_cli(running.home, "logs", "--cluster", running.name, "--env", "default")
    assert worker.returncode == 0, worker
    assert "adding 20 and 22" in worker.stdout

    missing = tether_cli(running.home, "logs", "--cluster", running.name, "--env", "nope")
    _assert_clean_error(missing, "no worker log for env 'nope'", "default")


def test_logs_follow_prints_new_lines_until_interrupted(running, api_on):
    adder = rh.function(remote_code.add).to(api_on(running), name="follow-adder")
    adder(0, 0)  # the worker log exists
    env = {**os.environ, "TETHER_HOME": str(running.home)}
    proc = subprocess.Popen([str(TETHER), "logs", "--cluster", running.name, "--env", "default",
                             "-n", "0", "-f"], env=env, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        deadline, line = time.monotonic() + 30, None
        while line is None and time.monotonic() < deadline:
            adder(1234, 4321)  # until `logs -f` has opened the log, a line may land before its end
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                pass
        assert line == "adding 1234 and 4321\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_logs_of_a_cluster_never_started(home):
    result = tether_cli(home, "logs", "--cluster", "never")
    _assert_clean_error(result, "no daemon log", "tether daemon start --cluster never")


# -- run -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command,code",
    [(["--", "true"], 0), (["--", "exit 7"], 7), (["--", "echo out; echo err >&2; exit 3"], 3),
     (["false"], 1), (["--", "kill -9 $$"], 137)],
    ids=["ok", "exit-7", "output-then-3", "argv-false", "killed"],
)
def test_run_exits_with_the_command_exit_code(running, command, code):
    result = tether_cli(running.home, "run", "--cluster", running.name, *command)
    assert result.returncode == code, result
    if "echo out" in command[-1]:
        assert result.stdout == "out\n"
        assert result.stderr == "err\n"


def test_run_quotes_an_argv(running):
    result = tether_cli(running.home, "run", "--cluster", running.name, "printf", "[%s]", "a b", "$HOME")
    assert result.returncode == 0, result
    assert result.stdout == "[a b][$HOME]"


def test_run_runs_on_the_cluster(running):
    pid = _daemon_pid(running.home, running.name)
    result = tether_cli(running.home, "run", "--cluster", running.name, "--", "echo $PPID")
    assert result.returncode == 0, result
    assert result.stdout.strip() == str(pid)  # bash is a child of the daemon, not of the CLI


def test_run_into_a_closed_pipe_stops_quietly(running):
    script = (f"'{TETHER}' run --cluster {running.name} -- 'seq 1 200000' | head -1; "
              "echo rc=${PIPESTATUS[0]}")
    result = subprocess.run(["bash", "-c", script], env={**os.environ, "TETHER_HOME": str(running.home)},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout == "1\nrc=141\n", result
    assert "Error" not in result.stderr and "Traceback" not in result.stderr


def test_run_starts_the_local_cluster_on_demand(home):
    result = tether_cli(home, "run", "--", "echo hello")
    assert result.returncode == 0, result
    assert result.stdout == "hello\n"
    assert tether_cli(home, "daemon", "status").returncode == 0


def test_run_never_starts_an_unknown_cluster(home):
    name = _unique("typo")
    result = tether_cli(home, "run", "--cluster", name, "--", "true")
    _assert_clean_error(result, "not running", f"tether daemon start --cluster {name}")
    assert not (home / "clusters" / name).exists()


# -- version / ls ------------------------------------------------------------------------------------


def test_version_shows_the_client_and_a_running_daemon(running):
    result = tether_cli(running.home, "version", "--cluster", running.name)
    assert result.returncode == 0, result
    assert f"client: tether {rh.__version__}" in result.stdout
    assert f"daemon of cluster '{running.name}': tether {rh.__version__}" in result.stdout
    assert str(_daemon_pid(running.home, running.name)) in result.stdout


def test_version_of_a_down_cluster(home):
    result = tether_cli(home, "version")
    assert result.returncode == 0, result
    assert f"client: tether {rh.__version__}" in result.stdout
    assert "not running" in result.stdout
    assert tether_cli(home, "--version").stdout.strip() == f"tether {rh.__version__}"


def test_ls_lists_saved_resources(home):
    empty = tether_cli(home, "ls")
    assert empty.returncode == 0 and "No resources saved" in empty.stdout
    cluster_name, env_name = _unique("gpu"), _unique("env")
    rh.cluster(name=cluster_name, launcher="local").save()
    rh.env(env_vars={"A": "1"}, name=env_name).save()
    result = tether_cli(home, "ls")
    assert result.returncode == 0, result
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.stdout.splitlines() if line.count("│") > 2}
    assert rows == {cluster_name: "cluster", env_name: "env"}


# -- expected errors: a message and what to do, no traceback -----------------------------------------


def test_a_saved_cluster_with_an_unknown_launcher(home):
    (home / "resources").mkdir()
    (home / "resources" / "odd.json").write_text(json.dumps(
        {"type": "cluster", "name": "odd", "launcher": "nope", "spec": {}}))
    _assert_clean_error(tether_cli(home, "daemon", "start", "--cluster", "odd"), "no launcher named 'nope'")


def test_a_name_saved_as_something_else(home):
    env_name = _unique("env")
    rh.env(env_vars={"A": "1"}, name=env_name).save()
    _assert_clean_error(tether_cli(home, "keys", "--cluster", env_name), "not a cluster")


@pytest.mark.parametrize("name", ["../escape", "/abs", "-x"], ids=["dotdot", "absolute", "dash"])
def test_a_bad_cluster_name(home, name):
    result = tether_cli(home, "daemon", "start", f"--cluster={name}")
    _assert_clean_error(result, "bad cluster name")
    assert not (home / "clusters").exists()


def test_a_daemon_that_cannot_start(home):
    (home / "resources").mkdir()
    (home / "resources" / "broken.json").write_text(json.dumps(
        {"type": "cluster", "name": "broken", "launcher": "local", "spec": {"python": "/no/such/python"}}))
    _assert_clean_error(tether_cli(home, "daemon", "start", "--cluster", "broken"),
                        "could not bring up cluster 'broken'")
