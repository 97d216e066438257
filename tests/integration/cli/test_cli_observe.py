"""``tether status``, ``calls``, ``logs --call/--service``, ``down``, ``rm``, ``dashboard``,
completion and typo suggestions: the real console script against real daemons.

One local cluster serves the module (its own ``TETHER_HOME``, shared by the CLI and this
process's Python API); a few calls with known ids are made on it up front.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
import records_code
from cli_support import TETHER, Lines, cli, cli_env, cli_json, dashboard_page, health

import tether as rh
from tether import state

pytestmark = pytest.mark.timeout(120)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@dataclass
class Obs:
    name: str
    cluster: rh.Cluster
    chatty: str  # service names
    fail: str
    ok_id: str  # call ids
    failed_id: str


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    """A local cluster of the module's own TETHER_HOME, with an ok call and a failed one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TETHER_HOME", str(tmp_path_factory.mktemp("observe-home")))
        cluster = rh.cluster(name=_unique("obs"), launcher="local").up_if_not()
        try:
            chatty = rh.function(records_code.chatty).to(cluster, name=_unique("chatty"))
            fail = rh.function(records_code.fail).to(cluster, name=_unique("fail"))
            ok_id, failed_id = uuid.uuid4().hex, uuid.uuid4().hex
            cluster.client.call(chatty.name, "call", (3,), call_id=ok_id)
            with pytest.raises(ValueError):
                cluster.client.call(fail.name, "call", ("no luck",), call_id=failed_id)
            yield Obs(cluster.name, cluster, chatty.name, fail.name, ok_id, failed_id)
        finally:
            cluster.teardown()


def _assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


# -- status ----------------------------------------------------------------------------------------


def test_status_shows_a_running_cluster_and_a_down_one_without_starting_it(obs):
    down = _unique("down")
    rh.cluster(name=down, launcher="local", autostop_mins=30).save()

    clusters = {c["name"]: c for c in cli_json("status")["clusters"]}

    up = clusters[obs.name]
    assert (up["status"], up["launcher"], up["version"]) == ("up", "local", rh.__version__)
    assert {s["name"] for s in up["services"]} == {obs.chatty, obs.fail}
    (worker,) = up["workers"]
    assert worker["env"] == "default" and worker["alive"] is True
    assert isinstance(worker["memory"], int) and worker["memory"] > 1 << 20
    assert clusters[down]["status"] == "down" and clusters[down]["autostop_mins"] == 30
    assert not (state.cluster_dir(down) / "daemon.json").exists()  # not started

    text = cli("status")
    assert text.returncode == 0, text
    assert obs.name in text.stdout and down in text.stdout and "MiB" in text.stdout
    assert not (state.cluster_dir(down) / "daemon.json").exists()


# -- calls -----------------------------------------------------------------------------------------


def test_calls_lists_records_with_filters(obs):
    failed = cli_json("calls", obs.name, "--failed")
    assert [r["id"] for r in failed] == [obs.failed_id]
    assert (failed[0]["outcome"], failed[0]["error_type"], failed[0]["object"]) == ("error", "ValueError", obs.fail)
    of_chatty = cli_json("calls", obs.name, "--service", obs.chatty)
    assert [r["id"] for r in of_chatty] == [obs.ok_id] and of_chatty[0]["outcome"] == "ok"

    table = cli("calls", obs.name)
    assert table.returncode == 0, table
    for needle in (obs.ok_id[:8], obs.failed_id[:8], f"{obs.fail}.call", "ValueError: no luck", "error", "ok"):
        assert needle in table.stdout, needle
    assert cli("calls", "--cluster", obs.name, "--failed").stdout.count("│ error") == 1


def test_calls_follow_sees_a_call_made_after_it_started(obs):
    follow = Lines("calls", obs.name, "--follow", "--json", "--limit", "1")
    try:
        follow.until(lambda line: json.loads(line)["event"] == "call")  # the stream is open
        call_id = uuid.uuid4().hex
        obs.cluster.client.call(obs.chatty, "call", (1,), call_id=call_id)
        ended = follow.until(lambda line: json.loads(line)["event"] == "ended")
        assert json.loads(ended)["call"]["id"] == call_id
    finally:
        follow.stop()
    assert follow.proc.returncode == 0


