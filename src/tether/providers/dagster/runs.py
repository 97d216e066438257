"""Run-level state of the Dagster resources: what a run did with a cluster, and whether the run is over.

Dagster's default (multiprocess) executor sets the resources up and tears them down in every step
process, on every retry, and ``dagster job execute`` once more after the run ends. Nothing a
resource can hook into runs once per run there (hooks are per step, run status sensors need the
daemon), so the run's end is found from the run itself, in the resource's teardown:

- the run's tags record each cluster it used (``tether/cluster/<name>``: ``up``, then ``torn down``
  or ``kept``): visible in the UI, shared by every process of the run, and a teardown decided once
  is never made again (not by a later step process, not by the CLI's set-up after the run);
- the run is over when no step of its plan is left to run: each has succeeded, failed for good,
  been skipped, or will never start because a step it needs failed or did not yield its output.
  A step up for retry, running, or still waiting counts as left. The plan comes from the run's
  execution plan snapshot, the outcomes from its event log, both in the Dagster instance.

Step processes that end together decide under a file lock (per run, on this machine), so the last
one to end is the one that sees no step left. Steps spread over machines (a Kubernetes executor)
share no lock: then two ending at once may both tear down (the second finds the cluster down).
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, DagsterRunStatus

PREFIX = "tether/"
#: the run that wrote the tether tags it holds (not a parent run whose tags were copied)
OWNER_TAG = "tether/run"
TAG_PREFIX = "tether/cluster/"
SERVICE_TAG_PREFIX = "tether/service/"
FAILED_TAG = "tether/step-failed"
#: the values of a cluster's run tag
UP, TORN_DOWN, KEPT = "up", "torn down", "kept"

_STEP_EVENTS = {DagsterEventType.STEP_START, DagsterEventType.STEP_RESTARTED,
                DagsterEventType.STEP_UP_FOR_RETRY, DagsterEventType.STEP_SUCCESS,
                DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_SKIPPED,
                DagsterEventType.STEP_OUTPUT}
_TERMINAL = {DagsterEventType.STEP_SUCCESS: "success", DagsterEventType.STEP_FAILURE: "failed",
             DagsterEventType.STEP_SKIPPED: "skipped"}
_DONE = ("success", "failed", "skipped")
_LOCKS = Path(tempfile.gettempdir()) / "tether-dagster-runs"


@dataclass(frozen=True)
class RunRef:
    """A run seen from one of its processes: its id and the instance that holds it."""

    instance: Any
    run_id: str

    @classmethod
    def of(cls, context: Any) -> RunRef | None:
        """The run of an op/asset context or an ``InitResourceContext``; None outside a run
        (``build_resources``, a resource used directly)."""
        instance, run = getattr(context, "instance", None), getattr(context, "run", None)
        run_id = getattr(run, "run_id", None)
        if instance is None or not run_id:
            return None
        return cls(instance, run_id)

    def tags(self) -> dict[str, str]:
        """The run's tags; tether's only if this run wrote them (a re-execution, or a run retry,
        starts with a copy of its parent run's tags: what the parent did is not this run's)."""
        run = self.instance.get_run_by_id(self.run_id)
        tags = dict(run.tags) if run is not None else {}
        if tags.get(OWNER_TAG) != self.run_id:
            tags = {k: v for k, v in tags.items() if not k.startswith(PREFIX)}
        return {k: v for k, v in tags.items() if v != ""}

    def tag(self, key: str, value: str) -> None:
        """Set one of tether's tags on the run (the first one also blanks those copied from a
        parent run: tags cannot be removed)."""
        run = self.instance.get_run_by_id(self.run_id)
        tags = dict(run.tags) if run is not None else {}
        new = {key: value}
        if tags.get(OWNER_TAG) != self.run_id:
            new = {**{k: "" for k in tags if k.startswith(PREFIX)}, OWNER_TAG: self.run_id, **new}
        self.instance.add_run_tags(self.run_id, new)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held while a process of the run decides what the run does with a cluster or service."""
        _LOCKS.mkdir(mode=0o700, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", self.run_id)
        with open(_LOCKS / f"{name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Progress:
    """Where a run stands: the steps left to run, and those that failed for good."""

    left: tuple[str, ...]
    failed: tuple[str, ...]

    @property
    def over(self) -> bool:
        return not self.left


def progress(ref: RunRef) -> Progress:
    """The run's steps left and failed, from its plan snapshot and its event log. A run that is
    finished (its status says so: the run worker wrote it) has none left, whatever its steps'
    events say: one that was terminated or interrupted leaves steps without an outcome."""
    run = ref.instance.get_run_by_id(ref.run_id)
    if run.is_finished:
        failed = run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
        return Progress((), (f"the run ({run.status.value.lower()})",) if failed else ())
    plan = ref.instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    steps = {step.key: step for step in plan.steps}
    to_run = set(plan.step_keys_to_execute or steps)
    last: dict[str, Any] = {}
    outputs: set[tuple[str, str]] = set()
    mapping_keys: dict[tuple[str, str], set[str]] = {}  # of dynamic outputs: one copy downstream each
    for entry in ref.instance.all_logs(ref.run_id, of_type=_STEP_EVENTS):
        event = entry.dagster_event
        if event.event_type == DagsterEventType.STEP_OUTPUT:
            handle = event.step_output_data.step_output_handle
            outputs.add((_plan_key(handle.step_key), handle.output_name))
            if handle.mapping_key is not None:
                mapping_keys.setdefault((_plan_key(handle.step_key), handle.output_name), set()).add(
                    handle.mapping_key)
        else:
            last[entry.step_key] = event.event_type
    states: dict[str, str] = {}

    def state(key: str) -> str:
        """success, failed, skipped (done); doomed (will never start); left."""
        if key in states:
            return states[key]
        states[key] = "left"  # a cycle cannot happen in a plan; this only guards recursion
        step = steps.get(key)
        handles = [h for i in (step.inputs if step is not None else ()) for h in i.upstream_output_handles]
        if key.endswith("[?]"):  # a mapped step: its copies are named op[mapping key]
            copies = [e for k, e in last.items() if k != key and _plan_key(k) == key]
            expected = set().union(*(mapping_keys.get((h.step_key, h.output_name), set()) for h in handles))
            if (copies and all(e in _TERMINAL for e in copies) and len(copies) >= len(expected)
                    and all(state(h.step_key) in _DONE for h in handles)):
                states[key] = "failed" if DagsterEventType.STEP_FAILURE in copies else "success"
                return states[key]
            if copies:
                return "left"
        elif key in last:
            states[key] = _TERMINAL.get(last[key], "left")
            return states[key]
        if key not in to_run:
            states[key] = "success"  # outside this run: its outputs come from an earlier one
            return states[key]
        for step_input in step.inputs if step is not None else ():
            handles = step_input.upstream_output_handles
            ups = [(h, state(h.step_key)) for h in handles]
            if any(s in ("failed", "doomed") for _, s in ups):
                states[key] = "doomed"  # Dagster abandons a step whose upstream failed
                return states[key]
            if handles and all(s == "skipped" or (s == "success" and h.step_key in to_run and
                                                  (h.step_key, h.output_name) not in outputs)
                               for h, s in ups):
                states[key] = "doomed"  # skipped: what it needs was never yielded
                return states[key]
        return "left"

    left = tuple(sorted(k for k in to_run if state(k) == "left"))
    failed = tuple(sorted(k for k in to_run if state(k) == "failed"))
    return Progress(left, failed)


def _plan_key(step_key: str) -> str:
    """The plan's key of a step as its events name it: a mapped copy ``op[key]`` is ``op[?]``."""
    return re.sub(r"\[[^\]]*\]$", "[?]", step_key)
