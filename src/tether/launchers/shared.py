"""The ``shared`` launcher: a cluster another user owns, reached with a grant (docs/sharing.md).

Its owner brings it up (with the team registry's public key, ``registry_key=``) and saves it to the
registry with ``cluster.config(endpoint=True)``: how to reach its daemon (address, port, the SHA-256
pin of its TLS certificate), never its token. A user it is shared with gets a handle from that
part (``tether.core.cluster.shared_cluster``) whose client sends a grant from the registry instead
of the token, renewed before it expires. Nothing is launched or stopped from here: the daemon is
up while its owner keeps it up, and what a user may do on it is its grant's access level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tether.errors import ConfigError
from tether.launchers.base import Endpoint, Launcher
from tether.plugins import hookimpl

if TYPE_CHECKING:
    from tether.core.cluster import Cluster

_OWNERS = "only its owner can, on the machine that brought it up"


class SharedLauncher(Launcher):
    """``host``, ``port`` and ``fingerprint`` (the TLS pin) of a daemon that listens off loopback
    with TLS; ``path``: the cluster's registry name (for messages)."""

    name = "shared"
    spec_keys = frozenset({"host", "port", "fingerprint", "path"})
    unsupported = {feature: f"the cluster is shared with you: {_OWNERS}" for feature in (
        "rsync", "ssh", "ssh_tunnel", "set_autostop", "rotate_token", "install_local_packages")}

    def validate(self, spec: dict[str, Any]) -> None:
        super().validate(spec)
        if not isinstance(spec.get("host"), str) or not spec["host"]:
            raise ConfigError("a shared cluster needs host= (its daemon's address, from the owner's "
                              "cluster.config(endpoint=True))")
        port = spec.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigError(f"a shared cluster needs port= (its daemon's port), not {port!r}")
        if spec.get("fingerprint") is not None and not isinstance(spec["fingerprint"], str):
            raise ConfigError("fingerprint= is the SHA-256 of the daemon's TLS certificate, as text")

    def _endpoint(self, cluster: Cluster) -> Endpoint | None:
        spec = cluster.spec
        return Endpoint(spec["host"], spec["port"], "", spec.get("fingerprint"))

    def _up(self, cluster: Cluster) -> Endpoint:
        return self._endpoint(cluster)  # type: ignore[return-value]

    def _down(self, cluster: Cluster) -> None:
        raise ConfigError(f"cluster {cluster.spec.get('path') or cluster.name!r} is shared with you: {_OWNERS} "
                          "bring it down", cluster=cluster.name)


@hookimpl
def tether_launchers() -> list[type[Launcher]]:
    return [SharedLauncher]