def test_calls_pause_and_resume_recording_while_calls_are_served(obs):
    paused = cli_json("calls", obs.name, "--pause")
    assert (paused["enabled"], paused["paused"]) == (False, True)
    try:
        unrecorded = uuid.uuid4().hex
        assert obs.cluster.client.call(obs.chatty, "call", (1,), call_id=unrecorded) == 1  # served
        table = cli("calls", obs.name)
        assert table.returncode == 0, table
        assert "Recording is paused" in table.stderr and "--resume" in table.stderr
        assert obs.ok_id[:8] in table.stdout  # what was recorded before the pause is still there
    finally:
        resumed = cli("calls", obs.name, "--resume")
    assert resumed.returncode == 0 and "Recording calls" in resumed.stdout, resumed
    recorded = uuid.uuid4().hex
    obs.cluster.client.call(obs.chatty, "call", (2,), call_id=recorded)
    ids = [r["id"] for r in cli_json("calls", obs.name, "--service", obs.chatty, "--limit", "100")]
    assert recorded in ids and unrecorded not in ids and obs.ok_id in ids
    both = cli("calls", obs.name, "--pause", "--resume")
    assert both.returncode == 2 and "not both" in both.stderr


# -- logs ------------------------------------------------------------------------------------------


def test_logs_of_a_call_and_of_a_service(obs):
    one = cli("logs", obs.name, "--call", obs.ok_id[:8])
    assert one.returncode == 0, one
    assert one.stdout == "line 0\nline 1\nline 2\n"
    events = [json.loads(x) for x in cli("logs", obs.name, "--call", obs.failed_id, "--json").stdout.splitlines()]
    assert events[0]["stream"] == "err" and events[0]["text"] == "about to fail\n"
    assert events[-1] == {"event": "end", "outcome": "error"}

    service = cli("logs", obs.name, "--service", obs.fail)
    assert service.returncode == 0, service
    assert obs.failed_id[:8] in service.stdout and "ValueError: no luck" in service.stdout
    assert "about to fail" in service.stderr


def test_logs_follow_streams_a_running_call_until_it_ends(obs, tmp_path):
    slow = rh.function(records_code.gated_printer).to(obs.cluster, name=_unique("slow"))
    call_id, gate = uuid.uuid4().hex, tmp_path / "gate"
    caller = threading.Thread(target=obs.cluster.client.call, args=(slow.name, "call", (4, str(gate))),
                              kwargs={"call_id": call_id}, daemon=True)
    caller.start()
    follow = Lines("logs", obs.name, "--call", call_id, "--follow")
    try:
        assert follow.until(lambda line: line.startswith("tick")) == "tick 0\n"
        assert caller.is_alive()  # the call waits for the gate: the line came while it runs
        gate.touch()
        rest = [follow.until(lambda line: line.startswith("tick")) for _ in range(3)]
        assert rest == ["tick 1\n", "tick 2\n", "tick 3\n"]
        assert follow.proc.wait(timeout=10) == 0  # it ends with the call
    finally:
        follow.stop()
    assert "logged 3" in follow.proc.stderr.read()


def test_logs_of_an_unknown_call_id(obs):
    result = cli("logs", obs.name, "--call", "feedfacecafe")
    _assert_clean_error(result, "no call with id 'feedfacecafe'", f"tether calls {obs.name}")


# -- down, rm --------------------------------------------------------------------------------------


