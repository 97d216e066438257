"""A SkyPilot cluster's handle and credentials as tether ``Machine``s: how to SSH to each node.

What ``sky.status(..., _include_credentials=True)`` returns per cluster is a record with the
cluster's ``handle`` (SkyPilot's ``CloudVmRayResourceHandle``: the nodes' internal and external
IPs, head first, their SSH ports, the SSH user, the docker user when the task runs in a docker
image) and ``credentials`` (the SSH user, and the private key SkyPilot uses: a path, or its text
when the API server is elsewhere). From those, one ``Machine`` per node:

- a VM: its external IP, port, user and key;
- a VM running a docker ``image_id``: SkyPilot's container listens on the VM's port 10022; the
  node is reached with the docker user through a jump over the VM (``ssh -W localhost:10022``);
- a Kubernetes pod: through the head pod, reached over SkyPilot's API server (its websocket proxy
  ``templates/websocket_proxy.py ... kubernetes-pod-ssh-proxy``), the same command ``sky status``
  writes to ``~/.sky/generated/ssh/<cluster>``; ``ssh -W`` then hops to each pod's IP.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tether import state
from tether.launchers.ondemand.provisioner import Machine, ProvisionError
from tether.launchers.sky.guard import keeps_tracebacks

#: where SkyPilot runs sshd in the container of a docker ``image_id`` on a VM
DOCKER_SSH_PORT = 10022
_SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes"


def key_path(cluster: str, credentials: Mapping[str, Any]) -> str | None:
    """The private key SkyPilot uses for ``cluster``: its path, or the key's text written (0600)
    next to tether's state of the cluster when SkyPilot sent the text (a remote API server)."""
    content = credentials.get("ssh_private_key_content")
    if content:
        directory = state.cluster_dir(cluster)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "sky-key"
        state.write_private(path, content if str(content).endswith("\n") else f"{content}\n")
        return str(path)
    path = credentials.get("ssh_private_key")
    return str(Path(path).expanduser()) if path else None


def kubernetes_proxy(cluster: str, user: str, key: str | None) -> str:
    """The ProxyCommand reaching a pod of ``cluster``: ssh to the head pod over SkyPilot's API
    server (its websocket proxy), then ``-W`` to the pod asked for (``%h``: its IP)."""
    from sky.server import common as server_common
    from sky.utils import directory_utils

    websocket = shlex.join([sys.executable,
                            f"{directory_utils.get_sky_dir()}/templates/websocket_proxy.py"])
    inner = f"{websocket} {server_common.get_server_url()} {cluster} kubernetes-pod-ssh-proxy"
    identity = f"-i {shlex.quote(key)} " if key else ""
    return (f"ssh -tt {identity}{_SSH_OPTIONS} -W '[%h]:%p' {user}@127.0.0.1 "
            f"-o ProxyCommand={shlex.quote(inner)}")


def docker_proxy(vm_user: str, vm_port: int, key: str | None) -> str:
    """The ProxyCommand reaching the container on a VM: ssh to the VM (``%h``), then ``-W`` to
    the container's sshd on the VM's loopback."""
    identity = f"-i {shlex.quote(key)} " if key else ""
    return f"ssh {identity}{_SSH_OPTIONS} -p {vm_port} -W localhost:%p {vm_user}@%h"


@keeps_tracebacks
def machines_of(record: Mapping[str, Any]) -> list[Machine]:
    """The ``Machine`` of each node of a ``sky.status`` record, head first; [] when the cluster
    has no nodes up (stopped, or still being made: SkyPilot knows no IPs yet)."""
    handle = record.get("handle")
    if handle is None or not getattr(handle, "stable_internal_external_ips", None):
        return []
    cluster = handle.cluster_name
    credentials = dict(record.get("credentials") or {})
    key = key_path(cluster, credentials)
    vm_user = handle.ssh_user or credentials.get("ssh_user")
    if not vm_user:
        raise ProvisionError(f"SkyPilot reported no SSH user for cluster {cluster!r}; run "
                             f"`sky status {cluster}` to see its state", cluster=cluster)
    ips = handle.stable_internal_external_ips
    ports = list(handle.stable_ssh_ports or [22] * len(ips))
    resources = handle.launched_resources
    cloud = str(getattr(resources, "cloud", "") or "").lower()
    docker_user = getattr(handle, "docker_user", None)
    ids = _instance_ids(handle)
    price = _hourly_price(resources)
    found = []
    for index, (internal, external) in enumerate(ips):
        user, port, proxy = vm_user, ports[index] if index < len(ports) else 22, None
        if cloud == "kubernetes":
            proxy = kubernetes_proxy(cluster, vm_user, key)
            port = 22
            if docker_user:
                user = docker_user
        elif docker_user:
            user, port, proxy = docker_user, DOCKER_SSH_PORT, docker_proxy(vm_user, port, key)
        found.append(Machine(
            id=ids.get(internal) or (f"{cluster}-head" if index == 0 else f"{cluster}-worker{index}"),
            host=external or internal, user=user, port=int(port), key_path=key,
            proxy_command=proxy, internal_ip=internal,
            instance_type=getattr(resources, "instance_type", None), price_per_hour=price))
    return found


def _instance_ids(handle: Any) -> dict[str, str]:
    """Internal IP -> the cloud's instance id (a pod name on Kubernetes), when SkyPilot cached
    its cluster info."""
    info = getattr(handle, "cached_cluster_info", None)
    found: dict[str, str] = {}
    for instance_id, instances in (getattr(info, "instances", None) or {}).items():
        for instance in instances:
            found.setdefault(instance.internal_ip, str(instance_id))
    return found


def _hourly_price(resources: Any) -> float | None:
    """Dollars per hour of one node, from SkyPilot's catalog; None when it has no price."""
    try:
        return float(resources.get_cost(3600))
    except Exception:  # noqa: BLE001 - a price is a hint; Kubernetes and a missing catalog have none
        return None
