"""The cluster's object store, envs and their worker processes, run_bash / run_python."""

from __future__ import annotations

import os
import time
import uuid

import numpy as np
import pytest
import remote_code

import tether as rh


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


# -- put / get / delete / keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [42, "text", None, {"a": [1, 2, {"b": (3, 4)}]}, b"\x00\xff" * 1000, np.arange(100_000, dtype=np.float32)],
    ids=["int", "str", "none", "nested", "bytes", "numpy"],
)
def test_put_then_get_returns_the_value(session_cluster, value):
    key = _unique("value")
    session_cluster.put(key, value)
    got = session_cluster.get(key)
    if isinstance(value, np.ndarray):
        np.testing.assert_array_equal(got, value)
        assert got.dtype == value.dtype
    else:
        assert got == value
    session_cluster.delete(key)


def test_put_overwrites(session_cluster):
    key = _unique("overwrite")
    session_cluster.put(key, 1)
    session_cluster.put(key, 2)
    assert session_cluster.get(key) == 2
    assert session_cluster.keys().count(key) == 1


def test_keys_lists_every_kind_of_object(session_cluster):
    value, fn, inst = _unique("k-value"), _unique("k-fn"), _unique("k-inst")
    session_cluster.put(value, [1])
    rh.function(remote_code.add).to(session_cluster, name=fn)
    rh.module(remote_code.Counter).to(session_cluster)(name=inst)
    assert {value, fn, inst} <= set(session_cluster.keys())
    for name in (value, fn, inst):
        session_cluster.delete(name)
    assert not {value, fn, inst} & set(session_cluster.keys())


def test_get_remote_gives_a_handle_on_a_value(session_cluster):
    key = _unique("remote-value")
    session_cluster.put(key, {"x": 1})
    handle = session_cluster.get(key, remote=True)
    assert handle.fetch() == {"x": 1}


@pytest.mark.parametrize("default", [None, 0, "fallback"], ids=["none", "zero", "str"])
def test_get_missing_returns_the_default(session_cluster, default):
    assert session_cluster.get(_unique("missing"), default=default) == default


def test_get_missing_raises_unless_a_default_is_given(session_cluster):
    missing = _unique("missing")
    session_cluster.put(_unique("held"), 1)
    with pytest.raises(rh.NotFoundError, match=f"nothing named '{missing}'.*it holds: .*held-"):
        session_cluster.get(missing)
    assert session_cluster.get(missing, None) is None
    assert session_cluster.get(name=missing, default=7) == 7
    with pytest.raises(KeyError):
        session_cluster.get(missing, default=KeyError)  # Runhouse's way of asking for an error


@pytest.mark.parametrize("kind", ["function", "instance", "value"])
def test_delete_frees_the_object(session_cluster, kind):
    name = _unique(f"doomed-{kind}")
    if kind == "function":
        stub = rh.function(remote_code.add).to(session_cluster, name=name)
        def call():
            return stub(1, 2)
    elif kind == "instance":
        stub = rh.module(remote_code.Counter).to(session_cluster)(name=name)
        call = stub.increment
    else:
        session_cluster.put(name, "v")
        stub = session_cluster.get(name, remote=True)
        call = stub.fetch
    call()
    session_cluster.delete(name)
    names = session_cluster.keys()
    assert name not in names
    with pytest.raises(rh.NotFoundError, match=name):
        call()
    assert session_cluster.get(name, default="gone") == "gone"


def test_deleted_instance_is_released_in_the_worker(session_cluster):
    """After delete, the worker holds no reference: the instance is garbage collected there."""
    tag = _unique("tag")
    rh.module(remote_code.Tracked).to(session_cluster)(tag, name=tag)
    live_tags = rh.function(remote_code.live_tags).to(session_cluster)
    assert tag in live_tags()
    session_cluster.delete(tag)
    assert tag not in live_tags()


def test_delete_unknown_name_is_not_found(session_cluster):
    with pytest.raises(rh.NotFoundError):
        session_cluster.delete(_unique("never-existed"))


def test_deleting_an_env_stops_its_worker(session_cluster):
    env = rh.env(name=_unique("env-doomed"))
    fn_name = _unique("pid-doomed")
    remote_pid = rh.function(remote_code.pid).to(session_cluster, env=env, name=fn_name)
    pid = remote_pid()
    os.kill(pid, 0)  # alive
    session_cluster.delete(env.name)
    assert _gone(pid), f"worker {pid} of the deleted env is still running"
    names = session_cluster.keys()
    assert fn_name not in names  # its objects went with it
    with pytest.raises(rh.NotFoundError):
        remote_pid()


