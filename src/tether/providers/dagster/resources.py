"""Dagster resources: a named tether cluster (brought up on first use, with a teardown policy that
applies once per run) and a named service on it (deployed on first use).

Dagster sets resources up in every process that runs steps: once per run with the in-process
executor, but once per step and per retry with the default multiprocess executor, and once more
after the run with ``dagster job execute``. So setting a resource up does nothing remote: the
cluster is brought up (or found up, on whatever rung of the ladder it climbed to) by the first
call that needs it, and torn down by the teardown of the run's last step process
(``tether.providers.dagster.runs``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr, field_validator

from tether.providers.dagster import runs

TEARDOWN_POLICIES = ("always", "on_failure", "never")


class TetherClusterResource(ConfigurableResource):
    """A named tether cluster, brought up on first use and torn down by policy when the run ends.

    The first step that calls a service on it brings it up, on the ladder's first rung (or at
    ``memory``/``cpus``), unless it is up already on a rung at least that big: a cluster that
    climbed in an earlier step, or an earlier run, is reused as it is, with its live instances.
    ``teardown`` applies once, when the run's last step is over: ``"always"``, ``"on_failure"``
    (a step of the run failed for good) or ``"never"`` (the cluster, on the rung it climbed to,
    and its live instances stay for the next run). Which clusters a run used, and what became of
    them, is in the run's tags (``tether/cluster/<name>``).
    """

    cluster_name: str = Field(description="The cluster's name; steps and later runs find it by it.")
    launcher: str | None = Field(default=None, description="Its launcher when defined here (local, ssh...).")
    memory: str | None = Field(default=None, description="Memory when defined here, e.g. '2Gi'.")
    cpus: float | None = Field(default=None, description="CPUs when defined here.")
    ladder: list[Any] | None = Field(
        default=None, description="Compute to climb to on out-of-memory, smallest first: each rung a "
                                  "spec such as {'memory': '256Mi', 'cpus': 1} or a cluster's name. "
                                  "Without memory/cpus the cluster starts on the first rung.")
    teardown: Literal["always", "on_failure", "never"] = Field(
        default="never", description="When the run's last step is over: 'always' tear the cluster "
                                     "down, 'on_failure' only if a step of the run failed, or "
                                     "'never' (it stays up, on its rung, with its live instances).")
    registry_url: str | None = Field(
        default=None, description="A team registry's URL (http://registry:8470): the cluster and its "
                                  "services are found and saved there, from any machine's steps.")
    registry_token: str | None = Field(
        default=None, description="Your token for that registry: EnvVar('TETHER_TOKEN') (read where the "
                                  "step runs, never shown in Dagster's UI).")

    _up: str | None = PrivateAttr(default=None)
    _registry: contextlib.ExitStack | None = PrivateAttr(default=None)
    _brought_up: bool = PrivateAttr(default=False)
    _failed: bool = PrivateAttr(default=False)

    @field_validator("ladder")
    @classmethod
    def _check_ladder(cls, value: list[Any] | None) -> list[Any] | None:
        """A bad rung fails when the resource is defined, saying what a rung looks like."""
        if value is not None:
            from tether.errors import ConfigError
            from tether.steps.ladder import as_ladder

            try:
                as_ladder(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def name(self) -> str:
        """The cluster's name (the first rung's cluster when the ladder starts on one by name)."""
        first = self.ladder[0] if self.ladder else None
        if self.launcher is None and self._spec() is None:
            if isinstance(first, str):
                return first
            if isinstance(first, dict) and set(first) == {"cluster"}:
                return first["cluster"]
        return self.cluster_name

    def names(self) -> set[str]:
        """Every cluster a service of this cluster may be on: it, and the ladder's clusters by name."""
        rungs = self.ladder or []
        return {self.name, *(r if isinstance(r, str) else r.get("cluster") for r in rungs)} - {None}

    def ensure_up(self, context: Any = None) -> str:
        """Bring the cluster up unless it is up on a rung at least as big as the one asked for
        (once per process), record it in the run's tags, and return its name. ``context``: the
        op or asset context (its log, its run)."""
        if self._up is None:
            from tether.steps import actions

            logger = getattr(context, "log", None)
            name, spec = self.name, self._spec()
            reused = _up_as_asked(name, self.launcher, spec if spec is not None else self._first_rung())
            if reused is not None:
                _say(logger, f"reusing cluster {name!r}, up on {reused}")
            else:
                name = actions.bring_up(self.cluster_name, launcher=self.launcher, spec=spec,
                                        ladder=self.ladder, logger=logger).name
                self._brought_up = True
            ref = runs.RunRef.of(context)
            if ref is not None and ref.tags().get(runs.TAG_PREFIX + name) != runs.UP:
                ref.tag(runs.TAG_PREFIX + name, runs.UP)
            self._up = name
        return self._up

    @property
    def brought_up(self) -> bool:
        """Whether this process brought the cluster up (it did not find it up as asked): then it
        holds no service yet, and a service is deployed rather than reattached."""
        return self._brought_up

    def mark_failed(self, context: Any = None) -> None:
        """A step that used the cluster failed. ``teardown="on_failure"`` finds failed steps in the
        run's events; this records a failure that Dagster does not see as one (a step that
        caught it)."""
        self._failed = True
        ref = runs.RunRef.of(context)
        if ref is not None:
            ref.tag(runs.FAILED_TAG, "true")

    # -- Dagster's lifecycle ---------------------------------------------------------------------

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Nothing remote: this runs in every step process (and after the run); the first call
        brings the cluster up. With ``registry_url``, the step's process uses that team registry
        (``TETHER_REGISTRY``/``TETHER_TOKEN``) until the resource's teardown."""
        if self.registry_url:
            from tether.core.registry import remote

            self._registry = contextlib.ExitStack()
            self._registry.enter_context(remote.using(self.registry_url, self.registry_token))

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Apply the teardown policy if the run this process belongs to is over (its last step)."""
        try:
            self._teardown_after(context)
        finally:
            if self._registry is not None:
                self._registry.close()
                self._registry = None

    def _teardown_after(self, context: InitResourceContext) -> None:
        ref = runs.RunRef.of(context)
        if ref is None:  # used outside a run (build_resources): this scope was the run
            if self._up is not None:
                self._apply(self._failed, context.log)
            return
        with ref.lock():
            tags = ref.tags()
            used = [k[len(runs.TAG_PREFIX):] for k, v in tags.items()
                    if k.startswith(runs.TAG_PREFIX) and v == runs.UP and k[len(runs.TAG_PREFIX):] in self.names()]
            if not used:
                return  # not used by this run, or its teardown was decided already
            progress = runs.progress(ref)
            if not progress.over:
                return
            failed = bool(progress.failed) or tags.get(runs.FAILED_TAG) == "true" or self._failed
            for name in used:
                ref.tag(runs.TAG_PREFIX + name, self._apply(failed, context.log, name))

    def _apply(self, failed: bool, logger: Any, name: str | None = None) -> str:
        from tether.steps import actions

        name = name or self._up or self.name
        if self.teardown == "always" or (self.teardown == "on_failure" and failed):
            actions.teardown(name, logger=logger)
            return runs.TORN_DOWN
        why = "" if self.teardown == "never" else ", no step failed"
        _say(logger, f"the run is over: cluster {name!r} stays up (teardown={self.teardown!r}{why})")
        return runs.KEPT

    def _spec(self) -> dict[str, Any] | None:
        spec = {k: v for k, v in (("memory", self.memory), ("cpus", self.cpus)) if v is not None}
        return spec or None

    def _first_rung(self) -> dict[str, Any] | None:
        if not self.ladder or not isinstance(self.ladder[0], dict):
            return None
        return {k: v for k, v in self.ladder[0].items() if k != "cluster"} or None


def _say(logger: Any, message: str) -> None:
    if logger is not None:
        logger.info("[tether] %s", message)


def _up_as_asked(name: str, launcher: str | None, wanted: dict[str, Any] | None) -> str | None:
    """How the cluster ``name`` is up (``"memory=2Gi cpus=2"``), if it is up, saved, on
    ``launcher`` and at least ``wanted``; else None. Never starts it."""
    from tether import compute
    from tether.core.cluster import cluster as named_cluster
    from tether.errors import NotFoundError
    from tether.steps import actions
    from tether.steps.climb import env_limits_of

    try:
        handle = named_cluster(name)
    except NotFoundError:
        return None
    if launcher is not None and handle.launcher_name != launcher:
        return None
    if not handle.is_up() or (wanted and not actions.covers(handle.spec, wanted)):
        return None
    how = compute.describe(handle.spec) if handle.spec else "its default size"
    grown = env_limits_of(handle) or {}  # envs a local climb grew beyond the cluster's size
    for env, limits in sorted(grown.items()):
        sized = {k: v for k, v in (limits or {}).items() if v is not None}
        if sized:
            how += f", env {env!r} at {compute.describe(compute.normalize(sized))}"
    return how


class TetherServiceResource(ConfigurableResource):
    """A function or class deployed on a cluster under a name: deployed by the first call that
    needs it, or reattached by name if the cluster has it already (from an earlier step, process
    or run), as long as its definition (target, arguments, cluster) is the same.

    ``timeout`` (Dagster ops have no timeout of their own): seconds each call of the service may
    run; past it the remote call is cancelled, and ``tether.providers.dagster.call`` fails the step
    with ``tether.CallTimeoutError`` (``Failure``, no retry: not an out-of-memory error).
    """

    service_name: str = Field(description="The service's name on the cluster.")
    cluster: TetherClusterResource = Field(description="The cluster it is deployed on.")
    target: str = Field(description="Import path of the function or class: 'package.module:Name' "
                                    "(or the function or class itself, in Python).")
    init_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the class.")
    redeploy: bool = Field(default=False, description="Deploy afresh once per run (its first call), "
                                                      "even if the cluster has it already.")
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds each call may run before it is cancelled (tether's "
                                        "CallTimeoutError); None: TETHER_CALL_TIMEOUT, else no timeout.")

    _ready: bool = PrivateAttr(default=False)

    @field_validator("target", mode="before")
    @classmethod
    def _import_path(cls, value: Any) -> Any:
        """A class or function given in Python is kept as its import path (what the config holds)."""
        if isinstance(value, str) or value is None:
            return value
        from tether.steps.services import target_of

        return target_of(value)

    def ensure_deployed(self, context: Any = None) -> str:
        """Bring the cluster up and deploy the service unless it is there as defined (once per
        process; once per run with ``redeploy``); returns the service's name."""
        if self._ready:
            return self.service_name
        ref = runs.RunRef.of(context)
        if ref is None:
            self._deploy(context, None)
        else:
            with ref.lock():  # steps in parallel deploy it once
                self._deploy(context, ref)
        self._ready = True
        return self.service_name

    def _deploy(self, context: Any, ref: runs.RunRef | None) -> None:
        from tether.errors import NotFoundError
        from tether.steps import actions
        from tether.steps.services import Service

        cluster = self.cluster.ensure_up(context)
        try:
            existing = Service.load(self.service_name)
        except NotFoundError:
            existing = None
        key = runs.SERVICE_TAG_PREFIX + self.service_name
        deployed_in_run = ref is not None and ref.tags().get(key) == "deployed"
        same = (existing is not None and existing.target == self.target and existing.kwargs == self.init_kwargs
                and existing.cluster in self.cluster.names())
        if same and not self.cluster.brought_up and (not self.redeploy or deployed_in_run):
            return  # reattach: calls find it by name (made again there if the cluster lost it)
        actions.deploy(self.target, self.service_name, cluster, kwargs=self.init_kwargs,
                       logger=getattr(context, "log", None))
        if ref is not None:
            ref.tag(key, "deployed")
