"""The plugin manager: built-ins come through the entry-point group like any third-party plugin."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, ClassVar

import pytest

import tether as rh
from tether import plugins
from tether.errors import ConfigError
from tether.launchers.base import Endpoint, Launcher
from tether.launchers.local import LocalLauncher


def test_local_launcher_is_declared_as_an_entry_point():
    found = {ep.name: ep.value for ep in entry_points(group="tether")}
    assert found.get("local") == "tether.launchers.local"


def test_plugin_manager_loads_local_through_its_entry_point():
    import tether.launchers.local as local_module

    pm = plugins.get_plugin_manager()
    assert pm.get_plugin("local") is local_module  # registered under the entry point's name
    dists = {plugin: dist for plugin, dist in pm.list_plugin_distinfo()}
    assert local_module in dists  # ...and by setuptools entry points, not by hand
    assert dists[local_module].project_name == "tether"


def test_get_plugin_manager_is_built_once():
    assert plugins.get_plugin_manager() is plugins.get_plugin_manager()


def test_launchers_include_local():
    assert plugins.launchers()["local"] is LocalLauncher


def test_hookspecs_are_all_declared():
    pm = plugins.get_plugin_manager()
    names = {name for name in dir(pm.hook) if name.startswith("tether_")}
    # every hook is fired somewhere (tests/integration/core/test_plugin_events.py for the events)
    assert names == {"tether_launchers", "tether_provisioners", "tether_classify_failure",
                     "tether_next_compute", "tether_on_deploy", "tether_on_call"}


class FakeLauncher(Launcher):
    """A third party's launcher: it only has to implement the private methods."""

    name = "fake-test"
    spec_keys = frozenset({"size"})
    unsupported: ClassVar[dict[str, str]] = {"autostop": "fake machines never stop"}

    def _up(self, cluster: Any) -> Endpoint:
        return Endpoint("127.0.0.1", 1, "token")

    def _down(self, cluster: Any) -> None:
        pass

    def _endpoint(self, cluster: Any) -> Endpoint | None:
        return None


class ThirdParty:
    @plugins.hookimpl
    def tether_launchers(self):
        return [FakeLauncher]

    @plugins.hookimpl
    def tether_classify_failure(self, error, context):
        return "oom" if isinstance(error, MemoryError) else None


@pytest.fixture
def third_party():
    pm = plugins.get_plugin_manager()
    plugin = ThirdParty()
    pm.register(plugin, name="third-party-test")
    yield plugin
    pm.unregister(plugin)


def test_a_registered_plugin_adds_a_launcher(third_party):
    found = plugins.launchers()
    assert found["fake-test"] is FakeLauncher
    assert found["local"] is LocalLauncher  # the built-in stays
    cluster = rh.Cluster(name="fake-cluster", launcher="fake-test", size="xl")
    assert isinstance(cluster.launcher, FakeLauncher)
    assert cluster.config() == {"type": "cluster", "name": "fake-cluster", "launcher": "fake-test",
                                "spec": {"size": "xl"}}
    assert not cluster.is_up()


def test_a_plugin_launcher_validates_its_spec(third_party):
    with pytest.raises(ConfigError, match="does not understand color"):
        rh.Cluster(name="fake-cluster", launcher="fake-test", color="red")


def test_a_plugin_launcher_lists_missing_features(third_party):
    with pytest.raises(ConfigError, match="fake machines never stop"):
        FakeLauncher().require("autostop")


def test_a_plugin_answers_a_firstresult_hook(third_party):
    hook = plugins.get_plugin_manager().hook.tether_classify_failure
    assert hook(error=MemoryError(), context={}) == "oom"
    assert hook(error=ValueError(), context={}) == "user"  # no opinion there: the built-in answers


def test_unregistered_launcher_is_gone(third_party):
    plugins.get_plugin_manager().unregister(third_party)
    try:
        assert "fake-test" not in plugins.launchers()
        with pytest.raises(ConfigError, match="no launcher named 'fake-test'.*local"):
            rh.Cluster(name="fake-cluster", launcher="fake-test")
    finally:
        plugins.get_plugin_manager().register(third_party, name="third-party-test")


def test_emit_is_a_no_op_without_implementations():
    plugins.emit("tether_on_call", {"cluster": "c"})  # nothing registered: nothing happens


def test_emit_reaches_implementations():
    events = []

    class Listener:
        @plugins.hookimpl
        def tether_on_call(self, event):
            events.append(event)

    pm = plugins.get_plugin_manager()
    listener = Listener()
    pm.register(listener)
    try:
        plugins.emit("tether_on_call", {"cluster": "c", "name": "n"})
    finally:
        pm.unregister(listener)
    assert events == [{"cluster": "c", "name": "n"}]
