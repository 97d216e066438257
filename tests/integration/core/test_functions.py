"""Functions as live services: arguments, results, names, envs, streamed logs, serialize=True."""

from __future__ import annotations

import re
import threading
import time

import pytest
import remote_code

import tether as rh
from tether.plugins import get_plugin_manager, hookimpl


@pytest.fixture(scope="module")
def remote_add(session_cluster):
    return rh.function(remote_code.add).to(session_cluster)


@pytest.fixture(scope="module")
def remote_echo(session_cluster):
    return rh.function(remote_code.echo).to(session_cluster)


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((1, 2), {}, 3),
        ((1,), {}, 2),
        ((1,), {"b": 41}, 42),
        ((), {"a": 2, "b": 3}, 5),
        (("ab", "cd"), {}, "abcd"),
        (([1], [2, 3]), {}, [1, 2, 3]),
    ],
    ids=["positional", "default", "keyword", "all-keywords", "strings", "lists"],
)
def test_call_returns_the_result(remote_add, args, kwargs, expected):
    assert remote_add(*args, **kwargs) == expected


def test_args_and_kwargs_arrive_intact(remote_echo):
    value = {"nested": [1, 2.5, None, ("t", b"bytes")], "set": {1, 2}}
    args, kwargs = remote_echo(1, "two", value, flag=True, obj=value)
    assert args == (1, "two", value)
    assert kwargs == {"flag": True, "obj": value}


def test_keyword_only_arguments(session_cluster):
    fn = rh.function(remote_code.kwargs_only).to(session_cluster)
    assert fn(values=[1, 2], scale=10, offset=1) == [11, 21]
    assert fn() == []


def test_none_and_large_results(session_cluster):
    echo = rh.function(remote_code.echo).to(session_cluster, name="echo-large")
    big = b"x" * (5 * 1024 * 1024)
    args, _ = echo(None, big)
    assert args == (None, big)


def test_numpy_arrays_round_trip(remote_echo):
    np = pytest.importorskip("numpy")
    array = np.random.default_rng(1).random((512, 256))
    (back, view), _ = remote_echo(array, array[::2])
    np.testing.assert_array_equal(back, array)
    np.testing.assert_array_equal(view, array[::2])


def test_runs_in_a_worker_process_not_here(session_cluster):
    import os

    remote_pid = rh.function(remote_code.pid).to(session_cluster)
    assert remote_pid() != os.getpid()
    assert remote_pid() == remote_pid()  # one worker per env serves every call


def test_to_with_a_name_makes_a_named_service(session_cluster):
    fn = rh.function(remote_code.add).to(session_cluster, name="adder-by-name")
    assert fn.name == "adder-by-name"
    names = session_cluster.keys()
    assert "adder-by-name" in names
    assert fn(2, 2) == 4
    by_name = session_cluster.get("adder-by-name")
    assert by_name(3, b=4) == 7


def test_to_with_an_env_runs_in_that_env(session_cluster):
    env = rh.env(env_vars={"TETHER_TEST_FN_ENV": "from-env"}, name="fn-env")
    fn = rh.function(remote_code.env_var).to(session_cluster, env=env, name="env-var-fn")
    assert fn("TETHER_TEST_FN_ENV") == "from-env"
    default = rh.function(remote_code.env_var).to(session_cluster, name="env-var-default")
    assert default("TETHER_TEST_FN_ENV") is None
    pid_in_env = rh.function(remote_code.pid).to(session_cluster, env="fn-env", name="pid-in-fn-env")
    pid_default = rh.function(remote_code.pid).to(session_cluster, name="pid-in-default")
    assert pid_in_env() != pid_default()


def test_function_shortcut_with_system(session_cluster):
    fn = rh.function(remote_code.add, system=session_cluster, name="add-shortcut")
    assert fn.system is session_cluster
    assert fn(1, 1) == 2


def test_local_call_runs_here(remote_add, capfd):
    assert remote_add.local(5, 6) == 11
    assert "adding 5 and 6" in capfd.readouterr().out  # printed by this process


# -- streamed output ---------------------------------------------------------------------------


