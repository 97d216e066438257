"""A ``MachineRequest`` in SkyPilot's terms: the ``sky.Resources`` keywords, the ``sky.Task``, the
keywords of ``sky.launch`` (autostop), and the SkyPilot config a request needs (a Kubernetes
namespace).

The dict builders here import nothing: they are what the tests compare with SkyPilot's own
classes, and what error messages show. Only ``to_task`` imports SkyPilot.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tether.errors import ConfigError
from tether.launchers.ondemand.provisioner import MachineRequest
from tether.launchers.sky.guard import keeps_tracebacks

if TYPE_CHECKING:
    import sky

#: ``provider=`` values served through SkyPilot: its cloud names (``sky check`` lists them), and
#: its aliases. Left out: SkyPilot's ``ssh`` node pools and ``slurm`` (machines someone already
#: has: tether's own SSH clusters serve those).
CLOUDS = frozenset({
    "aws", "azure", "cudo", "do", "fluidstack", "gcp", "hyperbolic", "ibm", "kubernetes", "lambda",
    "mithril", "nebius", "oci", "paperspace", "primeintellect", "runpod", "scp", "seeweb",
    "shadeform", "vast", "verda", "vsphere", "yotta",
})
ALIASES = {"k8s": "kubernetes", "digitalocean": "do"}
#: ``provider="cheapest"`` (the on-demand default, no ``provider=``): no cloud in
#: ``sky.Resources``, so SkyPilot's optimizer picks the cheapest offer among the clouds ``sky
#: check`` enabled (its own behaviour when a task names no cloud)
CHEAPEST = "cheapest"
PROVIDERS = CLOUDS | frozenset(ALIASES) | {CHEAPEST}

#: ``MachineRequest.extra`` keys each provider takes (anything else is refused: a typo would
#: otherwise launch a machine that is not the one asked for)
EXTRA_KEYS = {"kubernetes": frozenset({"context", "namespace", "kube_config_path"})}


def cloud_of(request: MachineRequest) -> str | None:
    """SkyPilot's canonical cloud name for ``request.provider`` (``k8s`` -> ``kubernetes``);
    None for ``cheapest`` (SkyPilot picks the cloud)."""
    provider = (request.provider or "").lower()
    provider = ALIASES.get(provider, provider)
    if provider == CHEAPEST:
        if request.extra:
            raise ConfigError(
                f"{', '.join(sorted(request.extra))} need a provider= (e.g. provider='kubernetes'); "
                "without one SkyPilot picks the cheapest cloud")
        return None
    if provider not in CLOUDS:
        raise ConfigError(
            f"provider={request.provider!r} is not a cloud SkyPilot provisions; use one of: "
            f"{', '.join(sorted(CLOUDS))}, or {CHEAPEST!r} (SkyPilot picks the cloud)")
    unknown = set(request.extra) - EXTRA_KEYS.get(provider, frozenset())
    if unknown:
        allowed = sorted(EXTRA_KEYS.get(provider, ()))
        raise ConfigError(
            f"{', '.join(sorted(unknown))} {'is' if len(unknown) == 1 else 'are'} not a keyword of "
            f"provider={provider!r}" + (f" (it takes: {', '.join(allowed)})" if allowed else ""))
    return provider


def infra_of(request: MachineRequest) -> str | None:
    """SkyPilot's ``infra=`` string: ``aws``, ``aws/us-east-1``, ``gcp/us-central1/us-central1-a``;
    Kubernetes: ``k8s/<context>`` (SkyPilot's regions on Kubernetes are kubeconfig contexts);
    None for ``cheapest`` (no cloud: SkyPilot's optimizer chooses one)."""
    cloud = cloud_of(request)
    if cloud is None:
        if request.region or request.zone:
            raise ConfigError(
                "region=/zone= name a region of one cloud: give provider= too (e.g. "
                "provider='aws', region='us-east-1'); without it SkyPilot picks the cheapest cloud")
        return None
    if cloud == "kubernetes":
        if request.region or request.zone:
            raise ConfigError(
                "provider='kubernetes' takes context= (a kubeconfig context), not region=/zone=")
        context = request.extra.get("context")
        return f"k8s/{context}" if context else "k8s"
    if request.zone and not request.region:
        raise ConfigError(f"zone={request.zone!r} needs its region= too (SkyPilot's infra is "
                          "cloud/region/zone)")
    return "/".join(p for p in (cloud, request.region, request.zone) if p)


def image_id_of(image: str | None) -> str | None:
    """``image=`` as SkyPilot's ``image_id``: a docker image id gets SkyPilot's ``docker:``
    prefix; a cloud image (``ami-...``, ``projects/.../images/...``) or a SkyPilot tag
    (``skypilot:...``) is passed as is."""
    if not image:
        return None
    if image.startswith(("docker:", "skypilot:", "ami-", "projects/")):
        return image
    return f"docker:{image}"


def resources_config(request: MachineRequest) -> dict[str, Any]:
    """The keywords of ``sky.Resources(...)`` for one node of ``request`` (only what was set)."""
    config: dict[str, Any] = {}
    infra = infra_of(request)
    if infra is not None:
        config["infra"] = infra
    for key in ("instance_type", "accelerators", "cpus", "memory", "disk_size"):
        value = getattr(request, key)
        if value is not None:
            config[key] = value if key in ("instance_type", "accelerators") else _size(key, value)
    if request.use_spot:
        config["use_spot"] = True
    image_id = image_id_of(request.image)
    if image_id:
        config["image_id"] = image_id
    if request.open_ports:
        config["ports"] = [str(int(port)) for port in request.open_ports]
    return config


def _size(key: str, value: Any) -> Any:
    """cpus/memory stay SkyPilot's strings ("4", "4+", "32+"); disk_size an int of GiB."""
    if key == "disk_size":
        return int(value)
    return str(value)


def launch_kwargs(request: MachineRequest) -> dict[str, Any]:
    """The keywords of ``sky.launch`` beyond the task: SkyPilot's own autostop, with ``down``
    (the machines are deleted, not stopped: nothing keeps billing, disks included, when the
    caller is gone). ``autostop_mins`` None or negative: never."""
    minutes = request.autostop_mins
    if minutes is None or minutes < 0:
        return {}
    return {"idle_minutes_to_autostop": max(1, round(minutes)), "down": True}


def config_overrides(request: MachineRequest) -> dict[str, Any]:
    """SkyPilot config for this request: a Kubernetes ``namespace=`` (SkyPilot takes it from
    config, per context, not from the task)."""
    namespace = request.extra.get("namespace")
    if not namespace:
        return {}
    context = request.extra.get("context")
    if context:
        return {"kubernetes": {"context_configs": {context: {"namespace": namespace}}}}
    return {"kubernetes": {"namespace": namespace}}


@contextlib.contextmanager
def sky_context(request: MachineRequest) -> Iterator[None]:
    """Run SkyPilot calls for ``request`` with its config overrides and kubeconfig.

    ``kube_config_path`` is set as ``KUBECONFIG``, the one way SkyPilot takes another kubeconfig;
    SkyPilot's API server reads it when it starts, so a server already running keeps its own.
    """
    overrides = config_overrides(request)
    kube_config = request.extra.get("kube_config_path")
    saved = os.environ.get("KUBECONFIG")
    if kube_config:
        os.environ["KUBECONFIG"] = os.path.expanduser(str(kube_config))
    try:
        if overrides:
            from sky import skypilot_config

            with skypilot_config.override_skypilot_config(overrides):
                yield
        else:
            yield
    finally:
        if kube_config:
            if saved is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = saved


@keeps_tracebacks
def to_task(cluster: str, request: MachineRequest) -> sky.Task:
    """The ``sky.Task`` that makes ``cluster``'s machines: no setup and no run command (tether
    brings itself up over SSH afterwards, the same way as on machines someone already has)."""
    import sky

    if request.num_nodes < 1:
        raise ConfigError(f"num_nodes={request.num_nodes}: a cluster has at least one node")
    config = resources_config(request)
    try:
        resources = sky.Resources(**config)
    except ValueError as exc:  # a value SkyPilot cannot read ("A10G:two", cpus="many")
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        raise ConfigError(f"SkyPilot refused {config}: {text}") from exc
    task = sky.Task(name=cluster, num_nodes=request.num_nodes)
    task.set_resources(resources)
    return task
