"""The provisioning interface: how an on-demand cluster's machines are made and deleted.

A cluster made on demand (``tether.ondemand_cluster(...)``, or ``tether.cluster(...)`` with
``instance_type=``/``accelerators=``/``provider=``...) has two halves:

1. **machines**: a ``Provisioner`` creates N of them for a ``MachineRequest``, lists them, stops,
   terminates them, and prices a request. SkyPilot is the built-in one (``launchers/sky``: ~20
   clouds and Kubernetes); a team adds its own (an internal VM API) as a plugin::

       class VMApi(Provisioner):
           name = "vmapi"
           providers = frozenset({"vmapi"})      # tether.ondemand_cluster(..., provider="vmapi")
           def create(self, cluster, request, say): ...
           def machines(self, cluster): ...
           def terminate(self, cluster): ...

       @hookimpl
       def tether_provisioners():
           return [VMApi]

2. **tether on them**: the same path as machines someone already has (wheelhouse, bootstrap, code
   sync, a daemon per node, head routing), over the SSH endpoint each ``Machine`` names. One
   bring-up path, not two (``launchers/ondemand/launcher.py``).

The rules every provisioner keeps:
- ``create`` is all-or-nothing: when it fails half-way it deletes what it made, and raises
  ``ProvisionError`` naming what it cleaned up (nothing keeps billing after a failed launch).
- ``create`` of a cluster that has machines returns those when they match the request (an
  ``up_if_not()`` of a running cluster costs one ``machines()`` call, no launch).
- ``terminate`` of a cluster without machines is a no-op (teardown twice is fine).
- Heavy SDKs are imported inside the methods: ``import tether`` and DAG parsing stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from tether.errors import LaunchError

#: reports one step of a long operation to the user ("launching 2 x m5.large in us-east-1...")
Say = Callable[[str], None]


class ProvisionError(LaunchError):
    """Machines could not be made (no capacity, a quota, no credentials, an unknown type).

    ``cleaned_up``: the machines deleted before raising (the error's text says so too), so the
    caller knows nothing is left running.
    """

    def __init__(self, message: str, *, cleaned_up: list[str] | None = None, **context: Any) -> None:
        self.cleaned_up = list(cleaned_up or [])
        if self.cleaned_up:
            message = f"{message} (cleaned up: {', '.join(self.cleaned_up)})"
        super().__init__(message, **context)


@dataclass(frozen=True)
class MachineRequest:
    """What to ask a provisioner for: the Runhouse/SkyPilot keywords, unvalidated values as given.

    ``None`` means "the provisioner's default". ``cpus``/``memory`` take SkyPilot's forms ("4",
    "4+", "32+"); ``accelerators`` "A10G:1"; ``image`` a docker image id ("docker:..." or a bare
    id); ``extra`` holds provider-specific keys (Kubernetes: ``context``, ``namespace``,
    ``kube_config_path``).
    """

    provider: str | None = None
    instance_type: str | None = None
    accelerators: str | None = None
    cpus: str | None = None
    memory: str | None = None
    disk_size: int | None = None
    region: str | None = None
    zone: str | None = None
    use_spot: bool = False
    num_nodes: int = 1
    image: str | None = None
    open_ports: tuple[int, ...] = ()
    autostop_mins: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Only what was set (for configs, messages and comparing two requests)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, (), {}, False) or k == "num_nodes"}


@dataclass(frozen=True)
class Machine:
    """One machine a provisioner made, and how tether reaches it over SSH.

    ``host``/``port``/``user``/``key_path``: the SSH endpoint; ``proxy_command`` when the machine
    is reached through one (Kubernetes pods: the command SkyPilot generates). ``internal_ip``: the
    address the other nodes use (torch.distributed's MASTER_ADDR). ``id``: the provisioner's own
    id (an instance id, a pod name), for ``terminate`` and for messages.
    """

    id: str
    host: str
    user: str
    port: int = 22
    key_path: str | None = None
    proxy_command: str | None = None
    internal_ip: str | None = None
    instance_type: str | None = None
    price_per_hour: float | None = None


class Provisioner:
    """Makes and deletes the machines of on-demand clusters (one instance per process is fine:
    every method takes the cluster's name; state lives with the provisioner's backend)."""

    #: the provisioner's name (in messages, ``tether status``)
    name: ClassVar[str] = ""
    #: the ``provider=`` values it serves ("aws", "gcp", "kubernetes"...)
    providers: ClassVar[frozenset[str]] = frozenset()

    def check(self, request: MachineRequest) -> None:
        """Refuse a request before anything is launched: an unknown instance type (naming close
        matches), missing credentials (naming the cloud and what to run). Cheap, no launch."""

    def create(self, cluster: str, request: MachineRequest, say: Say) -> list[Machine]:
        """Make (or find) ``request.num_nodes`` machines for ``cluster``, head first. All or
        nothing: on failure, delete what was made and raise ``ProvisionError(cleaned_up=...)``."""
        raise NotImplementedError

    def machines(self, cluster: str) -> list[Machine]:
        """The cluster's machines that exist now (running or stopped), head first; [] if none."""
        raise NotImplementedError

    def stop(self, cluster: str) -> None:
        """Stop the machines, keeping their disks (a provisioner that cannot: terminate)."""
        self.terminate(cluster)

    def terminate(self, cluster: str) -> None:
        """Delete the machines (nothing of them keeps billing). A no-op when there are none."""
        raise NotImplementedError

    def set_autostop(self, cluster: str, minutes: float | None, down: bool = True) -> None:
        """Have the machines stop (``down``: be deleted) after ``minutes`` idle, by the
        provisioner's own means where it has them (SkyPilot's autostop), so that nothing keeps
        billing when the caller is gone. None or -1: never. Default: tether's daemon autostop
        only (the daemon stops; the machines stay)."""

    def price(self, request: MachineRequest) -> float | None:
        """Dollars per hour for the whole request (all nodes), or None when unknown."""
        return None