def test_status_shows_envs_and_workers(session_cluster):
    env = rh.env(name=_unique("env-status"))
    fn = rh.function(remote_code.pid).to(session_cluster, env=env, name=_unique("pid-status"))
    pid = fn()
    status = session_cluster.status()
    assert status["envs"][env.name]["worker"]["pid"] == pid
    assert status["objects"][fn.name]["env"] == env.name
    session_cluster.delete(env.name)


# -- envs ----------------------------------------------------------------------------------------


def test_env_vars_and_working_dir(session_cluster, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = rh.env(env_vars={"TETHER_TEST_A": "alpha", "TETHER_TEST_N": 3}, name=_unique("env-vars"),
                 working_dir=str(workdir))
    get_var = rh.function(remote_code.env_var).to(session_cluster, env=env, name=_unique("var"))
    get_cwd = rh.function(remote_code.cwd).to(session_cluster, env=env, name=_unique("cwd"))
    assert get_var("TETHER_TEST_A") == "alpha"
    assert get_var("TETHER_TEST_N") == "3"
    assert os.path.realpath(get_cwd()) == os.path.realpath(workdir)
    session_cluster.delete(env.name)


def test_two_envs_are_two_worker_processes(session_cluster):
    env_a, env_b = rh.env(name=_unique("env-a")), rh.env(name=_unique("env-b"))
    pid_a = rh.function(remote_code.pid).to(session_cluster, env=env_a, name=_unique("pid-a"))
    pid_b = rh.function(remote_code.pid).to(session_cluster, env=env_b, name=_unique("pid-b"))
    pid_a2 = rh.function(remote_code.pid).to(session_cluster, env=env_a, name=_unique("pid-a2"))
    assert pid_a() != pid_b()
    assert pid_a() == pid_a2()  # objects of one env share its worker
    assert os.getpid() not in (pid_a(), pid_b())
    for env in (env_a, env_b):
        session_cluster.delete(env.name)


def test_instances_in_two_envs_keep_separate_state(session_cluster):
    env_a, env_b = rh.env(name=_unique("env-sa")), rh.env(name=_unique("env-sb"))
    Counter = rh.module(remote_code.Counter)
    a = Counter.to(session_cluster, env=env_a)(start=100, name=_unique("ca"))
    b = Counter.to(session_cluster, env=env_b)(start=0, name=_unique("cb"))
    a.increment()
    assert (a.count, b.count) == (101, 0)
    for env in (env_a, env_b):
        session_cluster.delete(env.name)


@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "pydantic", "starlette", "httpx"])
def test_worker_never_imports_the_daemons_dependencies(session_cluster, module):
    loaded = rh.function(remote_code.imported_modules).to(session_cluster)()
    assert "tether.protocol.wire" in loaded and "cloudpickle" in loaded  # it really is a worker
    assert not [m for m in loaded if m == module or m.startswith(module + ".")]


# -- run_bash / run_python ---------------------------------------------------------------------


def test_run_bash_returns_exit_codes_and_output(session_cluster):
    results = session_cluster.run_bash(["echo hello", "echo oops >&2; exit 3", "printf 'a\\nb\\n'"])
    assert results == [(0, "hello\n", ""), (3, "", "oops\n"), (0, "a\nb\n", "")]


def test_run_bash_a_single_string(session_cluster):
    assert session_cluster.run_bash("echo single") == [(0, "single\n", "")]


def test_run_bash_stop_on_error(session_cluster):
    results = session_cluster.run_bash(["false", "echo never"], stop_on_error=True)
    assert results == [(1, "", "")]


def test_run_bash_cwd_and_env_vars(session_cluster, tmp_path):
    results = session_cluster.run_bash(["pwd", "echo $TETHER_RUN_VAR"], cwd=str(tmp_path),
                                       env_vars={"TETHER_RUN_VAR": "set"})
    assert [r[1].strip() for r in results] == [os.path.realpath(tmp_path), "set"]


def test_run_bash_streams_output_unless_silenced(session_cluster, capfd):
    capfd.readouterr()
    session_cluster.run_bash(["echo streamed-out", "echo streamed-err >&2"])
    out, err = capfd.readouterr()
    assert "streamed-out" in out and "streamed-err" in err
    session_cluster.run_bash(["echo silent-out"], stream_logs=False)
    assert "silent-out" not in capfd.readouterr().out


def test_run_python(session_cluster):
    results = session_cluster.run_python(["import sys", "print(sys.version_info[0])", "print(6 * 7)"])
    assert results == [(0, "3\n42\n", "")]


def test_run_python_failure_exit_code_and_traceback(session_cluster):
    [(code, out, err)] = session_cluster.run_python(["print('before')", "raise SystemExit(5)"])
    assert (code, out) == (5, "before\n")
    [(code, _, err)] = session_cluster.run_python("1 / 0")
    assert code == 1 and "ZeroDivisionError" in err
