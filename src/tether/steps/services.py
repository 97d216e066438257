"""Service: a saved record of what was deployed on a cluster under a name, and how to make it again.

An orchestrator's steps run in separate processes (often separate machines) and pass each other
names only. A step that deploys a function or a class instance saves a ``Service``; a later step
loads it by name and calls it on whatever cluster it lives on now. When a step climbs a ladder to a
bigger machine, the service is made again there from its record (an instance is constructed afresh
with the same arguments) and the record follows it, so the next step finds it by the same name.

    svc = Service.deploy("my_project.train:Trainer", name="trainer", cluster="train", kwargs={"lr": 0.1})
    Service.load("trainer").call("fit", kwargs={"epochs": 3})

Records live in the registry under ``services/<name>`` (``tether.load("services/trainer")``): the
team registry's (``@/services/<name>``) when one is configured, so steps on other machines find
them, else this machine's.
"""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tether.core.cluster import DEFAULT_CLUSTER
from tether.core.cluster import cluster as named_cluster
from tether.core.function import function
from tether.core.images import Env, resolve_env
from tether.core.module import module
from tether.core.registry import store
from tether.core.registry.names import resolve
from tether.core.resources import Resource
from tether.errors import ConfigError, NotFoundError, TetherError
from tether.steps.rebuild import METHOD as REBUILD
from tether.steps.rebuild import RebuildContext

FOLDER = "services"
#: what a missing service's error says to do when the caller (a provider) gives no hint of its own
MISSING_HINT = ("Deploy it first under that name: your pipeline's tether deploy step, or "
                "tether.steps.actions.deploy(target, name, cluster).")
#: services named in a missing service's error, per group
LISTED = 20


def import_target(target: str) -> Any:
    """The function or class at ``"package.module:Qualname"`` (or ``"package.module.Qualname"``)."""
    module_name, _, qualname = target.partition(":")
    if not qualname:
        module_name, _, qualname = target.rpartition(".")
    if not module_name or not qualname:
        raise ConfigError(f"{target!r} is not an import path: use 'package.module:Name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} (from {target!r}): {exc}. The module must be "
                          "importable where the step runs (your project, the DAG folder...).") from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no {qualname!r} (from {target!r})") from None
    return obj


def target_of(obj: Any) -> str:
    """The import path of a function or class (``"package.module:Qualname"``); a string is kept."""
    if isinstance(obj, str):
        return obj
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname:
        raise ConfigError(f"{obj!r} has no import path: pass a function or class defined at module level")
    return f"{module}:{qualname}"