def test_prints_stderr_and_logging_reach_the_caller(session_cluster, capfd):
    fn = rh.function(remote_code.emit_output).to(session_cluster)
    capfd.readouterr()
    assert fn(3) == 3
    out, err = capfd.readouterr()
    out, err = (re.sub(r"(?m)^\(emit_output pid=\d+\) ", "", text) for text in (out, err))  # marked (client/marks.py)
    assert [f"stdout line {i}" for i in range(3)] == [line for line in out.splitlines() if line.startswith("stdout")]
    assert [f"stderr line {i}" for i in range(3)] == [line for line in err.splitlines() if line.startswith("stderr")]
    assert all(f"logged line {i}" in err for i in range(3))
    assert "stderr line" not in out and "stdout line" not in err


def test_prints_stream_while_the_call_runs(session_cluster, capfd, tmp_path):
    """The print arrives before the call returns: the test only releases the call once it saw it."""
    fn = rh.function(remote_code.wait_for_file).to(session_cluster)
    go = tmp_path / "go"
    capfd.readouterr()
    result: dict = {}
    caller = threading.Thread(target=lambda: result.update(value=fn(str(go))))
    caller.start()
    seen = ""
    deadline = time.monotonic() + 30
    while "waiting for the go file" not in seen and time.monotonic() < deadline:
        seen += capfd.readouterr().out
        time.sleep(0.01)
    assert caller.is_alive(), "the call finished before its print was seen"
    go.touch()
    caller.join(30)
    assert "waiting for the go file" in seen
    assert result["value"] == "released"


def test_stream_logs_false_on_to_silences_output(session_cluster, capfd):
    fn = rh.function(remote_code.emit_output).to(session_cluster, name="quiet-emit", stream_logs=False)
    capfd.readouterr()
    assert fn(2) == 2
    out, err = capfd.readouterr()
    assert "stdout line" not in out
    assert "stderr line" not in err and "logged line" not in err
    # the per-call flag overrides the deploy-time default
    fn(1, stream_logs=True)
    assert "stdout line 0" in capfd.readouterr().out


def test_stream_logs_false_per_call_silences_output(session_cluster, capfd):
    fn = rh.function(remote_code.emit_output).to(session_cluster, name="loud-emit")
    capfd.readouterr()
    assert fn(2, stream_logs=False) == 2
    out, err = capfd.readouterr()
    assert "stdout line" not in out and "stderr line" not in err and "logged line" not in err
    fn(1)
    assert "stdout line 0" in capfd.readouterr().out


def test_stream_logs_is_per_call_under_concurrency(session_cluster, capfd):
    """A silenced call does not silence, or get the output of, a concurrent loud one."""
    fn = rh.function(remote_code.log_lines).to(session_cluster, name="log-lines")
    capfd.readouterr()
    threads = [threading.Thread(target=fn, args=(3,), kwargs={"stream_logs": loud}) for loud in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    out = capfd.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("(log-lines pid=")] == [
        line for line in out.splitlines() if " line " in line]  # marked with its service and worker
    assert [line.split(") ", 1)[1] for line in out.splitlines() if " line " in line] == ["line 0", "line 1", "line 2"]


# -- serialize=True and code without an import path -------------------------------------------


def test_serialize_sends_a_test_defined_function_by_value(session_cluster):
    factor = 7

    def scale(values):
        return [v * factor for v in values]

    fn = rh.function(scale, serialize=True).to(session_cluster, name="scale-by-value")
    assert fn([1, 2, 3]) == [7, 14, 21]


def test_serialize_sends_a_lambda(session_cluster):
    fn = rh.function(lambda x: x**2, name="square", serialize=True).to(session_cluster)
    assert fn(12) == 144


def _main_function():
    namespace = {"__name__": "__main__"}
    exec("def from_main(x):\n    return ('main', x)\n", namespace)  # noqa: S102 - a real __main__ function
    return namespace["from_main"]


def test_serialize_sends_a_main_function(session_cluster):
    fn = _main_function()
    assert fn.__module__ == "__main__"
    remote = rh.function(fn, serialize=True).to(session_cluster)
    assert remote(1) == ("main", 1)


