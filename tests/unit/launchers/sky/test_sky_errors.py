"""SkyPilot's errors as tether's, with SkyPilot's own exception classes, raised by SkyPilot itself
where it can here (its catalog, its optimizer), built with the texts its provisioner uses
otherwise (no cloud exists here to run out of capacity).
"""

from __future__ import annotations

import pytest

from tether.errors import ConfigError, LaunchError
from tether.launchers.ondemand.provisioner import MachineRequest, ProvisionError
from tether.launchers.sky import errors, translate
from tether.launchers.sky.provisioner import SkyProvisioner


def test_unknown_instance_type_names_close_matches_from_the_catalog():
    """``check`` runs SkyPilot's validation; its ValueError becomes a ConfigError naming the
    fixture catalog's nearest types (difflib)."""
    with pytest.raises(ConfigError) as caught:
        SkyProvisioner().check(MachineRequest(provider="aws", instance_type="g5.xlargee"))
    message = str(caught.value)
    assert "instance_type='g5.xlargee' is not an instance type of aws" in message
    assert "close matches in SkyPilot's aws catalog: g5.xlarge, g5.2xlarge" in message
    assert caught.value.instance_type == "g5.xlargee"


def test_close_matches_come_from_the_clouds_own_catalog():
    assert errors.close_instance_types("gcp", "n2-standrd-8") == ["n2-standard-8", "n1-standard-8"]
    assert errors.close_instance_types("aws", "zz-nothing-like-it") == []
    # a cloud whose catalog is not there (no network here): no hint, no failure
    assert errors.close_instance_types("lambda", "gpu_1x_a10") == []


def test_a_bad_region_keeps_skypilots_text_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"(?s)Invalid region 'eu-west-9'.*us-east-1, us-west-2"):
        SkyProvisioner().check(MachineRequest(provider="aws", region="eu-west-9"))


def optimize_error(request: MachineRequest) -> BaseException:
    from sky import dag as dag_lib
    from sky import optimizer

    task = translate.to_task("c", request)
    with dag_lib.Dag() as dag:
        dag.add(task)
    with pytest.raises(Exception) as caught:  # noqa: B017 - SkyPilot's class is asserted below
        optimizer.Optimizer.optimize(dag, quiet=True)
    return caught.value


def test_no_credentials_names_the_cloud_and_sky_check(enabled_clouds):
    """SkyPilot's optimizer, with only GCP's credentials found by ``sky check``, refuses a task
    that needs AWS; tether says which cloud and what to run."""
    from sky import exceptions as sky_exc

    enabled_clouds("GCP")
    request = MachineRequest(provider="aws", instance_type="m6i.large")
    raised = optimize_error(request)
    assert isinstance(raised, sky_exc.ResourcesUnavailableError)
    error = errors.translate_error(raised, request, cleaned_up=[])
    assert isinstance(error, ProvisionError) and isinstance(error, LaunchError)
    assert "SkyPilot has no usable credentials for aws" in str(error)
    assert "run `sky check aws`" in str(error)
    assert "requires aws which is not enabled" in str(error)  # SkyPilot's own reason
    assert "SkyPilot made no machine, nothing is left running" in str(error)


def test_no_cloud_at_all_names_the_cloud_and_sky_check(enabled_clouds):
    from sky import exceptions as sky_exc

    enabled_clouds()
    request = MachineRequest(provider="gcp", instance_type="n2-standard-8")
    raised = optimize_error(request)
    assert isinstance(raised, sky_exc.NoCloudAccessError)
    error = errors.translate_error(raised, request)
    assert isinstance(error, ProvisionError)
    assert "no usable credentials for gcp" in str(error) and "`sky check gcp`" in str(error)


def test_invalid_credentials_during_provisioning_name_the_cloud():
    """The text SkyPilot's provisioner raises when a cloud refuses its credentials."""
    from sky import exceptions as sky_exc

    raised = sky_exc.ResourcesUnavailableError(
        "Failed to provision all possible launchable resources. Relax the task's resource "
        "requirements: 1x AWS(m6i.large)", failover_history=[sky_exc.ResourcesUnavailableError(
            "Failed to provision on cloud AWS due to invalid cloud credentials: "
            "botocore.exceptions.NoCredentialsError: Unable to locate credentials")])
    error = errors.translate_error(raised, MachineRequest(provider="aws"), cleaned_up=[])
    assert "no usable credentials for aws" in str(error)
    assert "Unable to locate credentials" in str(error)