@dataclass
class Service(Resource):
    """A deployed function (``kind="function"``) or class instance (``kind="instance"``)."""

    RESOURCE_TYPE = "service"

    name: str
    cluster: str
    target: str
    kind: str = "function"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] | None = None
    #: arguments that are not JSON, pickled (cloudpickle, base64) so the record stays a JSON file
    pickled_args: str | None = None

    # -- records ---------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"type": self.RESOURCE_TYPE, "name": f"{FOLDER}/{self.name}", "service": self.name,
                "cluster": self.cluster, "target": self.target, "kind": self.kind, "args": self.args,
                "kwargs": self.kwargs, "env": self.env, "pickled_args": self.pickled_args}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Service:
        return cls(name=config["service"], cluster=config["cluster"], target=config["target"],
                   kind=config.get("kind", "function"), args=list(config.get("args") or []),
                   kwargs=dict(config.get("kwargs") or {}), env=config.get("env"),
                   pickled_args=config.get("pickled_args"))

    def save(self, name: str | None = None) -> Service:  # type: ignore[override]
        if name:
            self.name = name
        store.save(resolve(f"{FOLDER}/{self.name}"), self.config())
        return self

    @classmethod
    def load(cls, name: str, hint: str | None = None) -> Service:
        """The record of the service ``name``. A NotFoundError lists the services deployed on
        clusters that are up (and, apart, those whose cluster is down or gone), then ``hint``:
        what to do, in the words of the caller's orchestrator (a provider passes its own deploy
        step's name); without one, a hint that names none."""
        found = store.find(f"{FOLDER}/{name}")
        if found is None:
            raise NotFoundError(f"no service named {name!r} was deployed through tether's pipeline "
                                f"steps ({deployed_listing()}). {hint or MISSING_HINT}", service=name)
        return cls.from_config(found[0])

    # -- making it -------------------------------------------------------------------------------

    @classmethod
    def deploy(cls, target: Any, name: str, cluster: str, args: Sequence[Any] = (),
               kwargs: dict[str, Any] | None = None, env: Any = None) -> Service:
        """Deploy ``target`` (an import path, a function or a class) on ``cluster`` and save it."""
        path = target_of(target)
        obj = target if not isinstance(target, str) else import_target(path)
        kind = "instance" if isinstance(obj, type) else "function"
        if kind == "function" and (args or kwargs):
            raise ConfigError(f"{path!r} is a function: arguments go to its calls, not to its deploy")
        env_config = resolve_env(env).config() if env is not None else None
        service = cls(name=name, cluster=cluster, target=path, kind=kind, env=env_config)
        service._set_arguments(list(args), dict(kwargs or {}))
        service.make(obj)
        return service.save()

    def make(self, obj: Any = None) -> Any:
        """(Re)create the service on its cluster from this record; returns its stub."""
        obj = obj if obj is not None else import_target(self.target)
        cluster = named_cluster(self.cluster)
        env = Env.from_config(self.env) if self.env else None
        if self.kind == "function":
            return function(obj).to(cluster, env=env, name=self.name)
        args, kwargs = self._arguments()
        return module(obj).to(cluster, env=env)(*args, name=self.name, **kwargs)

    @property
    def env_name(self) -> str | None:
        """The env whose worker holds it on the head node; None when it lives on another node
        of the cluster (where one env cannot be sized apart)."""
        env = Env.from_config(self.env) if self.env else Env()
        return None if (env.compute or {}).get("node_idx") else env.env_name

    def stub(self) -> Any:
        """The live service on its cluster, made again from this record if the cluster lacks it
        (a new machine after a climb, a restarted daemon)."""
        found = named_cluster(self.cluster).get(self.name, remote=True)
        if found is None:
            return self.make()
        return found

    def moved_to(self, cluster: str) -> Service:
        """The record of this service on another cluster (saved; the old cluster is left alone)."""
        moved = replace(self, cluster=cluster)
        return moved.save()

    def call(self, method: str | None = None, args: Sequence[Any] = (),
             kwargs: dict[str, Any] | None = None, call_id: str | None = None,
             timeout: float | None = None, on_remade: Callable[[str], None] | None = None) -> Any:
        """Call ``method`` of the instance, or the function (``method`` None or ``"call"``).

        ``call_id`` names the call, so that another thread can cancel it (``cancel``);
        ``timeout`` (seconds, None: none) cancels it past that and raises CallTimeoutError.

        The call goes straight to the daemon: nothing is fetched first (a step's overhead is one
        request). When the daemon answers that it does not hold the service (a new machine after
        a climb, a torn-down cluster brought up again, a move to another cluster), the service is
        made again from this record, ``on_remade(why)`` runs (the step says so and rebuilds its
        state) and the call is sent again: a call the daemon refused never ran."""
        if self.kind == "instance" and method in (None, "", "call"):
            raise ConfigError(f"service {self.name!r} is an instance of {self.target}: name the "
                              "method to call", service=self.name)
        method = method or "call"
        try:
            return named_cluster(self.cluster).client.call(self.name, method, args, dict(kwargs or {}),
                                                           call_id=call_id, timeout=timeout)
        except NotFoundError as exc:
            why = self._lost(exc)
            if why is None:
                raise
        self.make()
        if on_remade is not None:
            on_remade(why)
        return named_cluster(self.cluster).client.call(self.name, method, args, dict(kwargs or {}),
                                                       call_id=call_id, timeout=timeout)

    def _lost(self, exc: NotFoundError) -> str | None:
        """Why the cluster does not hold this service (a call to it answered ``exc``), or None
        when it does: ``exc`` was about something else (a method it lacks, the remote code's own
        NotFoundError), and is the call's answer."""
        if getattr(exc, "remote_traceback", None) is not None:
            return None  # raised by the remote code itself
        info = named_cluster(self.cluster)._info(self.name)
        if info is None:
            return f"cluster {self.cluster!r} did not hold it"
        if info.get("error"):
            return f"cluster {self.cluster!r} could not make it again: {info['error']}"
        return None

    def rebuild(self, context: RebuildContext, timeout: float | None = None) -> bool:
        """Call the instance's ``__tether_rebuild__(context)`` if its class defines one
        (``tether.steps.rebuild``); whether it did."""
        if self.kind != "instance":
            return False
        try:
            defined: bool | None = hasattr(import_target(self.target), REBUILD)
        except ConfigError:
            defined = None  # not importable here: the worker knows
        if defined is False:
            return False
        try:
            named_cluster(self.cluster).client.call(self.name, REBUILD, (context,), {}, timeout=timeout)
        except NotFoundError as exc:
            if defined is None and getattr(exc, "remote_traceback", None) is None and REBUILD in str(exc):
                return False
            raise
        return True

    def cancel(self, call_id: str) -> bool:
        """Stop a call started with ``call_id`` (an orchestrator killing its task)."""
        return named_cluster(self.cluster).cancel(call_id)

    # -- arguments -------------------------------------------------------------------------------

    def _set_arguments(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        try:
            json.dumps([args, kwargs])
        except (TypeError, ValueError):
            import cloudpickle

            from tether.errors import SerializationError

            try:
                pickled = cloudpickle.dumps((args, kwargs), protocol=5)
            except Exception as exc:
                raise SerializationError(f"cannot pickle the arguments of {self.target}: {exc}") from exc
            self.args, self.kwargs = [], {}
            self.pickled_args = base64.b64encode(pickled).decode()
        else:
            self.args, self.kwargs, self.pickled_args = args, kwargs, None

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """The constructor's arguments, as deployed: (args, kwargs)."""
        return self._arguments()

    def _arguments(self) -> tuple[list[Any], dict[str, Any]]:
        if self.pickled_args:
            import pickle

            args, kwargs = pickle.loads(base64.b64decode(self.pickled_args))
            return list(args), dict(kwargs)
        return list(self.args), dict(self.kwargs)


def saved_on(cluster: str) -> set[str]:
    """The services whose records say they live on ``cluster``."""
    return {record["service"] for _, record in store.configs(FOLDER)
            if isinstance(record, dict) and record.get("cluster") == cluster and record.get("service")}


def deployed_listing() -> str:
    """``deployed: a, b (cluster 'train'); on clusters that are down: c (cluster 'old')...``:
    the saved services by the state of their cluster (a local file or process check each; this
    runs only on the way to an error)."""
    groups: dict[str, dict[str, list[str]]] = {"up": {}, "down": {}, "gone": {}}
    try:
        records = store.configs(FOLDER)
    except TetherError as exc:  # the team registry down: the error still says what to do
        return f"the deployed ones cannot be listed: {exc}"
    for _, record in records:
        try:
            service, cluster = record["service"], record["cluster"]
        except (KeyError, TypeError):
            continue
        groups[_cluster_state(cluster)].setdefault(cluster, []).append(service)

    def names(group: dict[str, list[str]]) -> str:
        parts = [f"{', '.join(sorted(found)[:LISTED])} (cluster {cluster!r})"
                 for cluster, found in sorted(group.items())]
        return "; ".join(parts)

    text = f"deployed: {names(groups['up']) or 'none on a cluster that is up'}"
    if groups["down"]:
        text += (f"; on clusters that are down (a call brings the cluster up and makes the service "
                 f"again): {names(groups['down'])}")
    if groups["gone"]:
        text += f"; on clusters that are not saved any more: {names(groups['gone'])}"
    return text


def _cluster_state(name: str) -> str:
    """"up", "down" (saved, not running) or "gone" (not running, and nothing saved under that
    name: no step can bring it up again)."""
    try:
        saved = name == DEFAULT_CLUSTER or store.exists(name)
    except TetherError:
        saved = True  # the team registry cannot say: not "gone"
    try:
        handle = named_cluster(name)  # this process's handle, if it has one, else the saved one
        up = handle.is_up()
    except Exception:  # noqa: BLE001 - not saved, unreadable, a launcher that cannot tell: not up
        up = False
    return "up" if up else "down" if saved else "gone"
