"""The clusters of one ``TetherTaskRunner`` flow run: its own, each rung's, and their teardown.

A task run starts on the runner's cluster; one that runs out of memory retries on the cluster of
the next rung: ``{"cluster": "big"}`` is that cluster, any other rung a cluster of its own named
``<cluster>-rung<n>`` (the runner's cluster's launcher and spec, with the rung's sizes). Nothing is
resized, so a climb never stops the task runs beside it. Each cluster is brought up once per flow
run (concurrent task runs wait for that one bring-up), and torn down once, when the flow run ends,
as the runner's ``teardown`` says.
"""

from __future__ import annotations

import threading
from typing import Any

from tether import compute
from tether.core.cluster import cluster as named_cluster
from tether.errors import NotFoundError
from tether.steps import actions
from tether.steps.ladder import Ladder


class RunnerClusters:
    """Which clusters a flow run's task runs use, which it brought up, and their teardown."""

    def __init__(self, cluster: str, *, launcher: str | None, spec: dict[str, Any],
                 ladder: Ladder | None, teardown: str, logger: Any) -> None:
        self.cluster, self.launcher, self.spec, self.ladder = cluster, launcher, spec, ladder
        self.teardown_policy, self.logger = teardown, logger
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._ready: set[str] = set()       # clusters this flow run made sure are up
        self._started: list[str] = []       # ...of which it brought these up

    def for_rung(self, rung: dict[str, Any]) -> str:
        """The cluster a task run that climbed to ``rung`` runs on."""
        if "cluster" in rung:
            return rung["cluster"]
        assert self.ladder is not None
        return f"{self.cluster}-rung{self.ladder.rungs.index(rung) + 1}"

    def ensure_up(self, name: str) -> None:
        """The cluster ``name`` up, once per flow run."""
        if name in self._ready:
            return
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name in self._ready:
                return
            if name == self.cluster:
                if not _is_up(name):
                    actions.bring_up(name, launcher=self.launcher, spec=self._first_spec(),
                                     ladder=self.ladder, logger=self.logger)
                    self._started.append(name)
            elif self._bring_up_rung(name):
                self._started.append(name)
            self._ready.add(name)

    def _first_spec(self) -> dict[str, Any] | None:
        """The spec the runner's cluster starts on: its own, else (with a launcher given here,
        which ``bring_up`` would start at its default size) the sizes of the ladder's first rung."""
        if self.spec or self.launcher is None or self.ladder is None or "cluster" in self.ladder[0]:
            return self.spec or None
        return dict(self.ladder[0])

    def _bring_up_rung(self, name: str) -> bool:
        """Bring up the cluster of a rung; True if this flow run started it."""
        assert self.ladder is not None
        rung = next(r for r in self.ladder if self.for_rung(r) == name)
        position = f"rung {self.ladder.rungs.index(rung) + 1} of {len(self.ladder)}"
        if "cluster" in rung:  # defined elsewhere, by name
            handle = named_cluster(name)
            up = handle.is_up()
            self.logger.info("[tether] cluster %r (%s) for the task runs that climb to it%s",
                             name, position, "" if up else ": bringing it up")
            handle.up_if_not()
            return not up
        base = named_cluster(self.cluster)
        spec = {**base.spec, **{k: v for k, v in rung.items() if k != "cluster"}}
        wanted = named_cluster(name=name, launcher=base.launcher_name, **spec)
        try:
            old = named_cluster(name)
        except NotFoundError:
            old = None
        if old is not None and old.is_up() and old.config() == wanted.config():
            return False
        if old is not None and old.is_up():
            old.teardown()  # a rung cluster of another size, left by another ladder
        self.logger.info("[tether] bringing up cluster %r (%s, %s) for the task runs that run out "
                         "of memory on the rung below", name, position, compute.describe(spec))
        wanted.up_if_not()
        wanted.save()
        return True

    def tear_down(self) -> None:
        """Once, when the flow run ends: ``"started"`` tears down what this flow run brought up,
        ``"always"`` every cluster its task runs used, ``"never"`` nothing (and says so)."""
        if self.teardown_policy == "never":
            names = self._started or sorted(self._ready)
            if names:
                self.logger.info("[tether] teardown='never': cluster(s) %s left up",
                                 ", ".join(map(repr, names)))
            return
        names = list(self._started)
        if self.teardown_policy == "always":
            names += [n for n in sorted(self._ready) if n not in names]
        for name in names:
            try:
                actions.teardown(name, logger=self.logger)
            except Exception as exc:  # noqa: BLE001 - tear the others down, say which failed
                self.logger.error("[tether] could not tear down cluster %r: %s (stop it with "
                                  "`tether daemon stop --cluster %s`)", name, exc, name)


def _is_up(name: str) -> bool:
    try:
        return named_cluster(name).is_up()
    except NotFoundError:
        return False
