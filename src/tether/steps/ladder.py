"""Ladder: the compute to try next when a step runs out of memory.

    ladder = tether.Ladder([
        {"memory": "256Mi", "cpus": 1},        # rung 0: where a step starts
        {"memory": "2Gi", "cpus": 2},          # rung 1: after one OOM
        "gpu-cluster",                         # rung 2: a cluster defined elsewhere, by name
    ])
    ladder.next({"memory": "256Mi", "cpus": 1}, "oom")   # -> {"memory": "2Gi", "cpus": 2}
    ladder.for_attempt(2)                                # the rung of a step's second try

Which rung comes next is the ``tether_next_compute`` hook: the built-in answer (in
``tether.steps.upscale``) climbs one rung on ``"oom"`` and stops on anything else; a plugin can
answer first with its own policy. An attempt's rung depends only on the attempt number, so that an
orchestrator's retry (another process, maybe another machine) picks the same rung as the hook would
have: ``for_attempt(n)`` climbs ``n - 1`` times from the first rung.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tether import compute
from tether.errors import ConfigError
from tether.plugins import get_plugin_manager


class Ladder:
    """An ordered list of compute specs (dicts, or cluster names), smallest first."""

    def __init__(self, rungs: Iterable[dict[str, Any] | str]) -> None:
        if isinstance(rungs, Ladder):
            rungs = rungs.rungs
        if isinstance(rungs, dict | str):
            raise ConfigError("tether.Ladder takes a list of compute specs, e.g. "
                              "[{'memory': '256Mi'}, {'memory': '2Gi'}]")
        self.rungs: list[dict[str, Any]] = [compute.normalize(r) for r in rungs]
        if not self.rungs:
            raise ConfigError("a ladder needs at least one rung")

    # -- the list --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rungs)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rungs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rungs[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ladder) and other.rungs == self.rungs

    def __repr__(self) -> str:
        return f"Ladder([{', '.join(compute.describe(r) for r in self.rungs)}])"

    def config(self) -> list[dict[str, Any]]:
        """JSON-able (orchestrators pass it between processes): ``Ladder(ladder.config())``."""
        return [dict(r) for r in self.rungs]

    def index(self, spec: dict[str, Any] | None) -> int | None:
        """The highest rung that ``spec`` satisfies (a cluster's spec may hold more keys)."""
        if not spec:
            return None
        found = None
        for i, rung in enumerate(self.rungs):
            if compute.contains(spec, rung):
                found = i
        return found

    # -- climbing --------------------------------------------------------------------------------

    def next(self, spec: dict[str, Any] | None, failure: str = "oom") -> dict[str, Any] | None:
        """The rung to try after ``failure`` on ``spec``, or None to stop (the hook decides)."""
        return get_plugin_manager().hook.tether_next_compute(
            current=dict(spec or {}), failure=failure, ladder=self.config())

    def for_attempt(self, attempt: int) -> dict[str, Any]:
        """The rung of a step's ``attempt``-th try (1 is the first), climbing on "oom" each time.

        Past the top the last rung reached is returned: ``exhausted(attempt)`` tells.
        """
        return self.tried(attempt)[-1]

    def tried(self, attempt: int) -> list[dict[str, Any]]:
        """The rungs of tries 1..``attempt``, in order (for "every rung tried" messages)."""
        if attempt < 1:
            raise ConfigError(f"attempts count from 1, not {attempt}")
        rungs = [self.rungs[0]]
        while len(rungs) < attempt:
            following = self.next(rungs[-1], "oom")
            if following is None:
                break
            rungs.append(following)
        return rungs

    def exhausted(self, attempt: int) -> bool:
        """Whether an OOM on try ``attempt`` leaves no bigger rung to climb to."""
        return len(self.tried(attempt + 1)) <= attempt


def as_ladder(value: Ladder | Iterable[dict[str, Any] | str] | None) -> Ladder | None:
    """A Ladder from a Ladder, a list of rungs (e.g. from JSON config), or None."""
    if value is None or isinstance(value, Ladder):
        return value
    return Ladder(value)


def next_rung(current: dict[str, Any], failure: str, rungs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The built-in policy: one rung up on "oom", nothing on any other failure.

    ``current`` is matched to the highest rung it satisfies; a spec on no rung (a cluster made by
    hand) climbs to the first rung with more memory than it has, else to the first rung.
    """
    if failure != "oom" or not rungs:
        return None
    ladder = Ladder(rungs)
    index = ladder.index(current)
    if index is not None:
        return ladder.rungs[index + 1] if index + 1 < len(ladder) else None
    if "memory" in current:
        have = compute.parse_memory(current["memory"])
        for rung in ladder.rungs:
            if "memory" in rung and compute.parse_memory(rung["memory"]) > have:
                return rung
        return None
    return ladder.rungs[0]