def test_no_capacity_keeps_skypilots_reasons_and_what_was_cleaned_up():
    from sky import exceptions as sky_exc

    tried = [sky_exc.ResourcesUnavailableError(
        "Failed to acquire resources in us-east-1a for {AWS(g5.xlarge[Spot])}: "
        "InsufficientInstanceCapacity: There is no Spot capacity available that matches your "
        "request."), sky_exc.ResourcesUnavailableError(
        "\x1b[33mFound no quota for g5.xlarge spot instances in region us-west-2 in AWS. "
        "\x1b[0mTo request quotas, check the instruction: "
        "https://docs.skypilot.co/en/latest/cloud-setup/quota.html.")]
    raised = sky_exc.ResourcesUnavailableError(
        "Failed to provision all possible launchable resources. Relax the task's resource "
        "requirements: 2x AWS(g5.xlarge[Spot], {'A10G': 1})", failover_history=tried)
    request = MachineRequest(provider="aws", instance_type="g5.xlarge", use_spot=True, num_nodes=2)
    error = errors.translate_error(raised, request, cleaned_up=["i-0abc", "i-0def"])
    assert isinstance(error, ProvisionError)
    assert error.cleaned_up == ["i-0abc", "i-0def"]
    text = str(error)
    assert text.startswith("SkyPilot could not launch 2 x g5.xlarge on aws: Failed to provision")
    assert "InsufficientInstanceCapacity" in text
    assert "Found no quota for g5.xlarge spot instances in region us-west-2" in text
    assert "\x1b[" not in text
    assert text.endswith("(cleaned up: i-0abc, i-0def)")
    assert len(error.reasons) == 3


def test_an_infeasible_request_is_a_provision_error_with_the_fix(enabled_clouds):
    from sky import exceptions as sky_exc

    enabled_clouds("AWS")
    request = MachineRequest(provider="aws", instance_type="m6i.large", accelerators="A10G:1")
    raised = optimize_error(request)
    assert isinstance(raised, sky_exc.ResourcesMismatchError)
    error = errors.translate_error(raised, request, cleaned_up=[], existed=True)
    assert "Accelerators for m6i.large: None" in str(error)
    assert "the cluster that was up before is left as it was" in str(error)


def test_an_unreachable_api_server_says_how_to_start_it():
    from sky import exceptions as sky_exc

    error = errors.translate_error(sky_exc.ApiServerConnectionError("http://127.0.0.1:46580"),
                                   MachineRequest(provider="kubernetes"), doing="delete")
    assert isinstance(error, ProvisionError)
    assert "cannot delete on kubernetes: SkyPilot's API server is not reachable" in str(error)
    assert "sky api start" in str(error)


def test_tethers_own_errors_pass_through():
    mine = ConfigError("already ours")
    assert errors.translate_error(mine, MachineRequest(provider="aws")) is mine


def test_skypilots_errors_leave_the_callers_tracebacks_alone():
    """SkyPilot sets ``sys.tracebacklimit = 0`` when it raises a user-facing error and leaves it
    so: SkyPilot called directly does; through tether it is put back."""
    import sys

    import sky

    assert not hasattr(sys, "tracebacklimit")
    with pytest.raises(ValueError):
        sky.Resources(infra="aws", instance_type="g5.xlargee").validate()
    assert sys.tracebacklimit == 0  # SkyPilot's doing
    del sys.tracebacklimit
    with pytest.raises(ConfigError):
        SkyProvisioner().check(MachineRequest(provider="aws", instance_type="g5.xlargee"))
    with pytest.raises(ConfigError):
        translate.to_task("t", MachineRequest(provider="aws", accelerators="A10G:two"))
    assert not hasattr(sys, "tracebacklimit")
