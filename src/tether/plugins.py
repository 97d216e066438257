"""The plugin system: every hookspec of tether, and the one function that builds the manager.

A plugin is a module (or object) with functions decorated ``@tether.plugins.hookimpl`` and named
after the hooks below. It registers through the ``tether`` entry-point group::

    [project.entry-points.tether]
    my_launcher = "my_package.my_launcher"

The built-in plugins register exactly that way (``local`` and ``ssh`` launchers, the ``sky``
provisioner, the ``upscale`` failure classifier and ladder policy); running from a source tree
that was never installed, they are registered by name (``BUILTIN_PLUGINS``). A built-in answer is ``trylast``: a third party's
answer to a ``firstresult`` hook wins.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tether.launchers.base import Launcher
    from tether.launchers.ondemand.provisioner import Provisioner

PROJECT = "tether"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

BUILTIN_PLUGINS = ("tether.launchers.local", "tether.launchers.shared", "tether.launchers.ssh.launcher",
                   "tether.launchers.ondemand.launcher", "tether.launchers.sky", "tether.steps.upscale")


class TetherSpec:
    """The hooks. Each says who calls it, when, and what it must return."""

    @hookspec
    def tether_launchers(self) -> list[type[Launcher]]:
        """Launcher classes this plugin provides.

        Called once per process, the first time a cluster needs its launcher (``Cluster.launcher``).
        Each class subclasses ``tether.launchers.base.Launcher`` and has a unique ``name``: the value
        users pass as ``launcher=``. A later registration of a name replaces an earlier one, so a
        plugin can replace a built-in launcher.
        """

    @hookspec
    def tether_provisioners(self) -> list[type[Provisioner]]:
        """Provisioner classes this plugin provides: what makes and deletes the machines of
        on-demand clusters (``tether.launchers.ondemand.provisioner``; SkyPilot is the built-in).

        Called the first time an on-demand cluster needs machines. Each class subclasses
        ``Provisioner`` and lists the ``provider=`` values it serves; a later registration of a
        provider replaces an earlier one, so a plugin can take over a cloud from the built-in.
        """

    @hookspec(firstresult=True)
    def tether_classify_failure(self, error: BaseException, context: dict[str, Any]) -> str | None:
        """Classify a failed call: ``"oom"``, ``"preempted"``, ``"user"``, or None (no opinion).

        Called by ``tether.steps.actions`` when a pipeline step's remote call fails, to decide
        whether the step climbs its ladder. ``context`` holds ``cluster``, ``service`` and
        ``attempt``. The first non-None answer wins; the built-in one (``tether.steps.upscale``)
        answers last.
        """

    @hookspec(firstresult=True)
    def tether_next_compute(self, current: dict[str, Any], failure: str,
                            ladder: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The compute spec to try after ``failure`` on ``current``, or None to stop climbing.

        Called by ``tether.Ladder.next`` (and so for every rung of ``Ladder.for_attempt``) with the
        ladder's rungs as plain dicts. The first non-None answer wins; the built-in policy climbs one
        rung on ``"oom"`` and stops on anything else.
        """

    @hookspec
    def tether_on_deploy(self, event: dict[str, Any]) -> None:
        """Called after a deploy succeeded: a function's ``.to()``, or a class instance made by a
        ``RemoteClass`` call. ``event``: ``cluster``, ``name``, ``kind`` ("function" or
        "instance"), ``env``, ``seconds``. Only fired when a plugin implements it."""

    @hookspec
    def tether_on_call(self, event: dict[str, Any]) -> None:
        """Called after each remote call made through a handle (``fn(x)``, ``await fn.aio(x)``,
        each item of ``map``, a ``submit``), when it returned or raised (a generator: once it
        started streaming). ``event``: ``cluster``, ``name``, ``method``, ``seconds``, ``error``
        (None, or ``"Type: message"``). Only fired, and calls only timed, when a plugin
        implements it: a call without such a plugin costs one check."""


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """Hookspecs, entry-point plugins (built-ins included), then ``check_pending()``."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(TetherSpec)
    pm.load_setuptools_entrypoints(PROJECT)
    for name in BUILTIN_PLUGINS:  # running from a source tree that was never installed
        module = importlib.import_module(name)
        if not pm.is_registered(module):
            short = name.rsplit(".", 1)[-1]  # two built-ins' modules are both named "launcher"
            pm.register(module, name=short if pm.get_plugin(short) is None else name)
    pm.check_pending()
    return pm


def launchers() -> dict[str, type[Launcher]]:
    """Every launcher class, by name (later registrations win)."""
    found: dict[str, type[Launcher]] = {}
    for group in reversed(get_plugin_manager().hook.tether_launchers()):
        for cls in group or ():
            found[cls.name] = cls
    return found


def provisioners() -> dict[str, type[Provisioner]]:
    """Every provisioner class, by the ``provider=`` value it serves (later registrations win)."""
    found: dict[str, type[Provisioner]] = {}
    for group in reversed(get_plugin_manager().hook.tether_provisioners()):
        for cls in group or ():
            for provider in cls.providers:
                found[provider] = cls
    return found


def implemented(hook: str) -> bool:
    """Whether any plugin implements the event hook ``hook`` (cheap: checked on every call)."""
    return bool(getattr(get_plugin_manager().hook, hook).get_hookimpls())


def emit(hook: str, event: dict[str, Any]) -> None:
    """Fire an event hook, only if a plugin implements it (calls stay free otherwise)."""
    caller = getattr(get_plugin_manager().hook, hook)
    if caller.get_hookimpls():
        caller(event=event)
