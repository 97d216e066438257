"""The event hooks fire where they belong: ``tether_on_deploy`` after each deploy (functions and
class instances), ``tether_on_call`` after each call made through a handle, sync or async, in a
``map`` and a ``submit``; errors are reported, and nothing is timed when no plugin listens."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import remote_code

import tether as rh
from tether import plugins


class Recorder:
    def __init__(self) -> None:
        self.deploys: list[dict] = []
        self.calls: list[dict] = []

    @plugins.hookimpl
    def tether_on_deploy(self, event):
        self.deploys.append(event)

    @plugins.hookimpl
    def tether_on_call(self, event):
        self.calls.append(event)


@pytest.fixture
def recorder():
    pm = plugins.get_plugin_manager()
    rec = Recorder()
    pm.register(rec, name=f"recorder-{uuid.uuid4().hex[:6]}")
    yield rec
    pm.unregister(rec)


def test_deploys_of_functions_and_instances_fire_on_deploy(session_cluster, recorder):
    name = f"add-{uuid.uuid4().hex[:6]}"
    rh.function(remote_code.add).to(session_cluster, name=name)
    counter = rh.module(remote_code.Counter).to(session_cluster)(start=1, name=f"counter-{uuid.uuid4().hex[:6]}")
    assert [(e["name"], e["kind"], e["cluster"], e["env"]) for e in recorder.deploys] == [
        (name, "function", session_cluster.name, "default"),
        (counter.name, "instance", session_cluster.name, "default")]
    assert all(e["seconds"] >= 0 for e in recorder.deploys)


def test_every_form_of_call_fires_on_call(session_cluster, recorder):
    add = rh.function(remote_code.add).to(session_cluster, name=f"add-{uuid.uuid4().hex[:6]}")
    assert add(1, 2) == 3
    assert add.map([1, 2], [3, 4]) == [4, 6]
    assert add.submit(5, 5).result(timeout=60) == 10
    assert asyncio.run(add.aio(2, 2)) == 4
    with pytest.raises(TypeError):
        add()  # a: missing
    calls = [(e["name"], e["method"], e["error"]) for e in recorder.calls]
    assert len(calls) == 6
    assert all(name == add.name and method == "call" for name, method, _ in calls)
    assert [error is None for _, _, error in calls] == [True] * 5 + [False]
    assert calls[-1][2].startswith("TypeError: ")
    assert all(e["cluster"] == session_cluster.name and e["seconds"] >= 0 for e in recorder.calls)


def test_a_method_of_an_instance_fires_on_call(session_cluster, recorder):
    counter = rh.module(remote_code.Counter).to(session_cluster)(start=1, name=f"counter-{uuid.uuid4().hex[:6]}")
    counter.increment()
    assert [(e["name"], e["method"]) for e in recorder.calls] == [(counter.name, "increment")]


def test_without_a_listener_nothing_fires(session_cluster):
    assert not plugins.implemented("tether_on_call")
    add = rh.function(remote_code.add).to(session_cluster, name=f"add-{uuid.uuid4().hex[:6]}")
    assert add(1, 1) == 2
