"""The one interface every launcher implements (built-in or third-party).

Public methods (``up``, ``down``, ``endpoint``...) do validation, progress and error mapping, then
call the launcher's private ``_up()`` / ``_down()`` / ``_endpoint()``. A launcher that lacks a feature
lists it in ``unsupported`` with a readable reason instead of failing obscurely.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from tether.core.errors import ConfigError, LaunchError, TetherError

if TYPE_CHECKING:
    from tether.core.cluster import Cluster


@dataclass(frozen=True)
class Endpoint:
    """How the caller reaches a cluster's head daemon."""

    host: str
    port: int
    token: str


class Launcher:
    name: ClassVar[str] = ""
    #: spec keys this launcher understands (others are a ConfigError)
    spec_keys: ClassVar[frozenset[str]] = frozenset()
    #: feature -> why this launcher does not have it
    unsupported: ClassVar[dict[str, str]] = {}

    def validate(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - self.spec_keys
        if unknown:
            raise ConfigError(
                f"the {self.name!r} launcher does not understand {', '.join(sorted(unknown))}; "
                f"it takes: {', '.join(sorted(self.spec_keys)) or 'no options'}")

    def up(self, cluster: Cluster) -> Endpoint:
        """Bring the cluster up (a no-op when it is up) and return its endpoint."""
        start = time.monotonic()
        try:
            endpoint = self._up(cluster)
        except TetherError:
            raise
        except Exception as exc:
            raise LaunchError(f"could not bring up cluster {cluster.name!r} ({self.name}): {exc}",
                              cluster=cluster.name) from exc
        cluster._last_up_seconds = time.monotonic() - start
        return endpoint

    def down(self, cluster: Cluster) -> None:
        self._down(cluster)

    def endpoint(self, cluster: Cluster) -> Endpoint | None:
        """The endpoint if the cluster is up, else None. Cheap: no launch."""
        return self._endpoint(cluster)

    def require(self, feature: str) -> None:
        if feature in self.unsupported:
            raise ConfigError(f"the {self.name!r} launcher cannot {feature}: {self.unsupported[feature]}")

    # -- for subclasses ---------------------------------------------------------------------------

    def _up(self, cluster: Cluster) -> Endpoint:
        raise NotImplementedError

    def _down(self, cluster: Cluster) -> None:
        raise NotImplementedError

    def _endpoint(self, cluster: Cluster) -> Endpoint | None:
        raise NotImplementedError
