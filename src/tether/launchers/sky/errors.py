"""SkyPilot's exceptions as tether's, at one boundary (``translate_error``).

- an unknown instance type -> ``ConfigError`` naming close matches from SkyPilot's catalog;
- a bad region, zone, Kubernetes context, accelerator or size -> ``ConfigError`` with SkyPilot's
  text (it already names the valid values);
- no credentials for the cloud -> ``ProvisionError`` naming the cloud and ``sky check <cloud>``;
- no capacity, a quota, an infeasible request (``ResourcesUnavailableError``,
  ``ResourcesMismatchError``, ...) -> ``ProvisionError`` with SkyPilot's reason (and each region
  it tried) and what was cleaned up.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from tether.errors import ConfigError, TetherError
from tether.launchers.ondemand.provisioner import MachineRequest, ProvisionError
from tether.launchers.sky.guard import keeps_tracebacks
from tether.launchers.sky.translate import cloud_of

#: SkyPilot's texts for a cloud it has no usable credentials for (its optimizer: "requires AWS
#: which is not enabled"; its provisioner: "due to invalid cloud credentials")
_CREDENTIALS = re.compile(r"which (is|are) not enabled|invalid cloud credentials")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: object) -> str:
    """SkyPilot's message without its terminal colours."""
    return _ANSI.sub("", str(text)).strip()


@keeps_tracebacks
def instance_types(cloud: str) -> list[str]:
    """Every instance type in SkyPilot's catalog of ``cloud`` ([] when it has none or cannot be
    read: a message then names no close matches rather than failing)."""
    try:
        from sky.catalog import common

        frame = common.read_catalog(f"{cloud}/vms.csv")
        return sorted({str(t) for t in frame["InstanceType"].dropna().unique()})
    except Exception:  # noqa: BLE001 - no catalog (Kubernetes), no network: just no hint
        return []