def test_a_daemon_that_does_not_answer_is_unreachable_then_down_tears_it_down(obs):
    cluster = rh.cluster(name=_unique("gone"), launcher="local").up_if_not()
    pid = state.read_daemon_record(state.cluster_dir(cluster.name))["pid"]

    os.kill(pid, signal.SIGSTOP)  # up by its records, silent on its socket
    try:
        started = time.monotonic()
        clusters = {c["name"]: c for c in cli_json("status")["clusters"]}
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert clusters[cluster.name]["status"] == "unreachable", clusters[cluster.name]
    assert "timed out" in clusters[cluster.name]["reason"], clusters[cluster.name]
    assert clusters[obs.name]["status"] == "up"  # asked at the same time
    assert took < 10

    _assert_clean_error(cli("down", cluster.name), "needs --yes")  # no terminal: it must be asked
    assert state.pid_alive(pid)
    result = cli("down", cluster.name, "--yes")
    assert result.returncode == 0, result
    assert "is down" in result.stdout
    deadline = time.monotonic() + 10
    while state.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not state.pid_alive(pid)
    _assert_clean_error(cli("down", "no-such-cluster", "--yes"), "no cluster named 'no-such-cluster'",
                        obs.name)


def test_rm_deletes_a_saved_resource(obs):
    env_name = _unique("env")
    rh.env(env_vars={"A": "1"}, name=env_name).save()
    _assert_clean_error(cli("rm", "nothing-here", "--yes"), "no resource named 'nothing-here'", env_name)
    result = cli("rm", env_name, "--yes")
    assert result.returncode == 0, result
    assert env_name not in {r["name"] for r in cli_json("ls")}


# -- dashboard -------------------------------------------------------------------------------------


def test_dashboard_prints_a_working_url(obs):
    result = cli("dashboard", obs.name, "--no-browser")
    assert result.returncode == 0, result
    url = result.stdout.strip()
    endpoint = obs.cluster.launcher.endpoint(obs.cluster)
    assert url == f"http://127.0.0.1:{endpoint.port}/_tether/dashboard/#token={endpoint.token}"
    assert health(url)["cluster"] == obs.name
    assert "app.js" in dashboard_page(url)  # the daemon's dashboard, not a 404


def test_ssh_to_a_local_cluster_opens_a_shell_here(obs):
    result = cli("ssh", obs.name, SHELL="/bin/sh")  # stdin is /dev/null: the shell exits at once
    assert result.returncode == 0, result
    assert f"Cluster '{obs.name}' is this machine" in result.stderr
    assert str(state.cluster_dir(obs.name)) in " ".join(result.stderr.split())
    pwd = cli("ssh", obs.name, "--", "pwd", SHELL="/bin/sh")
    assert (pwd.returncode, pwd.stdout) == (0, f"{state.cluster_dir(obs.name)}\n"), pwd


# -- help, typos and completion --------------------------------------------------------------------

NEW_COMMANDS = {"status": "tether status --json", "calls": "tether calls dev --failed --service embed",
                "logs": "tether logs dev --call 1a2b3c4d --follow", "dashboard": "tether dashboard rack --port 8265",
                "down": "tether down dev --yes", "rm": "tether rm old-gpu", "ssh": "tether ssh rack --node 1",
                "notebook": "tether notebook rack --node 1 --port 9999"}


def test_help_of_each_new_command_has_examples():
    procs = {name: subprocess.Popen([str(TETHER), name, "--help"], env=cli_env(), stdout=subprocess.PIPE, text=True)
             for name in NEW_COMMANDS}  # at once: each is a cold interpreter
    for name, proc in procs.items():
        text, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, name
        assert f"Usage: tether {name}" in text and "Example" in text, name
        assert NEW_COMMANDS[name] in text, name


def test_a_typo_suggests_the_command_meant(tmp_path):
    for typo, meant in (("staus", "status"), ("start", "daemon start")):
        result = cli(typo)
        assert result.returncode == 2, result
        assert f"No such command '{typo}'. Did you mean '{meant}'?" in result.stderr


def test_shell_completion(obs, tmp_path):
    shown = cli("--show-completion", "bash", SHELL="/bin/bash", HOME=str(tmp_path))
    assert shown.returncode == 0, shown
    assert "_TETHER_COMPLETE" in shown.stdout
    installed = cli("--install-completion", "bash", SHELL="/bin/bash", HOME=str(tmp_path))
    assert installed.returncode == 0, installed
    names = cli(_TETHER_COMPLETE="complete_bash", COMP_WORDS=f"tether calls {obs.name[:5]}", COMP_CWORD="2")
    assert obs.name in names.stdout.split()
