"""Dagster resources: a named tether cluster (create or reattach by name, with a teardown policy)
and a named service on it."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr, field_validator

TEARDOWN_POLICIES = ("always", "on_failure", "never")


class TetherClusterResource(ConfigurableResource):
    """A named tether cluster, brought up (or reattached by name) when a run starts using it.

    Dagster sets resources up (and tears them down) once per process that runs steps: once per run
    with ``in_process_executor``, once per step with the multiprocess executor. Steps that share a
    live instance (train, then evaluate) belong in a job with ``in_process_executor``.
    """

    cluster_name: str = Field(description="The cluster's name; steps and later runs find it by it.")
    launcher: str | None = Field(default=None, description="Its launcher when defined here (local, ssh...).")
    memory: str | None = Field(default=None, description="Memory when defined here, e.g. '2Gi'.")
    cpus: float | None = Field(default=None, description="CPUs when defined here.")
    ladder: list[dict[str, str]] | None = Field(
        default=None, description="Compute to climb to on out-of-memory, smallest first (values as "
                                  "strings: {'memory': '256Mi', 'cpus': '1'}); without memory/cpus "
                                  "the cluster starts on the first rung.")
    teardown: str = Field(default="never", description="When the run ends: 'always' tear it down, "
                                                         "'on_failure' only if a step using it failed, "
                                                         "or 'never'.")

    _name: str | None = PrivateAttr(default=None)
    _failed: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from tether.steps import actions

        if self.teardown not in TEARDOWN_POLICIES:
            from dagster import Failure

            raise Failure(f"teardown={self.teardown!r}: use one of {', '.join(TEARDOWN_POLICIES)}",
                          allow_retries=False)
        spec = {k: v for k, v in (("memory", self.memory), ("cpus", self.cpus)) if v is not None}
        self._name = actions.bring_up(self.cluster_name, launcher=self.launcher, spec=spec or None,
                                    ladder=self.ladder, logger=context.log).name

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self.teardown == "always" or (self.teardown == "on_failure" and self._failed):
            from tether.steps import actions

            actions.teardown(self._name or self.cluster_name, logger=context.log)

    @property
    def name(self) -> str:
        return self._name or self.cluster_name

    def mark_failed(self) -> None:
        """A step that used the cluster failed (for ``teardown="on_failure"``)."""
        self._failed = True


class TetherServiceResource(ConfigurableResource):
    """A function or class deployed on a cluster under a name: deployed when a run starts, or
    reattached by name if the cluster already has it.

    ``timeout`` (Dagster ops have no timeout of their own): seconds each call of the service may
    run; past it the remote call is cancelled, and ``tether.providers.dagster.call`` fails the step
    with ``tether.CallTimeoutError`` (``Failure``, no retry: not an out-of-memory error).
    """

    service_name: str = Field(description="The service's name on the cluster.")
    cluster: TetherClusterResource = Field(description="The cluster it is deployed on (set up first).")
    target: str = Field(description="Import path of the function or class: 'package.module:Name' "
                                    "(or the function or class itself, in Python).")
    init_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the class.")
    redeploy: bool = Field(default=False, description="Deploy afresh even if the cluster has it already.")
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds each call may run before it is cancelled (tether's "
                                        "CallTimeoutError); None: TETHER_CALL_TIMEOUT, else no timeout.")

    @field_validator("target", mode="before")
    @classmethod
    def _import_path(cls, value: Any) -> Any:
        """A class or function given in Python is kept as its import path (what the config holds)."""
        if isinstance(value, str) or value is None:
            return value
        from tether.steps.services import target_of

        return target_of(value)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from tether.errors import NotFoundError
        from tether.steps import actions
        from tether.steps.services import Service

        try:
            existing = Service.load(self.service_name)
        except NotFoundError:
            existing = None
        same = (existing is not None and existing.target == self.target
                and existing.cluster == self.cluster.name and existing.kwargs == self.init_kwargs)
        if same and not self.redeploy:
            return  # reattach: calls find it by name (made again there if the cluster lost it)
        actions.deploy(self.target, self.service_name, self.cluster.name, kwargs=self.init_kwargs,
                     logger=context.log)
