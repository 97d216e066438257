"""The one interface every launcher implements (built-in or third-party).

Public methods (``up``, ``down``, ``endpoint``...) do validation, progress and error mapping, then
call the launcher's private ``_up()`` / ``_down()`` / ``_endpoint()``. A launcher that lacks a feature
lists it in ``unsupported`` with a readable reason instead of failing obscurely.

A third-party launcher::

    class MyLauncher(Launcher):
        name = "mine"                                  # tether.cluster(..., launcher="mine")
        spec_keys = frozenset({"size", "autostop_mins"})
        unsupported = {"rsync": "my machines share a file system"}

        def _up(self, cluster): ...        # start (or find) the head daemon; return its Endpoint
        def _down(self, cluster): ...      # stop it (and the machines, if the launcher made them)
        def _endpoint(self, cluster): ...  # the Endpoint if up, else None; cheap, never launches

    @hookimpl
    def tether_launchers():
        return [MyLauncher]

registered through the ``tether`` entry-point group (``tether.plugins``), and tested with
``tether.testing.launcher_contract``, the suite the built-in launchers pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from tether.core.registry import usage
from tether.errors import ConfigError, LaunchError, TetherError
from tether.state import home_id

if TYPE_CHECKING:
    from tether.core.cluster import Cluster
    from tether.core.packaging import ImportSpec


@dataclass(frozen=True)
class Endpoint:
    """How the caller reaches a cluster's head daemon.

    ``fingerprint``: the SHA-256 of the daemon's TLS certificate (its record's ``fingerprint``),
    for a daemon reached over the network without a tunnel. The client then speaks TLS and
    refuses a daemon that presents another certificate, before sending anything. None (a
    loopback daemon, or one at the end of an SSH tunnel): plain HTTP.
    """

    host: str
    port: int
    token: str
    fingerprint: str | None = None


class Launcher:
    """How a cluster's compute comes up and down, and how the caller reaches its daemons.

    One instance per ``Cluster`` handle; every method takes the cluster (its ``name`` and ``spec``).
    Optional features (``rsync``, ``ssh``, ``ssh_tunnel``, ``set_autostop``,
    ``install_local_packages``, ``node_status``, ``rotate_token``) are methods a launcher may
    define; ``require`` checks them with the reason from ``unsupported``.

    ``rotate_token(cluster)`` gives the cluster's daemons new bearer tokens (``POST
    /_tether/token`` to the head, which rotates its other nodes' first), and records them where
    ``endpoint()`` reads them, so that ``cluster.up_if_not()`` reconnects with them.
    """

    #: the value of ``launcher=`` that selects this launcher
    name: ClassVar[str] = ""
    #: spec keys this launcher understands (others are a ConfigError)
    spec_keys: ClassVar[frozenset[str]] = frozenset()
    #: feature -> why this launcher does not have it
    unsupported: ClassVar[dict[str, str]] = {}
    #: whether its machines can start from a docker image (``tether.Image.from_docker``): only a
    #: launcher that makes the machines can (it reads ``cluster.image.docker_image``, or SkyPilot's
    #: form ``cluster.image.image_id``); the others refuse such an image at definition
    docker_images: ClassVar[bool] = False

    def validate(self, spec: dict[str, Any]) -> None:
        """Refuse a spec this launcher cannot honour, with what it takes (called at definition,
        before anything is launched). A subclass checks values too, then calls this."""
        unknown = set(spec) - self.spec_keys
        if unknown:
            raise ConfigError(
                f"the {self.name!r} launcher does not understand {', '.join(sorted(unknown))}; "
                f"it takes: {', '.join(sorted(self.spec_keys)) or 'no options'}")

    def up(self, cluster: Cluster) -> Endpoint:
        """Bring the cluster up (a no-op when it is up) and return its endpoint. With a team
        registry, the launch is counted against the user's quotas first: past one, a
        ``QuotaExceededError`` before anything is provisioned (``core/registry/usage.py``)."""
        usage.claim(cluster)
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
        """Stop the cluster's daemons (and its machines, where the launcher made them). A no-op
        when it is down: teardown twice is fine."""
        self._down(cluster)

    def endpoint(self, cluster: Cluster) -> Endpoint | None:
        """The endpoint if the cluster is up, else None. Cheap: no launch."""
        return self._endpoint(cluster)

    def require(self, feature: str) -> None:
        """A ConfigError saying why, unless this launcher has ``feature`` (a method name)."""
        if feature in self.unsupported or not hasattr(self, feature):
            why = self.unsupported.get(feature, "it does not implement it")
            raise ConfigError(f"the {self.name!r} launcher cannot {feature}: {why}")

    def config_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec as saved in a config (a launcher drops secrets here)."""
        return dict(spec)

    def shared_endpoint(self, cluster: Cluster) -> dict[str, Any]:
        """How another user reaches the head daemon (``cluster.config(endpoint=True)``), never
        with its token: ``host``, ``port`` and the TLS pin ``fingerprint`` of a running daemon (a
        loopback address reaches it from this machine only), and ``home``: where its records are
        (``state.home_id``). A ConfigError when it is down."""
        endpoint = self.endpoint(cluster)
        if endpoint is None:
            raise ConfigError(f"cluster {cluster.name!r} is down: bring it up before saving how to reach it",
                              cluster=cluster.name)
        return {"host": endpoint.host, "port": endpoint.port, "fingerprint": endpoint.fingerprint,
                "home": home_id()}

    # -- nodes ------------------------------------------------------------------------------------

    def node_names(self, cluster: Cluster) -> list[str]:
        """The cluster's machines, head first (addresses, or names the launcher gives them)."""
        return ["localhost"]

    def select(self, cluster: Cluster, node: Any = None) -> list[int]:
        """Node indices for a ``node=`` argument: None (the head), an index, a name, or "all"."""
        names = self.node_names(cluster)
        if node is None:
            return [0]
        if node == "all":
            return list(range(len(names)))
        if isinstance(node, int) and not isinstance(node, bool) and 0 <= node < len(names):
            return [node]
        if isinstance(node, str) and node in names:
            return [names.index(node)]
        raise ConfigError(f"no node {node!r} in cluster {cluster.name!r}: its nodes are "
                          f"{', '.join(f'{i} ({n})' for i, n in enumerate(names))}, or 'all'",
                          cluster=cluster.name)

    def node_address(self, cluster: Cluster, index: int) -> str:
        """The address other nodes reach node ``index`` on (torch.distributed's MASTER_ADDR...)."""
        return "127.0.0.1"

    def node_endpoint(self, cluster: Cluster, index: int) -> Endpoint:
        """The endpoint of node ``index``'s daemon, bringing the cluster up if needed."""
        if index != 0:
            raise ConfigError(f"the {self.name!r} launcher has one node", cluster=cluster.name)
        return self.up(cluster)

    def sync_code(self, cluster: Cluster, spec: ImportSpec) -> ImportSpec:
        """Make the code of ``spec`` importable on the cluster; the spec as the cluster sees it.

        Called by ``.to()`` before each deploy by import path. A launcher whose nodes share this
        machine's files (``local``) returns ``spec`` unchanged; remote ones sync the project root
        and rewrite the path entries.
        """
        return spec

    # -- for subclasses ---------------------------------------------------------------------------

    def _up(self, cluster: Cluster) -> Endpoint:
        """Start (or find) the cluster's head daemon and return how to reach it. Called under
        ``up``, which maps a foreign exception to ``LaunchError``; must be safe to call when up."""
        raise NotImplementedError

    def _down(self, cluster: Cluster) -> None:
        """Stop what ``_up`` started; nothing to do when it is down."""
        raise NotImplementedError

    def _endpoint(self, cluster: Cluster) -> Endpoint | None:
        """The head daemon's endpoint when it runs, else None, from what the launcher recorded
        (``tether.state``): no network round trip when it can be avoided."""
        raise NotImplementedError