def close_instance_types(cloud: str, name: str, n: int = 4) -> list[str]:
    """The catalog's instance types nearest ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, instance_types(cloud), n=n, cutoff=0.75)


def unknown_instance_type(cloud: str, name: str) -> ConfigError:
    close = close_instance_types(cloud, name)
    hint = (f"; close matches in SkyPilot's {cloud} catalog: {', '.join(close)}" if close
            else f"; list the types with `sky gpus list --infra {cloud} --all` or your cloud's docs")
    return ConfigError(f"instance_type={name!r} is not an instance type of {cloud}{hint}",
                       provider=cloud, instance_type=name)


def no_credentials(cloud: str | None, reason: str, cleaned_up: list[str] | None = None) -> ProvisionError:
    """``cloud`` None: provider='cheapest', SkyPilot had no cloud to choose from."""
    if cloud is None:
        return ProvisionError(
            "SkyPilot has no usable credentials for any cloud (provider='cheapest' lets it pick "
            "the cheapest of the clouds it may use): set up a cloud's credentials, then run `sky "
            f"check` and see that it says enabled, or give provider= (SkyPilot: {reason})",
            cleaned_up=cleaned_up, provider="cheapest", reason=reason)
    return ProvisionError(
        f"SkyPilot has no usable credentials for {cloud}: set them up, then run `sky check "
        f"{cloud}` and see that it says enabled (SkyPilot: {reason})",
        cleaned_up=cleaned_up, provider=cloud, reason=reason)


def reasons(error: BaseException) -> list[str]:
    """SkyPilot's reason, and each attempt's when it tried several regions/zones (its
    ``failover_history``) or gathered several (``ProvisionPrechecksError.reasons``)."""
    found = [plain(error)] if plain(error) else []
    for inner in list(getattr(error, "failover_history", None) or ()) + list(
            getattr(error, "reasons", None) or ()):
        text = plain(inner)
        if text and text not in found:
            found.append(text)
    return found or [type(error).__name__]


def translate_error(error: BaseException, request: MachineRequest, *,
                    cleaned_up: list[str] | None = None, existed: bool = False,
                    doing: str = "launch", cluster: str | None = None) -> TetherError:
    """The tether error for a SkyPilot exception raised while ``doing`` (launch, stop...).

    ``cleaned_up``: None when nothing could have been made (a check, a stop); a list (maybe
    empty) after a failed launch: what was deleted. ``existed``: the cluster was up before the
    launch and is left as it was. ``cluster``: named in the message (stop, teardown...).
    """
    from sky import exceptions as sky_exc

    translated = _translate(sky_exc, error, request, cleaned_up, doing, cluster)
    if cleaned_up == [] and isinstance(translated, ProvisionError):
        note = ("the cluster that was up before is left as it was" if existed
                else "SkyPilot made no machine, nothing is left running")
        translated = ProvisionError(f"{translated.message} ({note})", **translated.fields)
    return translated


def _translate(sky_exc: Any, error: BaseException, request: MachineRequest,
               cleaned_up: list[str] | None, doing: str, cluster: str | None) -> TetherError:
    if isinstance(error, TetherError):
        return error
    picked = cloud_of(request) if request.provider else None  # None: SkyPilot picks the cloud
    cloud = picked or "the cloud"
    text = plain(error)
    if isinstance(error, (sky_exc.NoCloudAccessError, sky_exc.CloudUserIdentityError,
                          sky_exc.InvalidCloudCredentials)):
        return no_credentials(picked, text, cleaned_up)
    if isinstance(error, sky_exc.ResourcesUnavailableError) and any(
            _CREDENTIALS.search(reason) for reason in reasons(error)):
        return no_credentials(picked, " | ".join(reasons(error)), cleaned_up)
    if isinstance(error, sky_exc.ApiServerConnectionError):
        return ProvisionError(
            f"cannot {doing} on {cloud}: SkyPilot's API server is not reachable ({text}); start it "
            "with `sky api start`, or check `sky api info`", cleaned_up=cleaned_up, provider=cloud)
    if isinstance(error, (sky_exc.ResourcesUnavailableError, sky_exc.ResourcesMismatchError,
                          sky_exc.ProvisionPrechecksError, sky_exc.KubernetesValidationError)):
        return ProvisionError(
            f"SkyPilot could not {doing} {describe(request, cluster)}: "
            + " | ".join(reasons(error)),
            cleaned_up=cleaned_up, provider=cloud, reasons=reasons(error))
    if isinstance(error, ValueError) and not isinstance(error, sky_exc.ClusterDoesNotExist):
        match = re.search(r"Invalid instance type '([^']+)'|No instance type (\S+) found", text)
        if match and picked:
            return unknown_instance_type(cloud, match.group(1) or match.group(2).rstrip("."))
        return ConfigError(f"SkyPilot refused {describe(request, cluster)}: {text}", provider=cloud)
    return ProvisionError(f"SkyPilot could not {doing} {describe(request, cluster)}: "
                          f"{type(error).__name__}: {text}", cleaned_up=cleaned_up, provider=cloud)


def describe(request: MachineRequest, cluster: str | None = None) -> str:
    """``2 x g5.xlarge on aws/us-east-1`` for messages; ``cluster 'x'`` for a cluster's own
    operations (stop, teardown), with its request when there is one."""
    shown: dict[str, Any] = request.as_dict()
    shape = (request.instance_type or request.accelerators
             or ", ".join(f"{k}={shown[k]}" for k in ("cpus", "memory") if k in shown) or "machines")
    where = "/".join(p for p in (request.provider, request.region, request.zone) if p)
    if request.provider == "cheapest":
        where = "the cheapest cloud"
    shown_request = f"{request.num_nodes} x {shape} on {where or 'any cloud'}"
    if cluster is None:
        return shown_request
    return f"cluster {cluster!r}" + (f" ({shown_request})" if request.provider else "")
