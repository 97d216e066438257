"""The ``ondemand`` launcher: machines made for the cluster, tether on them through the SSH path.

    gpu = tether.ondemand_cluster("a10g", instance_type="A10G:1", provider="aws", num_nodes=2)
    gpu = tether.cluster("a10g", instance_type="A10G:1", provider="aws")     # the same
    rh.function(train).to(gpu)

``up()`` asks the provisioner of ``provider=`` (``plugins.provisioners()``; SkyPilot built in) to
``check`` the request, then to ``create`` the machines, records them (``machines.json`` in the
cluster's state folder), and then brings tether up on them exactly as on machines someone already
has: this class *is* the SSH launcher, with its nodes taken from the machines (each one's SSH
endpoint: user, key, port, proxy command; ``internal_ip`` for the address the other nodes use).
One bring-up path, not two.

What it adds to the SSH launcher:
- a half-made cluster (machines made now, tether failed to come up on them) is terminated, and the
  error (``ProvisionError``) says what was cleaned up: nothing keeps billing;
- ``teardown()`` stops the daemons, then deletes the machines (``terminate``), even when the daemons
  could not be stopped; ``restart_server()`` only restarts the daemons;
- an autostop by default (``spec.DEFAULT_AUTOSTOP_MINS``), said when the cluster comes up, given
  both to the daemons and to the provisioner (``set_autostop``: SkyPilot's own autostop deletes the
  machines even when the caller's laptop is gone);
- ``status()`` shows the machines, their type and price.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether import plugins
from tether.errors import ConfigError, TetherError, install_hint
from tether.launchers.base import Endpoint, Launcher
from tether.launchers.ondemand import spec as specs
from tether.launchers.ondemand.provisioner import (
    Machine,
    MachineRequest,
    Provisioner,
    ProvisionError,
)
from tether.launchers.progress import Progress
from tether.launchers.ssh import openssh as ssh
from tether.launchers.ssh import tunnels
from tether.launchers.ssh.bootstrap import Node
from tether.launchers.ssh.launcher import SshLauncher, _state
from tether.plugins import hookimpl
from tether.state import cluster_dir, locked, read_json, write_json

if TYPE_CHECKING:
    from tether.core.cluster import Cluster

MACHINES = "machines.json"


class OnDemandLauncher(SshLauncher):
    name = "ondemand"
    spec_keys = specs.SPEC_KEYS
    unsupported: dict[str, str] = {}
    #: a ladder's rung of bigger machines is provisioned as a cluster of its own (steps/climb.py)
    makes_machines = True
    #: the machines start from ``cluster.image``'s docker base (``MachineRequest.image``)
    docker_images = True

    # -- the definition ---------------------------------------------------------------------------

    def validate(self, spec: dict[str, Any]) -> None:
        Launcher.validate(self, spec)
        specs.check(spec)
        provider = spec.get("provider") or specs.DEFAULT_PROVIDER
        found = plugins.provisioners()
        if provider not in found:
            known = ", ".join(sorted(found)) or "none"
            raise ConfigError(
                f"no provisioner serves provider={provider!r} (installed: {known}). Clouds and "
                f"Kubernetes come with SkyPilot: {install_hint('sky')}; your own provisioner "
                "registers through the 'tether' entry-point group (tether_provisioners)")

    def provisioner(self, cluster: Cluster) -> Provisioner:
        """The provisioner of the cluster's ``provider=``."""
        provider = cluster.spec.get("provider") or specs.DEFAULT_PROVIDER
        try:
            return plugins.provisioners()[provider]()
        except KeyError:
            raise ConfigError(f"no provisioner serves provider={provider!r} any more in this process: "
                              "is its plugin installed here?", cluster=cluster.name) from None

    def request(self, cluster: Cluster) -> MachineRequest:
        """The spec's request, with the docker base of ``cluster.image`` (``image=`` is taken by
        ``Cluster`` itself, as a ``tether.Image``: a docker id given there is its ``from_docker``),
        in SkyPilot's form ``"docker:<id>"``. The image's other steps run over SSH at bring-up."""
        image = cluster.image.image_id if cluster.image is not None else None
        return dataclasses.replace(specs.request(cluster.spec), image=image)

    # -- machines ----------------------------------------------------------------------------------

    def machines(self, cluster: Cluster) -> list[Machine]:
        """The machines recorded when the cluster last came up from this machine (no network)."""
        record = read_json(cluster_dir(cluster.name) / MACHINES) or {}
        return [Machine(**m) for m in record.get("machines") or []]

    def _record(self, cluster: Cluster, provisioner: Provisioner, machines: list[Machine]) -> None:
        write_json(_state(cluster) / MACHINES, {
            "provider": cluster.spec.get("provider") or specs.DEFAULT_PROVIDER,
            "provisioner": provisioner.name,
            "machines": [dataclasses.asdict(m) for m in machines]})

    def nodes(self, cluster: Cluster) -> list[Node]:
        nodes = []
        for index, machine in enumerate(self.machines(cluster)):
            # "no": clouds hand out addresses again; a new machine on an old address is not an attack
            target = ssh.SshTarget(host=machine.host, port=machine.port, user=machine.user,
                                   key=str(Path(machine.key_path).expanduser()) if machine.key_path else None,
                                   proxy_command=machine.proxy_command, strict_host_key_checking="no",
                                   cluster=cluster.name)
            nodes.append(Node(index, target, cluster.name, cluster.spec.get("python")))
        return nodes

    def node_names(self, cluster: Cluster) -> list[str]:
        names = [m.host for m in self.machines(cluster)]
        return names or [f"(not up: {specs.describe(cluster.spec)})"]

    def node_address(self, cluster: Cluster, index: int) -> str:
        machine = self.machines(cluster)[index]
        return machine.internal_ip or machine.host

    def _node_endpoint(self, cluster: Cluster, index: int) -> Endpoint | None:
        state = cluster_dir(cluster.name)
        nodes = (read_json(state / "nodes.json") or {}).get("nodes") or []
        machines = self.machines(cluster)
        if not machines or len(nodes) != len(machines) or index >= len(nodes):
            return None
        if nodes[index].get("ip") != machines[index].host:  # machines made again since
            return None
        return tunnels.known(state, nodes[index])

    # -- up -----------------------------------------------------------------------------------------

    def _up(self, cluster: Cluster) -> Endpoint:
        state = _state(cluster)
        with locked(state / "provision.lock"):
            endpoint = self._endpoint(cluster)
            if endpoint is not None:
                return endpoint
            provisioner, request = self.provisioner(cluster), self.request(cluster)
            with Progress(f"provisioning cluster {cluster.name!r}") as progress:
                provisioner.check(request)
                before = provisioner.machines(cluster.name)
                machines = provisioner.create(cluster.name, request, progress.step)
                if not machines:
                    raise ProvisionError(f"provisioner {provisioner.name!r} made no machine for cluster "
                                         f"{cluster.name!r}", cluster=cluster.name)
                self._record(cluster, provisioner, machines)
                fresh = not before
                progress.step(f"cluster {cluster.name!r}: {len(machines)} machine(s) "
                              f"{'made' if fresh else 'found'} ({_priced(machines)})")
            try:
                endpoint = SshLauncher._up(self, cluster)
            except BaseException as exc:
                if not fresh:
                    raise  # machines someone saw running before: kept; teardown() deletes them
                cleaned = self._clean_up(cluster, provisioner, machines)
                if not isinstance(exc, Exception):
                    raise
                raise ProvisionError(
                    f"tether could not be brought up on the new machines of cluster {cluster.name!r}: "
                    f"{exc}. They were terminated, nothing of them is left running",
                    cleaned_up=cleaned, cluster=cluster.name) from exc
            minutes = cluster.spec.get("autostop_mins")
            provisioner.set_autostop(cluster.name, minutes, down=True)
            with Progress(f"cluster {cluster.name!r}") as progress:
                progress.step(_autostop_note(cluster.name, minutes))
            return endpoint

    def _clean_up(self, cluster: Cluster, provisioner: Provisioner, machines: list[Machine]) -> list[str]:
        """Terminate the machines of a failed bring-up; what was cleaned up (ids)."""
        with contextlib.suppress(TetherError, OSError):
            SshLauncher._down(self, cluster)  # daemons started on some nodes, tunnels, masters
        try:
            provisioner.terminate(cluster.name)
        except Exception as exc:
            raise ProvisionError(
                f"tether could not be brought up on the new machines of cluster {cluster.name!r}, "
                f"and terminating them failed too ({exc}): machines {', '.join(m.id for m in machines)} "
                "may still run; cluster.teardown() deletes them", cluster=cluster.name) from exc
        (cluster_dir(cluster.name) / MACHINES).unlink(missing_ok=True)
        return [f"{m.id} ({m.host})" for m in machines]

    # -- down ---------------------------------------------------------------------------------------

    def _down(self, cluster: Cluster) -> None:
        """Stop the daemons (``restart_server()`` stops only this; ``teardown()`` then terminates)."""
        state = cluster_dir(cluster.name)
        if not self.machines(cluster):
            tunnels.stop_all(state)
            (state / "nodes.json").unlink(missing_ok=True)
            return
        try:
            SshLauncher._down(self, cluster)
        except TetherError:
            if self.provisioner(cluster).machines(cluster.name):
                raise
            # the machines are gone (their autostop, or deleted by hand): no daemon to stop

    def terminate(self, cluster: Cluster) -> None:
        """Delete the cluster's machines (``teardown()``'s last step, run even when stopping the
        daemons failed: nothing keeps billing). A no-op when there are none."""
        provisioner = self.provisioner(cluster)
        machines = self.machines(cluster) or provisioner.machines(cluster.name)
        provisioner.terminate(cluster.name)
        state = cluster_dir(cluster.name)
        for node in self.nodes(cluster):
            with contextlib.suppress(TetherError, OSError):
                ssh.close_master(node.target)
        tunnels.stop_all(state)
        for name in (MACHINES, "nodes.json"):
            (state / name).unlink(missing_ok=True)
        if machines:
            with Progress(f"tearing down cluster {cluster.name!r}") as progress:
                progress.step(f"cluster {cluster.name!r}: terminated {len(machines)} machine(s): "
                              + ", ".join(m.id for m in machines))

    def gone(self, cluster: Cluster) -> str | None:
        """Why a handle cannot reach the daemon, when the machines it came up on were deleted
        behind its back (the cluster's autostop, the console, another process's teardown): a
        sentence saying so and that ``up_if_not()`` makes new ones. None while they exist."""
        recorded = self.machines(cluster)
        if not recorded:
            return (f"cluster {cluster.name!r} is down (torn down, or its machines deleted): "
                    "cluster.up_if_not() makes new machines; then deploy again (.to(cluster))")
        alive = {m.id for m in self.provisioner(cluster).machines(cluster.name)}
        lost = [m.id for m in recorded if m.id not in alive]
        if not lost:
            return None
        minutes = cluster.spec.get("autostop_mins")
        autostop = (f"by its autostop after {minutes:g} min idle, " if isinstance(minutes, int | float)
                    and minutes >= 0 else "")
        return (f"the machines of cluster {cluster.name!r} were deleted ({', '.join(lost)}; "
                f"{autostop}or by hand): cluster.up_if_not() makes new ones, then deploy again "
                "(.to(cluster)): what ran there is gone")

    # -- autostop, status ---------------------------------------------------------------------------

    def set_autostop(self, cluster: Cluster, minutes: float | None) -> None:
        """The daemons' autostop and the provisioner's (which deletes the machines)."""
        SshLauncher.set_autostop(self, cluster, minutes)
        self.provisioner(cluster).set_autostop(cluster.name, minutes, down=True)

    def machine_status(self, cluster: Cluster) -> dict[str, Any]:
        """The machines as the provisioner sees them now: ids, addresses, type, price."""
        provisioner = self.provisioner(cluster)
        machines = provisioner.machines(cluster.name)
        prices = [m.price_per_hour for m in machines]
        return {
            "provider": cluster.spec.get("provider") or specs.DEFAULT_PROVIDER,
            "provisioner": provisioner.name,
            "instance_type": machines[0].instance_type if machines else cluster.spec.get("instance_type"),
            "price_per_hour": sum(prices) if machines and None not in prices else (
                None if machines else 0.0),
            "machines": [{"id": m.id, "host": m.host, "internal_ip": m.internal_ip,
                          "instance_type": m.instance_type, "price_per_hour": m.price_per_hour}
                         for m in machines],
        }


class SkyLauncher(OnDemandLauncher):
    """``launcher="sky"``: the same launcher under SkyPilot's name (Runhouse's configs say so)."""

    name = "sky"


def _priced(machines: list[Machine]) -> str:
    kinds = sorted({m.instance_type or "?" for m in machines})
    prices = [m.price_per_hour for m in machines]
    price = f"${sum(prices):.2f}/h" if None not in prices else "price unknown"
    return f"{', '.join(kinds)}, {price}"


def _autostop_note(name: str, minutes: float | None) -> str:
    if minutes is None or minutes < 0:
        return (f"cluster {name!r} has no autostop: its machines run (and bill) until teardown(); "
                "autostop_mins= sets one")
    return (f"cluster {name!r}: autostop after {minutes:g} min idle deletes its machines "
            "(autostop_mins= changes it, -1: never)")


@hookimpl
def tether_launchers() -> list[type[Launcher]]:
    return [OnDemandLauncher, SkyLauncher]


__all__ = ["OnDemandLauncher", "SkyLauncher"]
