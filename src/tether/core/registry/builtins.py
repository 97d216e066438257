"""Built-in resources, named ``^x`` (Runhouse's ``^rh-cpu``): read-only configs shipped with tether.

    ^local                  the local cluster (``tether.here``)
    ^rh-cpu, ^rh-8-cpu, ^rh-32-cpu
                            on-demand clusters with at least 2, 8, 32 CPUs (``rh.ondemand_cluster``)
    ^rh-gpu, ^rh-4-gpu, ^rh-8-gpu
                            on-demand clusters with 1, 4, 8 T4 GPUs (Runhouse's were K80s, retired
                            by the clouds)
    ^rh-v100, ^rh-4-v100, ^rh-8-v100
                            on-demand clusters with 1, 4, 8 V100 GPUs

Nothing is launched by loading one (``rh.cluster("^rh-cpu")``): an on-demand cluster comes up on
its first use, with ``rh.configs``' defaults (autostop, provider, spot). To change one, save a
copy under a name of yours: ``rh.cluster("^rh-cpu").save("my-cpu")``.
"""

from __future__ import annotations

from typing import Any

_ONDEMAND = {
    "rh-cpu": "CPU:2+", "rh-8-cpu": "CPU:8+", "rh-32-cpu": "CPU:32+",
    "rh-gpu": "T4:1", "rh-4-gpu": "T4:4", "rh-8-gpu": "T4:8",
    "rh-v100": "V100:1", "rh-4-v100": "V100:4", "rh-8-v100": "V100:8",
}


def names() -> list[str]:
    return ["local", *_ONDEMAND]


def config(name: str) -> dict[str, Any] | None:
    """The config of the built-in ``^name``, or None when there is none."""
    if name == "local":
        return {"type": "cluster", "name": "local", "launcher": "local", "spec": {}}
    if name in _ONDEMAND:
        return {"type": "cluster", "name": name, "launcher": "ondemand",
                "spec": {"instance_type": _ONDEMAND[name]}}
    return None
