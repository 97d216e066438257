"""An on-demand cluster's spec: Runhouse's keywords, checked at definition, and the
``MachineRequest`` they make.

    tether.ondemand_cluster("a10g", instance_type="A10G:1", provider="aws", num_nodes=2)

Values are checked for their form only (a number of nodes is a positive int, ``use_spot`` a bool,
Kubernetes' keys go with ``provider="kubernetes"``); whether a cloud has an instance type is the
provisioner's ``check`` (at ``up``, before anything is launched).
"""

from __future__ import annotations

import os
import re
from typing import Any

from tether.compute import parse_memory
from tether.core.configs import configs
from tether.errors import ConfigError
from tether.launchers.ondemand.provisioner import MachineRequest

#: the keys that describe the machines (a ``MachineRequest``'s fields)
MACHINE_KEYS = frozenset({"instance_type", "accelerators", "cpus", "memory", "disk_size", "provider",
                          "region", "zone", "use_spot", "num_nodes", "open_ports"})
# ``image=`` is not a spec key: ``Cluster`` takes it (a ``tether.Image``, or a docker id as its
# ``from_docker``), and the launcher puts its docker base in the request (``launcher.request``).
#: Kubernetes only: which cluster, which namespace, which kubeconfig
KUBERNETES_KEYS = frozenset({"context", "namespace", "kube_config_path"})
#: how tether comes up on the machines (the SSH launcher's options)
BRING_UP_KEYS = frozenset({"autostop_mins", "install_from", "python", "shrink"})
#: set by a ladder climb only (``steps/climb.py``): the cluster this one is a rung of. What a rung
#: cluster is lives here, in its saved config, not in its name: a user's own cluster may well be
#: called ``x.rung2``
RUNG_KEYS = frozenset({"rung_of"})
SPEC_KEYS = MACHINE_KEYS | KUBERNETES_KEYS | BRING_UP_KEYS | RUNG_KEYS

#: minutes idle before an on-demand cluster's machines are deleted, unless ``autostop_mins=`` says
#: otherwise (-1: never); ``TETHER_ONDEMAND_AUTOSTOP_MINS``, else ``default_autostop`` of
#: ``tether.configs`` (``$TETHER_HOME/config.yaml``), changes the default
DEFAULT_AUTOSTOP_MINS = 60.0
#: the provider asked for when none is given (SkyPilot picks the cheapest cloud it can use)
DEFAULT_PROVIDER = "cheapest"

_AMOUNT = re.compile(r"^\d+(\.\d+)?\+?$")


def default_autostop() -> float:
    """The default autostop of on-demand clusters, in minutes (-1: never)."""
    value = os.environ.get("TETHER_ONDEMAND_AUTOSTOP_MINS", "")
    if not value:
        minutes = configs.get("default_autostop", DEFAULT_AUTOSTOP_MINS)
        if isinstance(minutes, bool) or not isinstance(minutes, int | float):
            raise ConfigError(f"default_autostop in {configs.path} is a number of minutes (-1: never), "
                              f"not {minutes!r}")
        return float(minutes)
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"TETHER_ONDEMAND_AUTOSTOP_MINS={value!r} is not a number of minutes "
                          "(-1: never)") from None


