"""The plugin system: every hookspec of tether, and the one function that builds the manager.

Plugins register through the ``tether`` entry-point group (``[project.entry-points.tether]``); the
built-in ``local`` launcher is registered exactly that way. A hook implementation is a function
decorated with ``@tether.core.plugins.hookimpl`` in a module (or object) that is registered.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tether.core.launchers.base import Launcher

PROJECT = "tether"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

BUILTIN_PLUGINS = ("tether.core.launchers.local", "tether.core.launchers.ssh")

# Failure classification and the ladder's policy (retry-on-OOM), answering after any third party.
BUILTIN_PLUGINS = (*BUILTIN_PLUGINS, "tether.core.upscale")


class TetherSpec:
    """The hooks. Each one says who calls it and what it must return."""

    @hookspec
    def tether_launchers(self) -> list[type[Launcher]]:
        """Launcher classes this plugin provides.

        Called once when the plugin manager is built. Each class has a unique ``name`` (the value
        users pass as ``launcher=``). A later registration of a name replaces an earlier one.
        """

    @hookspec(firstresult=True)
    def tether_classify_failure(self, error: BaseException, context: dict[str, Any]) -> str | None:
        """Classify a failed call: ``"oom"``, ``"preempted"``, ``"user"``, or None (no opinion).

        Called by the retry machinery of orchestrator providers when a remote call fails. The first
        non-None answer wins. ``context`` holds the cluster name, service and method.
        """

    @hookspec(firstresult=True)
    def tether_next_compute(self, current: dict[str, Any], failure: str, ladder: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The compute spec to try after ``failure`` on ``current``, or None to stop climbing.

        Called by ``Ladder.next``; the first non-None answer wins.
        """

    @hookspec
    def tether_serializers(self) -> list[Any]:
        """Extra serializers (objects with ``name``, ``dumps`` and ``loads``) for arguments and results."""

    @hookspec
    def tether_on_deploy(self, event: dict[str, Any]) -> None:
        """Called after an object was deployed: ``event`` has cluster, name, kind, env, seconds."""

    @hookspec
    def tether_on_call(self, event: dict[str, Any]) -> None:
        """Called after each remote call when any plugin implements it: cluster, name, method, seconds, error."""


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """Hookspecs, entry-point plugins (built-ins included), then ``check_pending()``."""
    import importlib

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(TetherSpec)
    pm.load_setuptools_entrypoints(PROJECT)
    for name in BUILTIN_PLUGINS:  # running from a source tree that was never installed
        module = importlib.import_module(name)
        if not pm.is_registered(module):
            pm.register(module, name=name.rsplit(".", 1)[-1])
    pm.check_pending()
    return pm


def launchers() -> dict[str, type[Launcher]]:
    found: dict[str, type[Launcher]] = {}
    for group in reversed(get_plugin_manager().hook.tether_launchers()):
        for cls in group or ():
            found[cls.name] = cls
    return found


def emit(hook: str, event: dict[str, Any]) -> None:
    """Fire an event hook, only if a plugin implements it (calls stay free otherwise)."""
    caller = getattr(get_plugin_manager().hook, hook)
    if caller.get_hookimpls():
        caller(event=event)
