"""A launch counted against the team registry's quotas: what the caller's side of quotas does.

With a team registry configured, every bring-up goes through :func:`claim` (``Launcher.up``)
before anything is provisioned: it tells the registry the cluster's size (``POST
/v1/usage/clusters``), which refuses it with a ``QuotaExceededError`` naming the group, what its
members run now and its limits when one of the user's groups would go past its quota. A cluster
that is up already is only recorded (nothing is launched), at most every :data:`RENEW_EVERY`
seconds per process, which also renews its entry: entries nobody renews expire on the registry (a
process that crashed before its teardown frees its share after a day by default). ``teardown()``
releases it (:func:`release`).

A cluster's size is read from its spec (:func:`size`): ``cpus`` (``"4+"`` is 4), else the CPUs of
an ``instance_type`` whose name tells them (AWS ``*.2xlarge``, GCP ``n2-standard-8``, Azure
``Standard_D4s_v3``, Kubernetes ``4CPU--16GB``), else 0 (not known); GPUs from ``accelerators``
(``"A10G:2"``) or a known GPU instance type; both times the nodes (``num_nodes``, or an SSH
cluster's ``ips``). Not counted: this machine's default ``local`` cluster and clusters shared with
you (their owner's count). The registry down: a launch goes ahead, with a warning.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from tether.core.registry import remote
from tether.errors import TetherError

log = logging.getLogger("tether.quotas")

RENEW_EVERY = 600.0  # seconds between renewals of a running cluster's entry, per process
#: launchers whose clusters are not this user's to count (their owner's are)
NOT_COUNTED = frozenset({"shared"})
#: (url, token, cluster name) -> when this process last told the registry about it
_TOLD: dict[tuple[str, str, str], float] = {}

_AWS = re.compile(r"^[a-z][a-z0-9-]*\.(\d*)(x?large|medium|small|micro|nano)$")
_AWS_SIZES = {"nano": 1, "micro": 1, "small": 1, "medium": 1, "large": 2, "xlarge": 4}
_GCP = re.compile(r"^[a-z]\d?[a-z]?\d?-(?:standard|highmem|highcpu|custom|ultramem|megamem)-(\d+)")
_AZURE = re.compile(r"^Standard_[A-Z]+(\d+)", re.IGNORECASE)
_KUBE = re.compile(r"^(\d+(?:\.\d+)?)CPU--", re.IGNORECASE)
#: GPUs of common GPU instance types (AWS); others count their ``accelerators``
_GPU_TYPES = {
    "g4dn.12xlarge": 4, "g4dn.metal": 8, "g5.12xlarge": 4, "g5.24xlarge": 4, "g5.48xlarge": 8,
    "g6.12xlarge": 4, "g6.24xlarge": 4, "g6.48xlarge": 8, "p3.2xlarge": 1, "p3.8xlarge": 4,
    "p3.16xlarge": 8, "p3dn.24xlarge": 8, "p4d.24xlarge": 8, "p4de.24xlarge": 8, "p5.48xlarge": 8,
}
_ONE_GPU_FAMILIES = ("g4dn.", "g5.", "g6.", "g5g.", "g4ad.")


def instance_cpus(instance_type: str) -> float:
    """The vCPUs an instance type's name tells (0: its name does not)."""
    match = _AWS.match(instance_type)
    if match:
        count, size = match.groups()
        return float(_AWS_SIZES[size] * (int(count) if count else 1))
    for pattern in (_GCP, _AZURE, _KUBE):
        match = pattern.match(instance_type)
        if match:
            return float(match.group(1))
    return 0.0


def instance_gpus(instance_type: str) -> float:
    if instance_type in _GPU_TYPES:
        return float(_GPU_TYPES[instance_type])
    return 1.0 if instance_type.startswith(_ONE_GPU_FAMILIES) else 0.0


def accelerator_count(accelerators: Any) -> float:
    """``"A10G:2"`` -> 2, ``"A10G"`` -> 1, ``{"A10G": 2}`` -> 2, None -> 0."""
    if not accelerators:
        return 0.0
    if isinstance(accelerators, dict):
        return float(sum(float(v) for v in accelerators.values()))
    _, sep, count = str(accelerators).partition(":")
    try:
        return float(count) if sep else 1.0
    except ValueError:
        return 0.0


def size(spec: dict[str, Any]) -> tuple[float, float]:
    """``(cpus, gpus)`` of a cluster spec, all nodes (0 where the spec does not say)."""
    nodes = int(spec.get("num_nodes") or len(spec.get("ips") or ()) or 1)
    instance = spec.get("instance_type") or ""
    cpus = 0.0
    if spec.get("cpus") is not None:
        try:
            cpus = float(str(spec["cpus"]).rstrip("+"))
        except ValueError:
            cpus = 0.0
    elif instance:
        cpus = instance_cpus(instance)
    gpus = accelerator_count(spec.get("accelerators")) or (instance_gpus(instance) if instance else 0.0)
    return cpus * nodes, gpus * nodes


def _counted(cluster: Any) -> remote.RegistryClient | None:
    """The registry to tell about ``cluster``, or None when it is not counted."""
    if cluster.launcher_name in NOT_COUNTED or (cluster.name, cluster.launcher_name) == ("local", "local"):
        return None
    return remote.client()


def claim(cluster: Any) -> None:
    """Count ``cluster`` before it is brought up: QuotaExceededError past a quota of one of the
    user's groups, before anything is provisioned. A cluster that is up already is recorded
    without a check (and renewed), at most every :data:`RENEW_EVERY` seconds."""
    client = _counted(cluster)
    if client is None:
        return
    launching = cluster.launcher.endpoint(cluster) is None
    key = (client.url, client.token, cluster.name)
    if not launching and time.monotonic() - _TOLD.get(key, float("-inf")) < RENEW_EVERY:
        return
    cpus, gpus = size(cluster.spec)
    try:
        client.claim_usage(cluster.name, cluster.launcher_name, cpus, gpus, check=launching)
    except remote.RegistryUnavailableError as exc:
        log.warning("cluster %r is not counted against your quotas: %s", cluster.name, exc)
        return
    _TOLD[key] = time.monotonic()


def release(cluster: Any) -> None:
    """Stop counting ``cluster`` (its teardown). Best effort: the registry down or refusing leaves
    the entry to expire, with a warning."""
    client = _counted(cluster)
    if client is None:
        return
    _TOLD.pop((client.url, client.token, cluster.name), None)
    try:
        client.release_usage(cluster.name)
    except TetherError as exc:
        log.warning("cluster %r was torn down but still counts against your quotas until its entry "
                    "expires: %s", cluster.name, exc)
