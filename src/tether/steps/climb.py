"""Putting a step's attempt on its ladder rung, touching as little as the launcher allows.

Three ways up, from the narrowest:

1. **one env** (a local cluster, a rung of ``memory``/``cpus`` only): the env of the service that
   ran out of memory gets limits of its own (the daemon's ``POST /_tether/envs/{env}/limits``).
   Its worker restarts bigger and makes its objects again; every other env's worker, and the state
   of the instances in it, is left alone. The cluster keeps its size.
2. **another cluster** (a rung ``{"cluster": "big"}``): the service moves there and is made again
   from its record; the old cluster is left as it is.
3. **bigger machines** (a cluster whose launcher makes its machines, ``ondemand``, and a rung of
   ``instance_type``/``accelerators``/``cpus``/``memory``): the rung is provisioned as a cluster of
   its own (``<name>.rung<n>``, saved with ``rung_of=<name>`` in its spec: what a rung cluster is,
   and of which cluster, is read from there, never from its name), and the service moves there, under the same name; later
   steps find it there from its record. The cluster's ``shrink=`` says what becomes of the smaller
   machines: ``"terminate"`` (the default) deletes them, and every service recorded on them moves
   too; ``"keep"`` leaves them running with the other services and their state.
4. **the whole cluster** (any other launcher, or a rung with keys a launcher must apply, such as
   ``instance_type``): torn down and brought up at the rung's size, as a new machine. Every instance
   on it starts afresh; services deployed through the steps are made again from their records on
   their next call, anything else is gone.

Each way returns a ``Climb`` naming the instances whose state the climb reset, for the step's
warning (``actions``) and for ``__tether_rebuild__`` (``tether.steps.rebuild``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tether import compute
from tether.core.cluster import cluster as named_cluster
from tether.core.images import DEFAULT_ENV
from tether.errors import ConfigError, TetherError
from tether.steps.ladder import Ladder
from tether.steps.services import Service, saved_on

#: rung keys one env's limits can take (the others need a machine of that kind)
ENV_KEYS = frozenset({"memory", "cpus"})
#: rung keys that size a machine made on demand (a rung replaces all of them)
MACHINE_KEYS = frozenset({"instance_type", "accelerators", "cpus", "memory"})
#: the spec key a rung cluster of bigger machines records the cluster it is a rung of in
RUNG_OF = "rung_of"
#: seconds the daemon may take to restart an env's worker with new limits and make its objects
#: again (their constructors run then)
ENV_LIMITS_TIMEOUT = 600.0


@dataclass
class Climb:
    """Where an attempt runs and what its climb reset.

    Attributes:
        cluster: the cluster to run on.
        how: "none" (the rung was reached already), "env", "cluster" (the whole cluster was
            resized) or "moved" (to the rung's cluster).
        env: the env that was given the rung's limits (``how == "env"``).
        reset: instances made again with fresh state by this climb (on the env's worker; or, for a
            whole cluster, every instance it held).
        gone: of those, the ones tether cannot make again (not deployed through the steps): the
            whole cluster climbed and they went with it.
        rung: the rung the attempt runs on.
    """

    cluster: str
    how: str = "none"
    env: str | None = None
    reset: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    rung: dict[str, Any] | None = None


def env_limits_of(handle: Any) -> dict[str, dict[str, Any]] | None:
    """The envs with limits of their own on ``handle``'s cluster, or None when its launcher cannot
    size one env (then a climb resizes the whole cluster)."""
    launcher = handle.launcher
    if "env_limits" in launcher.unsupported or not hasattr(launcher, "env_limits"):
        return None
    return launcher.env_limits(handle)


def current_spec(cluster: str, env: str | None = None) -> dict[str, Any]:
    """What ``env``'s worker on ``cluster`` runs on, as a compute spec: the cluster's name and spec,
    with the env's own limits over it when it has some."""
    handle = named_cluster(cluster)
    spec = {**handle.spec, "cluster": cluster}
    if env is not None:
        own = (env_limits_of(handle) or {}).get(env) or {}
        spec.update({key: value for key, value in own.items() if key in ENV_KEYS and value is not None})
    return spec


def rung_for(ladder: Ladder, attempt: int, current: dict[str, Any]) -> dict[str, Any]:
    """The rung of ``attempt``: the ``attempt``-th rung, and on a retry (which follows an OOM on
    ``current``) at least the rung after ``current``."""
    target = ladder.for_attempt(attempt)
    if attempt > 1:
        after = ladder.next(current, "oom")
        if after is not None and (ladder.index(after) or 0) > (ladder.index(target) or 0):
            target = after
    return target


def reached(ladder: Ladder, current: dict[str, Any], rung: dict[str, Any]) -> bool:
    """Whether ``current`` is at ``rung`` or above it: by its values, or by its place on the
    ladder (an ``instance_type`` has no order but the ladder's)."""
    if covers(current, rung):
        return True
    here, there = ladder.index(current), ladder.index(rung)
    return here is not None and there is not None and here >= there and "cluster" not in rung


def covers(current: dict[str, Any], rung: dict[str, Any]) -> bool:
    """Whether ``current`` is already at least ``rung`` (a step never shrinks anything)."""
    if "cluster" in rung:
        return current.get("cluster") == rung["cluster"]
    for key, wanted in rung.items():
        have = current.get(key)
        if have is None:
            return False
        if key in ("memory", "cpus"):
            parse = compute.parse_memory if key == "memory" else compute.parse_cpus
            try:
                if parse(have) < parse(wanted):
                    return False
            except ConfigError:  # a cloud's form ("32+": at least 32 GB) has no size to compare
                return False
        elif not compute.same_value(key, have, wanted):
            return False
    return True


def climb(cluster: str, ladder: Ladder, attempt: int, say: Any = None, what: str = "the step",
          env: str | None = DEFAULT_ENV) -> Climb:
    """Put the work of ``attempt`` (of a service in ``env``; None: not known) on its rung.
    ``say(message)`` reports each move; a move is also posted to the dashboard's timeline."""
    say = say or (lambda message: None)
    current = current_spec(cluster, env)
    rung = rung_for(ladder, attempt, current)
    if reached(ladder, current, rung):
        return Climb(cluster, rung=rung)
    climbed = _climb(cluster, ladder, attempt, say, what, env, current, rung)
    report(climbed, ladder, attempt, what, cluster, current)
    return climbed


def report(climbed: Climb, ladder: Ladder, attempt: int, what: str, cluster: str,
           current: dict[str, Any]) -> None:
    """Post the climb to the daemon of the cluster the attempt now runs on (``POST
    /_tether/events``, the dashboard's timeline). Best effort: a climb never fails for it."""
    here = ladder.index(current)
    there = (ladder.index(climbed.rung) or 0) + 1 if climbed.rung is not None else None
    sized = {k: v for k, v in current.items() if k in MACHINE_KEYS}
    start = f"rung {here + 1}" if here is not None else compute.describe(sized) if sized else "no rung"
    message = (f"{what}, attempt {attempt}: climbed from {start} to rung {there} of {len(ladder)} "
               f"({compute.describe(climbed.rung)}) on cluster {climbed.cluster!r}")
    body = {"kind": "climb", "message": message, "how": climbed.how, "attempt": attempt,
            "from_cluster": cluster, "to_rung": there, "env": climbed.env,
            "reset": ", ".join(climbed.reset) or None}
    try:
        named_cluster(climbed.cluster).client.request_json("POST", "/_tether/events", body=body, timeout=5.0)
    except Exception:  # noqa: BLE001 - the timeline is not worth a failed step
        pass


def _climb(cluster: str, ladder: Ladder, attempt: int, say: Any, what: str, env: str | None,
           current: dict[str, Any], rung: dict[str, Any]) -> Climb:
    position = f"rung {(ladder.index(rung) or 0) + 1} of {len(ladder)}"
    if "cluster" in rung:
        say(f"attempt {attempt}: {what} moves from cluster {cluster!r} to cluster {rung['cluster']!r} "
            f"({position}); it is made there again from its constructor arguments")
        named_cluster(rung["cluster"]).up_if_not()
        return Climb(rung["cluster"], how="moved", rung=rung)
    handle = named_cluster(cluster)
    if env is not None and set(rung) <= ENV_KEYS and env_limits_of(handle) is not None:
        was = {k: v for k, v in current.items() if k in ENV_KEYS}
        say(f"attempt {attempt}: env {env!r} of cluster {cluster!r} goes from "
            f"{compute.describe(was) if was else 'no limit'} to {compute.describe(rung)} ({position}) "
            f"for {what}; the cluster's other envs keep their workers and their state")
        reset = grow_env(handle, env, rung, f"by a ladder climb (attempt {attempt} of {what}, {position})")
        return Climb(cluster, how="env", env=env, reset=reset, rung=rung)
    if getattr(handle.launcher, "makes_machines", False) and set(rung) & MACHINE_KEYS:
        return to_bigger_machines(handle, rung, ladder.index(rung) or 0, say,
                                  f"attempt {attempt}: {what}", position)
    held = instances_on(handle)
    say(f"attempt {attempt}: cluster {cluster!r} goes from "
        f"{compute.describe(handle.spec) if handle.spec else 'its default size'} to "
        f"{compute.describe(rung)} ({position}): a new machine, where its services are made again")
    resize(handle, rung)
    saved = saved_on(cluster)
    return Climb(cluster, how="cluster", reset=held, gone=[n for n in held if n not in saved], rung=rung)


def grow_env(handle: Any, env: str, rung: dict[str, Any], why: str) -> list[str]:
    """Give ``env``'s worker on ``handle``'s cluster the rung's limits; the instances it made again."""
    body = {"memory": rung.get("memory"), "cpus": rung.get("cpus"), "why": why}
    answer = handle.client.request_json("POST", f"/_tether/envs/{quote(env, safe='')}/limits", body=body,
                                        timeout=ENV_LIMITS_TIMEOUT)
    return list(answer.get("reset") or [])


def instances_on(handle: Any) -> list[str]:
    """The instances the cluster's daemon holds (none if it is down or cannot say)."""
    if not handle.is_up():
        return []
    try:
        objects = handle.status().get("objects") or {}
    except TetherError:
        return []
    return sorted(name for name, info in objects.items() if info.get("kind") == "instance")


def resize(cluster: Any, rung: dict[str, Any]) -> Any:
    """The same named cluster on another size: torn down, redefined with ``rung``, saved, up."""
    spec = {**cluster.spec, **{k: v for k, v in rung.items() if k != "cluster"}}
    resized = named_cluster(name=cluster.name, launcher=cluster.launcher_name,
                            image=getattr(cluster, "image", None), **spec)  # the same setup steps
    if cluster.is_up():
        cluster.teardown()
    resized.up_if_not()
    resized.save()
    return resized


def to_bigger_machines(handle: Any, rung: dict[str, Any], index: int, say: Any, who: str,
                       position: str) -> Climb:
    """Provision ``rung`` as a cluster of its own and move there (see the module's docstring, 3).

    The bigger cluster is up before anything is torn down: a failed launch leaves the smaller
    machines serving (and the launcher deletes what it made of the bigger ones)."""
    base = rung_base(handle)
    name = f"{base}.rung{index + 1}"
    if name == handle.name:  # cannot be: the handle would be at this rung already
        raise ConfigError(f"cluster {handle.name!r} is rung {index + 1} of {base!r} already")
    _refuse_foreign(name, base)
    spec = {k: v for k, v in handle.spec.items() if k not in MACHINE_KEYS}
    spec.update({k: v for k, v in rung.items() if k != "cluster"})
    spec[RUNG_OF] = base
    shrink = handle.spec.get("shrink", "terminate")
    say(f"{who} moves from cluster {handle.name!r} ({_size(handle.spec)}) to bigger machines, "
        f"cluster {name!r} ({compute.describe(rung)}, {position}); it is made there again from its record")
    bigger = named_cluster(name=name, launcher=handle.launcher_name, **spec)
    bigger.up_if_not()
    bigger.save()
    if shrink != "terminate":
        say(f"cluster {handle.name!r} keeps its machines (shrink={shrink!r}) and its other services; "
            f"teardown() deletes them")
        return Climb(name, how="moved", rung=rung)
    held = instances_on(handle)
    moved = sorted(saved_on(handle.name))
    for service in moved:
        Service.load(service).moved_to(name)
    say(f"cluster {handle.name!r} is torn down and its machines deleted (shrink='terminate')"
        + (f"; its services move to {name!r}: {', '.join(moved)}" if moved else ""))
    handle.teardown()
    return Climb(name, how="moved", reset=held, gone=[n for n in held if n not in moved], rung=rung)


def rung_base(handle: Any) -> str:
    """The cluster ``handle`` is a rung of (its saved ``rung_of``), or its own name: a cluster the
    user named ``x.rung2`` is a cluster of its own, not a rung of ``x``."""
    return handle.spec.get(RUNG_OF) or handle.name


def _refuse_foreign(name: str, base: str) -> None:
    """A saved cluster of that name that is not a rung of ``base`` (the user's own) is not taken."""
    try:
        found = named_cluster(name)
    except TetherError:
        return  # no cluster of that name
    if found.spec.get(RUNG_OF) != base:
        raise ConfigError(f"a ladder climb of cluster {base!r} would make its rung as cluster {name!r}, "
                          f"but a cluster of that name exists and is not a rung of {base!r}: rename or "
                          "delete that one, or rename this one")


def _size(spec: dict[str, Any]) -> str:
    sized = {k: v for k, v in spec.items() if k in MACHINE_KEYS}
    return compute.describe(sized) if sized else "its default size"
