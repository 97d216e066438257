"""Prefect blocks: a named tether cluster, and a named service on one (saved, loaded by name).

Both take ``registry_url`` (a team registry, docs/registry.md) and ``registry_token`` (a Prefect
``Secret`` block, or the token itself, kept secret): their actions then find and save names there,
so flows on other machines find the same cluster and service. Without them, the process's own
registry (``TETHER_REGISTRY``/``TETHER_TOKEN``, ``tether login``, else ``$TETHER_HOME``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from pydantic import Field, SecretStr, field_validator

#: what a call to a service that no task deployed tells a Prefect user to do
MISSING_SERVICE_HINT = (
    "Deploy it in an earlier task of the flow: deploy_service(TetherService(service_name=..., "
    "cluster_name=..., target='package.module:Name')), or TetherService(...).deploy().")


_URL_HELP = "A team registry's URL (http://registry:8470): names are found and saved there."
_TOKEN_HELP = "Your token for that registry: a Secret block (Secret.load('tether-token')) or the token."


@contextlib.contextmanager
def in_registry(block: Any) -> Iterator[None]:
    """Run the block's action with its team registry (``registry_url``/``registry_token``)."""
    from tether.core.registry import remote

    token = block.registry_token
    value = token.get() if isinstance(token, Secret) else token.get_secret_value() if token else None
    with remote.using(block.registry_url, value):
        yield


class TetherCluster(Block):
    """A named tether cluster: defined here (launcher, spec, or a ladder's first rung) or reused.

    Example:
        ```python
        from tether.providers.prefect import TetherCluster

        cluster = TetherCluster(cluster_name="train", ladder=[{"memory": "256Mi"}, {"memory": "1Gi"}])
        cluster.up()        # "train", up on 256 MiB
        cluster.save("train-cluster")

        cluster = TetherCluster.load("BLOCK_NAME")   # e.g. "train-cluster", in another flow
        cluster.teardown()
        ```
    """

    _block_type_name = "Tether Cluster"
    _description = "A named tether cluster: remote compute that steps reuse by name."
    _documentation_url = "https://pypi.org/project/tether/"  # type: ignore[assignment]

    cluster_name: str = Field(description="The cluster's name; later steps find it by this name.")
    launcher: str | None = Field(default=None, description="Its launcher when defined here (local, ssh...).")
    spec: dict[str, Any] = Field(default_factory=dict,
                                 description="Its spec when defined here, e.g. {'memory': '2Gi'}.")
    ladder: list[dict[str, Any] | str] | None = Field(
        default=None, description="Compute to climb to on out-of-memory, smallest first (each rung a "
                                  "spec such as {'memory': '2Gi', 'cpus': 2}, or a cluster's name); "
                                  "without a spec the cluster starts on the first rung.")
    registry_url: str | None = Field(default=None, description=_URL_HELP)
    registry_token: Secret | SecretStr | None = Field(default=None, description=_TOKEN_HELP)

    @field_validator("ladder", mode="before")
    @classmethod
    def _check_ladder(cls, value: Any) -> Any:
        """A ``tether.Ladder`` or a list of rungs, checked as the steps will read it (a bad size
        fails here, when the block is made, not when a task climbs)."""
        from tether.steps.ladder import as_ladder

        return None if value is None else as_ladder(value).config()

    def up(self, logger: Any = None) -> str:
        """Bring the cluster up (or reuse it); returns its name."""
        from tether.steps import actions

        with in_registry(self):
            return actions.bring_up(self.cluster_name, launcher=self.launcher, spec=self.spec or None,
                                    ladder=self.ladder, logger=logger).name

    def teardown(self, logger: Any = None) -> None:
        from tether.steps import actions

        with in_registry(self):
            actions.teardown(self.cluster_name, logger=logger)


class TetherService(Block):
    """A function or class deployed on a tether cluster under a name.

    Example:
        ```python
        from tether.providers.prefect import TetherService

        service = TetherService(service_name="trainer", cluster_name="train",
                                target="my_project.train:Trainer", init_kwargs={"lr": 0.1})
        service.deploy()
        service.save("trainer")

        service = TetherService.load("BLOCK_NAME")   # e.g. "trainer", in another flow
        service.call("fit", epochs=3)
        ```
    """

    _block_type_name = "Tether Service"
    _description = "A function or class instance living on a tether cluster under a name."
    _documentation_url = "https://pypi.org/project/tether/"  # type: ignore[assignment]

    service_name: str = Field(description="The service's name on the cluster.")
    cluster_name: str = Field(description="The cluster it is deployed on.")
    target: str = Field(description="Import path of the function or class: 'package.module:Name'.")
    init_args: list[Any] = Field(default_factory=list, description="Positional arguments of the class.")
    init_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the class.")
    registry_url: str | None = Field(default=None, description=_URL_HELP)
    registry_token: Secret | SecretStr | None = Field(default=None, description=_TOKEN_HELP)

    def deploy(self, logger: Any = None) -> str:
        """Deploy it (a class is constructed there); returns the service name."""
        from tether.steps import actions

        with in_registry(self):
            return actions.deploy(self.target, self.service_name, self.cluster_name, args=self.init_args,
                                  kwargs=self.init_kwargs, logger=logger).name

    def call(self, method: str | None = None, *args: Any, call_timeout: float | None = None,
             **kwargs: Any) -> Any:
        """Call a method of the instance (or the function, with ``method=None``).

        ``call_timeout``: seconds the call may run (None: ``TETHER_CALL_TIMEOUT``, else none); past
        it the remote call is cancelled and ``tether.CallTimeoutError`` raised. ``kwargs`` are the
        function's (a ``timeout`` among them is its own)."""
        from tether.steps import actions

        with in_registry(self):
            return actions.call(self.service_name, method, args, kwargs, timeout=call_timeout,
                                missing_hint=MISSING_SERVICE_HINT)