def _nested():
    def inner(x):
        return x

    return inner


@pytest.mark.parametrize(
    ("make", "where"),
    [(_main_function, "__main__"), (_nested, "inside another function"), (lambda: lambda x: x, "lambda")],
    ids=["main", "nested", "lambda"],
)
def test_code_without_import_path_needs_serialize(make, where):
    with pytest.raises(rh.ConfigError) as info:
        rh.function(make())
    message = str(info.value)
    assert "serialize=True" in message
    assert where in message


def test_module_of_main_class_needs_serialize():
    namespace = {"__name__": "__main__"}
    exec("class FromMain:\n    pass\n", namespace)  # noqa: S102 - a real __main__ class
    with pytest.raises(rh.ConfigError, match="serialize=True"):
        rh.module(namespace["FromMain"])


# -- plugins see deploys -------------------------------------------------------------------------


def test_deploy_event_reaches_a_plugin(session_cluster):
    events: list[dict] = []

    class Recorder:
        @hookimpl
        def tether_on_deploy(self, event):
            events.append(event)

    pm = get_plugin_manager()
    plugin = Recorder()
    pm.register(plugin, name="test-recorder")
    try:
        rh.function(remote_code.add).to(session_cluster, name="add-with-event")
    finally:
        pm.unregister(plugin)
    assert [(e["name"], e["kind"], e["cluster"]) for e in events] == [("add-with-event", "function", session_cluster.name)]


# -- curl and other languages: JSON over GET/POST ------------------------------------------------


@pytest.fixture(scope="module")
def http(session_cluster):
    import httpx

    client = session_cluster.client
    with httpx.Client(base_url=client.url, headers={"Authorization": f"Bearer {client.token}"}) as http:
        yield http


@pytest.mark.parametrize(
    ("verb", "path", "body", "expected"),
    [
        ("GET", "/json-add/call?a=1&b=2", None, 3),
        ("GET", "/json-add?a=40", None, 41),
        ("GET", "/json-add/call?a=%22x%22&b=%22y%22", None, "xy"),
        ("POST", "/json-add/call", {"args": [1], "kwargs": {"b": 5}}, 6),
        ("POST", "/json-add/call", {"a": 2, "b": 3}, 5),
        ("POST", "/json-add/call", [10, 20], 30),
    ],
    ids=["get-query", "get-short-path", "get-json-strings", "post-args-kwargs", "post-kwargs", "post-list"],
)
def test_json_calls_for_curl(session_cluster, http, verb, path, body, expected):
    rh.function(remote_code.add).to(session_cluster, name="json-add")
    resp = http.request(verb, path, json=body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == expected


def test_json_calls_on_an_instance(session_cluster, http):
    rh.module(remote_code.Trainer).to(session_cluster)("json-model", name="json-trainer")
    assert http.post("/json-trainer/train", json={"batches": 2}).json() == 2
    assert http.get("/json-trainer/summary").json() == "json-model@2"
    assert http.get("/json-trainer/steps").json() == 2


def test_json_call_error_carries_type_and_traceback(session_cluster, http):
    rh.function(remote_code.raise_value_error).to(session_cluster, name="json-raise")
    resp = http.get("/json-raise/call", params={"msg": "from curl"})
    assert resp.status_code == 500
    body = resp.json()
    assert body["type"] == "builtins.ValueError" and body["message"] == "from curl"
    assert "raise_value_error" in body["traceback"]


def test_redeploy_under_the_same_name_into_another_env_moves_it(session_cluster):
    env_a, env_b = rh.env(name="move-env-a"), rh.env(name="move-env-b")
    pid_a = rh.function(remote_code.pid).to(session_cluster, env=env_a, name="moving-pid")()
    moved = rh.function(remote_code.pid).to(session_cluster, env=env_b, name="moving-pid")
    assert moved() != pid_a
    assert session_cluster.status()["objects"]["moving-pid"]["env"] == "move-env-b"
    assert rh.function(remote_code.pid).to(session_cluster, env=env_a, name="pid-in-a")() == pid_a
    for env in (env_a, env_b):
        session_cluster.delete(env.name)
