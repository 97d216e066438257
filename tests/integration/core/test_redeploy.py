"""Editing the source and calling ``.to()`` again runs the new code in a fresh worker import."""

from __future__ import annotations

import importlib
import uuid

import pytest
import remote_code

import tether as rh

SOURCE = """
import os
{extra}

def version():
    return {value!r}

def pid():
    return os.getpid()

class Model:
    def __init__(self, start=0):
        self.count = start

    def bump(self):
        self.count += 1
        return self.count

    def kind(self):
        return {value!r}
"""


@pytest.fixture
def env():
    """An env of its own: a restart for fresh code must not touch other tests' objects."""
    return rh.env(name=f"redeploy-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def deployed(project, env, session_cluster):
    """Write a module into the project, import it here; returns (module name, write(value, extra))."""
    name = project.module_name("editable")

    def write(value: str, extra: str = "") -> None:
        project.write(f"{name}.py", SOURCE.format(value=value, extra=extra))

    write("v1")
    yield name, write
    session_cluster.delete(env.name)


def _fn(module: str, attr: str):
    return getattr(importlib.import_module(module), attr)


def test_edited_function_runs_new_code(deployed, env, session_cluster):
    module, write = deployed
    version = rh.function(_fn(module, "version")).to(session_cluster, env=env)
    pid = rh.function(_fn(module, "pid")).to(session_cluster, env=env)
    assert version() == "v1"
    first_pid = pid()
    write("v2 after the edit")
    version = rh.function(_fn(module, "version")).to(session_cluster, env=env)
    assert version() == "v2 after the edit"
    assert pid() != first_pid  # a fresh worker imported the new code


def test_edit_of_the_same_size_within_a_second(deployed, env, session_cluster):
    """Same length, same second: the change must be seen despite a cached bytecode file."""
    module, write = deployed
    version = rh.function(_fn(module, "version")).to(session_cluster, env=env)
    assert version() == "v1"
    for value in ("v2", "v3", "v4"):
        write(value)
        version = rh.function(_fn(module, "version")).to(session_cluster, env=env)
        assert version() == value


def test_redeploy_without_an_edit_keeps_the_worker_and_state(deployed, env, session_cluster):
    module, _ = deployed
    pid = rh.function(_fn(module, "pid")).to(session_cluster, env=env)
    counter = rh.module(remote_code.Counter).to(session_cluster, env=env)(start=5, name=f"keep-{env.name}")
    counter.increment()
    first_pid = pid()
    pid = rh.function(_fn(module, "pid")).to(session_cluster, env=env)
    assert pid() == first_pid
    assert counter.count == 6


def test_instances_in_the_env_are_recreated_after_an_edit(deployed, env, session_cluster):
    module, write = deployed
    version = rh.function(_fn(module, "version")).to(session_cluster, env=env)
    counter = rh.module(remote_code.Counter).to(session_cluster, env=env)(start=10, name=f"counter-{env.name}")
    model = rh.module(_fn(module, "Model")).to(session_cluster, env=env)(start=100, name=f"model-{env.name}")
    counter.increment(5)
    model.bump()
    assert (counter.count, model.bump()) == (15, 102)
    write("v2")
    version = rh.function(_fn(module, "version")).to(session_cluster, env=env)
    assert version() == "v2"
    # both instances live again in the new worker, freshly constructed from their saved arguments
    assert counter.count == 10
    assert counter.increment() == 11
    assert model.kind() == "v2"  # and built from the new code
    assert model.bump() == 101


def test_edited_class_makes_new_instances_with_new_code(deployed, env, session_cluster):
    module, write = deployed
    Model = rh.module(_fn(module, "Model")).to(session_cluster, env=env)
    assert Model(name=f"m1-{env.name}").kind() == "v1"
    write("v2")
    Model = rh.module(_fn(module, "Model")).to(session_cluster, env=env)
    assert Model(name=f"m2-{env.name}").kind() == "v2"


def test_edit_of_an_imported_helper_module_is_seen(project, env, session_cluster):
    helper = project.module_name("helper")
    main = project.module_name("main")
    project.write(f"{helper}.py", "VALUE = 'helper v1'\n")
    project.write(f"{main}.py", f"import {helper}\n\ndef read():\n    return {helper}.VALUE\n")
    read = rh.function(_fn(main, "read")).to(session_cluster, env=env)
    assert read() == "helper v1"
    project.write(f"{helper}.py", "VALUE = 'helper v2, edited'\n")
    read = rh.function(_fn(main, "read")).to(session_cluster, env=env)
    assert read() == "helper v2, edited"
    session_cluster.delete(env.name)


def test_module_in_a_package_is_redeployed(project, env, session_cluster):
    pkg = project.module_name("pkg")
    project.write(f"{pkg}/__init__.py", "")
    project.write(f"{pkg}/jobs.py", "def job():\n    return 'pkg v1'\n")
    job = rh.function(_fn(f"{pkg}.jobs", "job")).to(session_cluster, env=env)
    assert job() == "pkg v1"
    project.write(f"{pkg}/jobs.py", "def job():\n    return 'pkg v2 (edited)'\n")
    job = rh.function(_fn(f"{pkg}.jobs", "job")).to(session_cluster, env=env)
    assert job() == "pkg v2 (edited)"
    session_cluster.delete(env.name)


def test_import_time_prints_stream_on_deploy_unless_silenced(deployed, env, session_cluster, capfd):
    module, write = deployed
    write("v1", extra="print('imported on the worker')")
    fn = rh.function(_fn(module, "version"))  # imports it here too (and prints here): drop that
    capfd.readouterr()
    fn.to(session_cluster, env=env)
    assert "imported on the worker" in capfd.readouterr().out
    write("v2", extra="print('imported again, quietly')")
    version = fn.to(session_cluster, env=env, stream_logs=False)
    assert version() == "v2"
    assert "imported again" not in capfd.readouterr().out


def test_the_restart_after_an_edit_takes_a_started_spare_worker(deployed, env, session_cluster):
    """An env whose code was edited keeps a started worker aside: the next edit's restart uses it
    (no interpreter start on the redeploy's path) and another spare is made."""
    from process_helpers import wait_until

    module, write = deployed
    pid = rh.function(_fn(module, "pid")).to(session_cluster, env=env)
    pid()
    write("v2")
    pid = rh.function(_fn(module, "pid")).to(session_cluster, env=env)
    after_first_edit = pid()

    def spare() -> int | None:
        return session_cluster.status()["envs"][env.name]["spare_pid"]

    wait_until(lambda: spare() is not None, 30, "a spare worker")
    waiting = spare()
    assert waiting != after_first_edit
    write("v3")
    version = rh.function(_fn(module, "version")).to(session_cluster, env=env)
    assert version() == "v3"
    assert pid() == waiting  # the spare became the env's worker, with the new code
    wait_until(lambda: spare() not in (None, waiting), 30, "the next spare worker")