def check(spec: dict[str, Any]) -> None:
    """Refuse a spec with values of the wrong form, naming the form; normalize the others in
    place (``accelerators={"A10G": 1}`` -> ``"A10G:1"``, ``open_ports=8080`` -> ``[8080]``) and
    give ``autostop_mins`` its default; ``provider`` and ``use_spot`` not given take the user's
    defaults (``tether.configs``: ``default_provider``, ``use_spot``)."""
    if spec.get("provider") is None and configs.default_provider:
        spec["provider"] = configs.default_provider
    if spec.get("use_spot") is None and configs.use_spot:
        spec["use_spot"] = True
    for key in ("instance_type", "provider", "region", "zone", "context", "namespace", "kube_config_path"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{key} is a name (a string), not {value!r}")
    _runhouse_instance_type(spec)
    accelerators = spec.get("accelerators")
    if isinstance(accelerators, dict):
        if len(accelerators) != 1:
            raise ConfigError(f"accelerators takes one kind, e.g. 'A10G:1' or {{'A10G': 1}}, not {accelerators!r}")
        ((kind, count),) = accelerators.items()
        spec["accelerators"] = accelerators = f"{kind}:{count}"
    if accelerators is not None and not (isinstance(accelerators, str)
                                         and re.match(r"^[\w.\-]+(:\d+(\.\d+)?)?$", accelerators)):
        raise ConfigError(f"accelerators is 'KIND' or 'KIND:COUNT' (e.g. 'A10G:1'), not {accelerators!r}")
    for key in ("cpus", "memory"):
        value = spec.get(key)
        if value is None:
            continue
        if key == "memory" and not isinstance(value, bool) and _quantity(value) is not None:
            continue  # tether's form (a ladder's rung, "2Gi"): the request asks for at least that
        if isinstance(value, bool) or not _AMOUNT.match(str(value)):
            raise ConfigError(f"{key} is a number, or a number and '+' for at least that much "
                              f"(e.g. {'4' if key == 'cpus' else '32'} or "
                              f"'{'4+' if key == 'cpus' else '32+'}'"
                              f"{', or a size such as 2Gi' if key == 'memory' else ''}), not {value!r}")
        spec[key] = str(value)
    disk = spec.get("disk_size")
    if disk is not None and (isinstance(disk, bool) or not isinstance(disk, int) or disk <= 0):
        raise ConfigError(f"disk_size is a number of GB, not {disk!r}")
    nodes = spec.get("num_nodes", 1)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(f"num_nodes is a number of machines (1 or more), not {nodes!r}")
    if not isinstance(spec.get("use_spot", False), bool):
        raise ConfigError(f"use_spot is True or False, not {spec['use_spot']!r}")
    spec_ports(spec)
    if spec.get("provider") != "kubernetes":
        stray = sorted(KUBERNETES_KEYS & {k for k, v in spec.items() if v is not None})
        if stray:
            raise ConfigError(f"{', '.join(stray)} go with provider='kubernetes' (the cluster's provider "
                              f"is {spec.get('provider')!r})")
    minutes = spec.get("autostop_mins")
    if minutes is None:
        spec["autostop_mins"] = default_autostop()
    elif isinstance(minutes, bool) or not isinstance(minutes, int | float):
        raise ConfigError("autostop_mins is a number of minutes (-1: never)")
    if spec.get("install_from", "local") not in ("local", "index"):
        raise ConfigError("install_from is 'local' (wheels sent from this machine, the default) or "
                          "'index' (the machines' own package index)")
    rung_of = spec.get("rung_of")
    if rung_of is not None and (not isinstance(rung_of, str) or not rung_of.strip()):
        raise ConfigError(f"rung_of is the name of the cluster this one is a ladder rung of, not {rung_of!r}")
    if spec.get("shrink", "terminate") not in ("terminate", "keep"):
        raise ConfigError("shrink is 'terminate' (a ladder climb deletes the smaller machines, the "
                          "default) or 'keep'")


_SHORTHAND = re.compile(r"^([A-Za-z][\w\-]*):(\d+(\.\d+)?\+?)$")


def _runhouse_instance_type(spec: dict[str, Any]) -> None:
    """Runhouse's shorthand in ``instance_type``: ``"A10G:1"`` is ``accelerators="A10G:1"`` and
    ``"CPU:4"`` (``"CPU:4+"``) is ``cpus="4"``; a cloud's own type names (``g5.xlarge``,
    ``n2-standard-8``, Kubernetes' ``4CPU--16GB``) have no colon and stay instance types."""
    value = spec.get("instance_type")
    match = _SHORTHAND.match(value) if isinstance(value, str) else None
    if match is None:
        return
    kind, count = match.group(1), match.group(2)
    key, meant = ("cpus", count) if kind.upper() == "CPU" else ("accelerators", f"{kind}:{count}")
    if spec.get(key) is not None:
        raise ConfigError(f"instance_type={value!r} means {key}={meant!r} (Runhouse's shorthand), and "
                          f"{key}={spec[key]!r} is given too: give one of them")
    del spec["instance_type"]
    spec[key] = meant


def spec_ports(spec: dict[str, Any]) -> None:
    ports = spec.get("open_ports")
    if ports is None:
        return
    ports = [ports] if isinstance(ports, int | str) else ports
    try:
        parsed = [int(p) for p in ports]
    except (TypeError, ValueError):
        raise ConfigError(f"open_ports is a port or a list of ports, not {spec['open_ports']!r}") from None
    if not all(0 < p < 65536 for p in parsed):
        raise ConfigError(f"open_ports holds port numbers (1-65535), not {spec['open_ports']!r}")
    spec["open_ports"] = parsed


def _quantity(value: Any) -> float | None:
    """GiB in a size of tether's form (``"2Gi"``, ``"512Mi"``, bytes), or None for a cloud's
    (``"32"``, ``"32+"``: GB)."""
    if isinstance(value, int | float):  # Runhouse's memory=32 is GB; a size in bytes is big
        return None if value < 1024**2 else value / 1024**3
    if _AMOUNT.match(str(value)):
        return None
    try:
        return parse_memory(value) / 1024**3
    except ConfigError:
        return None


def memory_request(value: Any) -> str | None:
    """The memory of a request in SkyPilot's form: a size of tether's form (a ladder's rung)
    asks for at least that much (``"2Gi"`` -> ``"2+"``)."""
    if value is None:
        return None
    gib = _quantity(value)
    return str(value) if gib is None else f"{round(gib, 2):g}+"


def request(spec: dict[str, Any]) -> MachineRequest:
    """The ``MachineRequest`` of a checked spec (without the image: ``launcher.request`` adds
    the cluster's)."""
    return MachineRequest(
        provider=spec.get("provider") or DEFAULT_PROVIDER,
        instance_type=spec.get("instance_type"), accelerators=spec.get("accelerators"),
        cpus=spec.get("cpus"), memory=memory_request(spec.get("memory")), disk_size=spec.get("disk_size"),
        region=spec.get("region"), zone=spec.get("zone"), use_spot=bool(spec.get("use_spot", False)),
        num_nodes=int(spec.get("num_nodes", 1)),
        open_ports=tuple(spec.get("open_ports") or ()), autostop_mins=spec.get("autostop_mins"),
        extra={k: spec[k] for k in sorted(KUBERNETES_KEYS) if spec.get(k) is not None})


def describe(spec: dict[str, Any]) -> str:
    """``"2 x large on testcloud"`` (for messages)."""
    what = spec.get("instance_type") or spec.get("accelerators") or " ".join(
        f"{k}={spec[k]}" for k in ("cpus", "memory") if spec.get(k)) or "the default type"
    count = int(spec.get("num_nodes", 1))
    return f"{count} x {what} on {spec.get('provider') or DEFAULT_PROVIDER}"
