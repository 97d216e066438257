"""``SkyProvisioner``: machines on ~20 clouds and Kubernetes through SkyPilot's Python SDK.

SkyPilot's SDK (0.10 on) is a client of its API server: each call (``sky.launch``,
``sky.status``, ``sky.down``...) returns a request id at once, and ``sky.get(request_id)`` (or
``sky.stream_and_get``, which also shows the request's log) waits for the result and raises the
server's exception as SkyPilot's own class. The client starts a local API server by itself when
none is configured (``sky api start``; ``sky api info`` says which one is used).

A tether cluster is a SkyPilot cluster of the same name: ``sky status`` shows it, ``sky down
<name>`` deletes it. The task has no setup and no run: tether brings itself up on the machines
over SSH, the same path as machines someone already has.
"""

from __future__ import annotations

from typing import Any

from tether.errors import ConfigError, install_hint
from tether.launchers.ondemand.provisioner import (
    Machine,
    MachineRequest,
    Provisioner,
    ProvisionError,
    Say,
)
from tether.launchers.sky import errors, machines, translate
from tether.launchers.sky.guard import keeps_tracebacks


def _sky() -> Any:
    """SkyPilot, imported when first needed (``import sky`` takes seconds)."""
    try:
        import sky
    except ImportError as exc:
        raise ConfigError("on-demand clusters on clouds and Kubernetes need SkyPilot: "
                          + install_hint("sky")) from exc
    return sky


def _field(record: Any, key: str) -> Any:
    """A field of a ``sky.status`` record (a dict, or a response model with the same keys)."""
    if isinstance(record, dict):
        return record.get(key)
    try:
        return record[key]
    except (KeyError, TypeError):
        return getattr(record, key, None)


def _hourly(resources: Any) -> float:
    """One node's dollars per hour (infinite when the catalog has no price: never cheapest)."""
    try:
        return float(resources.get_cost(3600))
    except Exception:  # noqa: BLE001 - Kubernetes and some clouds have no price
        return float("inf")


class SkyProvisioner(Provisioner):
    """Makes, lists, stops and deletes an on-demand cluster's machines with SkyPilot."""

    name = "sky"
    providers = translate.PROVIDERS

    # -- before anything is launched ---------------------------------------------------------

    @keeps_tracebacks
    def check(self, request: MachineRequest) -> None:
        """Refuse what SkyPilot would refuse, before launching: a bad keyword, an instance type
        or region its catalog does not have (naming close matches), a cloud without credentials
        (naming the cloud and ``sky check``)."""
        cloud = translate.cloud_of(request)
        sky = _sky()
        with translate.sky_context(request):
            try:
                task = translate.to_task("tether-check", request)
                for resources in task.resources:
                    resources.validate()
            except (ConfigError, ProvisionError):
                raise
            except Exception as exc:  # noqa: BLE001 - SkyPilot's ValueErrors and its own classes
                raise errors.translate_error(exc, request, doing="check") from exc
            from sky.client import sdk

            try:
                enabled = [str(c).lower() for c in sky.get(sdk.enabled_clouds())]
            except Exception as exc:  # noqa: BLE001 - the API server, as any other SkyPilot error
                raise errors.translate_error(exc, request, doing="check credentials") from exc
        if cloud is None and not enabled:  # provider="cheapest": SkyPilot picks among these
            raise errors.no_credentials(None, "enabled clouds: none")
        if cloud is not None and cloud not in enabled:
            raise errors.no_credentials(
                cloud, f"enabled clouds: {', '.join(enabled) or 'none'}")

    # -- the machines ------------------------------------------------------------------------

    @keeps_tracebacks
    def create(self, cluster: str, request: MachineRequest, say: Say) -> list[Machine]:
        """Launch ``request`` as SkyPilot cluster ``cluster``, or find it up and return its
        machines (a stopped one is started again by the launch). All or nothing: a failed
        launch of a new cluster is ``sky down``-ed, and the ProvisionError says what was cleaned
        up; a cluster that existed before is left as it was."""
        sky = _sky()
        status, existing = self._state(cluster)
        if status == "UP" and self._matches(existing, request):
            return existing
        existed = status is not None
        task = translate.to_task(cluster, request)
        autostop = translate.launch_kwargs(request)
        say(f"launching {errors.describe(request)} with SkyPilot as cluster {cluster!r}"
            + (f" (autodown after {autostop['idle_minutes_to_autostop']} idle minutes)"
               if autostop else " (no autostop: it bills until teardown())"))
        with translate.sky_context(request):
            try:
                sky.stream_and_get(sky.launch(task, cluster_name=cluster, **autostop))
            except KeyboardInterrupt:
                if not existed:  # Ctrl-C mid-launch: nothing is left billing either
                    self._clean_up(cluster)
                raise
            except Exception as exc:  # noqa: BLE001 - SkyPilot's errors, translated at one boundary
                cleaned = [] if existed else self._clean_up(cluster)
                raise errors.translate_error(
                    exc, request, cleaned_up=cleaned, existed=existed) from exc
        made = self.machines(cluster)
        if len(made) != request.num_nodes:
            cleaned = [] if existed else self._clean_up(cluster)
            raise ProvisionError(
                f"SkyPilot launched cluster {cluster!r} but reports {len(made)} reachable "
                f"node(s) of {request.num_nodes}", cleaned_up=cleaned, cluster=cluster)
        return made

    @keeps_tracebacks
    def machines(self, cluster: str) -> list[Machine]:
        """The cluster's nodes SkyPilot knows (head first), running or stopped; [] when it has
        no such cluster."""
        return self._state(cluster)[1]

    def _state(self, cluster: str) -> tuple[str | None, list[Machine]]:
        """SkyPilot's status of ``cluster`` (``UP``, ``STOPPED``, ``INIT``; None: no such
        cluster) and its machines, from one ``sky.status`` (refreshed when autostop is set, so a
        cluster SkyPilot autodowned is gone)."""
        sky = _sky()
        from sky import exceptions as sky_exc

        try:
            records = sky.get(sky.status([cluster], refresh=sky.StatusRefreshMode.AUTO,
                                         _include_credentials=True))
        except sky_exc.ClusterDoesNotExist:
            return None, []
        except Exception as exc:  # noqa: BLE001 - SkyPilot's errors, translated at one boundary
            raise errors.translate_error(exc, MachineRequest(), doing="list the machines of",
                                         cluster=cluster) from exc
        for record in records or ():
            if _field(record, "name") == cluster:
                status = _field(record, "status")
                found = machines.machines_of({"handle": _field(record, "handle"),
                                              "credentials": _field(record, "credentials")})
                return str(getattr(status, "value", status)), found
        return None, []

    @keeps_tracebacks
    def stop(self, cluster: str) -> None:
        """``sky stop``: the machines stop, their disks stay (and bill). Kubernetes pods cannot
        stop: they are deleted."""
        sky = _sky()
        from sky import exceptions as sky_exc

        try:
            sky.get(sky.stop(cluster))
        except sky_exc.ClusterDoesNotExist:
            return
        except sky_exc.NotSupportedError:
            self.terminate(cluster)
        except Exception as exc:  # noqa: BLE001
            raise errors.translate_error(exc, MachineRequest(), doing="stop",
                                         cluster=cluster) from exc

    @keeps_tracebacks
    def terminate(self, cluster: str) -> None:
        """``sky down``: the machines and their disks are deleted. A no-op without a cluster."""
        sky = _sky()
        from sky import exceptions as sky_exc

        try:
            sky.get(sky.down(cluster))
        except sky_exc.ClusterDoesNotExist:
            return
        except Exception as exc:  # noqa: BLE001
            raise errors.translate_error(exc, MachineRequest(), doing="delete",
                                         cluster=cluster) from exc

    @keeps_tracebacks
    def set_autostop(self, cluster: str, minutes: float | None, down: bool = True) -> None:
        """SkyPilot's autostop (``down``: autodown), run by SkyPilot's agent on the head node, so
        that it happens with the caller gone. None or negative: cancel it."""
        sky = _sky()
        idle = -1 if minutes is None or minutes < 0 else max(1, round(minutes))
        try:
            sky.get(sky.autostop(cluster, idle, down=down))
        except Exception as exc:  # noqa: BLE001
            raise errors.translate_error(exc, MachineRequest(), doing="set autostop on",
                                         cluster=cluster) from exc

    @keeps_tracebacks
    def plan(self, request: MachineRequest) -> dict[str, Any]:
        """What SkyPilot would launch for ``request`` on the cloud asked for: the cheapest of
        the launchable resources that cloud's catalog offers (the choice SkyPilot's optimizer
        makes within one cloud). Computed here from SkyPilot's catalog: no credentials, no API
        server (``sky.optimize`` through the server returns no plan, only its log), nothing
        launched. The region is the cheapest one unless ``region=`` was given."""
        cloud = translate.cloud_of(request)
        if cloud is None:
            raise ConfigError(
                f"provider={translate.CHEAPEST!r}: SkyPilot picks the cloud when it launches, among "
                "the clouds `sky check` enabled on its API server; give provider= for a plan or price")
        task = translate.to_task("tether-plan", request)
        wanted = next(iter(task.resources))
        with translate.sky_context(request):
            try:
                wanted.validate()
                feasible = wanted.cloud.get_feasible_launchable_resources(
                    wanted, num_nodes=request.num_nodes)
            except Exception as exc:  # noqa: BLE001 - SkyPilot's errors, translated at one boundary
                raise errors.translate_error(exc, request, doing="plan") from exc
        if not feasible.resources_list:
            fuzzy = ", ".join(str(c) for c in feasible.fuzzy_candidate_list or ())
            raise ProvisionError(
                f"SkyPilot's {cloud} catalog has nothing for {errors.describe(request)}"
                + (f": {errors.plain(feasible.hint)}" if feasible.hint else "")
                + (f"; close offers: {fuzzy}" if fuzzy else ""), provider=cloud)
        best = min(feasible.resources_list, key=_hourly)
        hourly = _hourly(best)
        return {"cloud": cloud, "instance_type": best.instance_type,
                "accelerators": best.accelerators, "region": best.region,
                "use_spot": best.use_spot, "num_nodes": request.num_nodes,
                "price_per_hour": None if hourly == float("inf") else hourly * request.num_nodes}

    @keeps_tracebacks
    def price(self, request: MachineRequest) -> float | None:
        """Dollars per hour of all nodes, from SkyPilot's catalog (spot prices with
        ``use_spot``), for SkyPilot's plan of the request; None when it cannot be priced
        (Kubernetes, a shape the catalog lacks)."""
        try:
            return self.plan(request)["price_per_hour"]
        except (ProvisionError, ConfigError):
            return None

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _matches(existing: list[Machine], request: MachineRequest) -> bool:
        """Machines that serve ``request`` as they are (same node count and type)."""
        return len(existing) == request.num_nodes and (
            request.instance_type is None
            or all(m.instance_type == request.instance_type for m in existing))

    def _clean_up(self, cluster: str) -> list[str]:
        """``sky down`` a cluster a failed launch left; what was deleted, for the error."""
        try:
            left = [m.id for m in self.machines(cluster)]
        except Exception:  # noqa: BLE001 - still try to delete it
            left = []
        try:
            _sky().get(_sky().down(cluster))
        except Exception as exc:  # noqa: BLE001
            from sky import exceptions as sky_exc

            if isinstance(exc, sky_exc.ClusterDoesNotExist):
                return []
            return [f"FAILED to delete SkyPilot cluster {cluster!r} ({errors.plain(exc)}): run "
                    f"`sky down {cluster}`"]
        return left or [f"SkyPilot cluster {cluster!r} (sky down)"]
