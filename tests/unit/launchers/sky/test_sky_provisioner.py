"""``SkyProvisioner`` on SkyPilot's SDK, as far as it goes without a cloud.

SkyPilot's SDK sends each call to its API server and ``sky.get`` waits for the result. That
server cannot run in the test venv (it needs uvicorn<0.36; see the Makefile), so
``in_process_server`` stands in for its transport only: each SDK call runs, when its request is
got, the function SkyPilot's server runs for it (``sky.core.status``, ``sky.core.down``,
``sky.execution.launch``...), on SkyPilot's real state in the throwaway HOME. No cloud exists
here: what runs is SkyPilot's own bookkeeping and its own ``sky check``, which finds no
credentials.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tether import plugins, state
from tether.errors import ConfigError
from tether.launchers.ondemand.provisioner import MachineRequest, ProvisionError
from tether.launchers.sky.provisioner import SkyProvisioner


@pytest.fixture
def in_process_server(monkeypatch):
    """The SDK calls tether makes, each run by SkyPilot's server-side function when got."""
    import sky
    from sky import core, execution
    from sky.client import sdk

    calls: list[str] = []

    def request(name, run):
        def submit(*args, **kwargs):
            calls.append(name)
            return lambda: run(*args, **kwargs)
        return submit

    def status(names=None, refresh=sky.StatusRefreshMode.NONE, all_users=False, *,
               _include_credentials=False, **_):
        return core.status(names, refresh, all_users, include_credentials=_include_credentials)

    monkeypatch.setattr(sky, "launch", request("launch", execution.launch))
    monkeypatch.setattr(sky, "status", request("status", status))
    monkeypatch.setattr(sky, "down", request("down", core.down))
    monkeypatch.setattr(sky, "stop", request("stop", core.stop))
    monkeypatch.setattr(sky, "autostop", request("autostop", core.autostop))
    monkeypatch.setattr(sdk, "enabled_clouds", request("enabled_clouds", core.enabled_clouds))
    monkeypatch.setattr(sky, "get", lambda got: got())
    monkeypatch.setattr(sky, "stream_and_get", lambda got, *a, **k: got())
    return calls


def test_sky_is_the_built_in_provisioner_of_every_cloud():
    found = plugins.provisioners()
    for provider in ("aws", "gcp", "azure", "lambda", "kubernetes", "k8s", "runpod"):
        assert found[provider] is SkyProvisioner


def test_registering_it_imports_no_skypilot():
    program = ("import sys, json, tether.plugins as p; p.provisioners(); "
               "print(json.dumps([m for m in sys.modules if m == 'sky' or m.startswith('sky.')]))")
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_machines_of_a_cluster_skypilot_never_made_is_empty(in_process_server):
    assert SkyProvisioner().machines("never-made") == []
    assert in_process_server == ["status"]


def test_terminate_and_stop_of_nothing_are_no_ops(in_process_server):
    provisioner = SkyProvisioner()
    provisioner.terminate("never-made")
    provisioner.terminate("never-made")
    provisioner.stop("never-made")
    assert in_process_server == ["down", "down", "stop"]


def test_autostop_of_a_cluster_that_is_not_there_says_so(in_process_server):
    with pytest.raises(ProvisionError, match="could not set autostop on cluster 'never-made': "
                                             "ClusterDoesNotExist"):
        SkyProvisioner().set_autostop("never-made", 30)


def test_a_launch_without_credentials_names_the_cloud_and_leaves_nothing(in_process_server,
                                                                         enabled_clouds):
    """SkyPilot's launch runs its own ``sky check`` (no cloud has credentials here) and refuses;
    the cluster it never made is looked for and nothing is left to delete."""
    enabled_clouds()
    said: list[str] = []
    request = MachineRequest(provider="aws", instance_type="m6i.large", autostop_mins=30)
    with pytest.raises(ProvisionError) as caught:
        SkyProvisioner().create("no-creds", request, said.append)
    text = str(caught.value)
    assert "Cloud access is not set up" in text  # SkyPilot's own check found none
    assert "SkyPilot has no usable credentials for aws" in text and "`sky check aws`" in text
    assert "SkyPilot made no machine, nothing is left running" in text
    assert caught.value.cleaned_up == []
    assert said == ["launching 1 x m6i.large on aws with SkyPilot as cluster 'no-creds' "
                    "(autodown after 30 idle minutes)"]
    assert in_process_server[:2] == ["status", "launch"] and "down" in in_process_server
    assert SkyProvisioner().machines("no-creds") == []


@pytest.fixture
def record_cluster(make_handle, sky_home):
    """Record a Kubernetes cluster in SkyPilot's own state the way its provisioner does when it
    has made the pods: the handle, the cluster config (where the SSH user and key come from), the
    user who launched it. (Kubernetes: SkyPilot's status checks a cluster's owner with the
    cloud's SDK, boto3..., which the test venv has not; for Kubernetes it reads the kubeconfig.)"""
    from sky import global_user_state, models
    from sky.utils import auth_utils, common_utils

    recorded = []
    private_key, _ = auth_utils.get_or_generate_keys()  # SkyPilot's own key, one per user

    def record(name: str, ips: list[tuple[str, str]], *, ready: bool = True):
        cluster_yaml = sky_home / ".sky" / "generated" / f"{name}.yml"
        cluster_yaml.parent.mkdir(parents=True, exist_ok=True)
        cluster_yaml.write_text(
            f"cluster_name: {name}-2ea4\nprovider:\n  module: sky.provision.kubernetes\n"
            f"  context: lab-ctx\nauth:\n  ssh_user: sky\n  ssh_private_key: {private_key}\n")
        handle = make_handle("k8s/lab-ctx", "4CPU--16GB", ips, ssh_user="sky", cluster=name,
                             cluster_yaml=str(cluster_yaml),
                             instance_ids=[f"{name}-2ea4-{n}" for n in range(len(ips))])
        global_user_state.add_or_update_user(models.User(id=common_utils.get_user_hash(),
                                                         name="tester"))
        global_user_state.add_or_update_cluster(name, handle, requested_resources=None,
                                                ready=ready)
        recorded.append(name)
        return private_key

    yield record
    for name in recorded:
        global_user_state.remove_cluster(name, terminate=True)


PODS = [("10.244.0.7", "10.244.0.7"), ("10.244.1.9", "10.244.1.9")]
TWO_PODS = MachineRequest(provider="kubernetes", instance_type="4CPU--16GB", num_nodes=2,
                          extra={"context": "lab-ctx"})


def test_a_cluster_skypilot_has_up_is_found_not_launched(in_process_server, record_cluster):
    """A cluster recorded UP in SkyPilot's own state: ``machines`` reads it through
    ``sky.status``, and ``create`` of the same request returns those machines with no launch;
    another size would be a launch (SkyPilot refuses to resize a cluster, and one that existed
    is left as it was)."""
    private_key = record_cluster("up2", PODS)
    provisioner = SkyProvisioner()
    found = provisioner.machines("up2")
    assert [m.host for m in found] == ["10.244.0.7", "10.244.1.9"]
    assert [m.id for m in found] == ["up2-2ea4-0", "up2-2ea4-1"]
    assert all("kubernetes-pod-ssh-proxy" in m.proxy_command for m in found)
    # SkyPilot sends the key's text with the status (its API server may be elsewhere)
    assert found[0].key_path == str(state.cluster_dir("up2") / "sky-key")
    with open(found[0].key_path) as mine, open(os.path.expanduser(private_key)) as skys:
        assert mine.read().rstrip("\n") == skys.read().rstrip("\n")
    assert provisioner.create("up2", TWO_PODS, pytest.fail) == found
    assert in_process_server == ["status", "status"]
    assert not provisioner._matches(found, MachineRequest(provider="kubernetes",
                                                          instance_type="8CPU--32GB",
                                                          num_nodes=2))


@pytest.fixture
def half_made_launch(monkeypatch, in_process_server, record_cluster):
    """SkyPilot's launch as it goes when the cloud makes the first pod and then has no room
    for the second: its provisioner has recorded the cluster (INIT) when it raises its
    ResourcesUnavailableError. No cloud exists here: this stands for the cloud's answer;
    ``sky.down`` is SkyPilot's own bookkeeping of a teardown (the record goes)."""
    import sky
    from sky import exceptions as sky_exc
    from sky import global_user_state

    def launch(task, cluster_name=None, **_):
        def run():
            record_cluster(cluster_name, PODS[:1], ready=False)
            raise sky_exc.ResourcesUnavailableError(
                "Failed to provision all possible launchable resources. Relax the task's "
                "resource requirements: 2x Kubernetes(4CPU--16GB)",
                failover_history=[sky_exc.ResourcesUnavailableError(
                    "Insufficient resources in Kubernetes context lab-ctx: 0/3 nodes are "
                    "available: 3 Insufficient cpu.")])
        in_process_server.append("launch")
        return run

    def down(cluster_name, **_):
        def run():
            global_user_state.remove_cluster(cluster_name, terminate=True)
        in_process_server.append("down")
        return run

    monkeypatch.setattr(sky, "launch", launch)
    monkeypatch.setattr(sky, "down", down)
    return in_process_server


def test_a_launch_that_fails_half_way_deletes_what_it_made(half_made_launch):
    provisioner = SkyProvisioner()
    with pytest.raises(ProvisionError) as caught:
        provisioner.create("half", TWO_PODS, lambda _: None)
    assert caught.value.cleaned_up == ["half-2ea4-0"]
    text = str(caught.value)
    assert "0/3 nodes are available: 3 Insufficient cpu" in text  # SkyPilot's reason
    assert text.endswith("(cleaned up: half-2ea4-0)")
    assert half_made_launch == ["status", "launch", "status", "down"]
    assert provisioner.machines("half") == []


def test_ctrl_c_during_a_launch_deletes_what_it_made(half_made_launch, monkeypatch):
    import sky

    launch = sky.launch

    def interrupted(task, cluster_name=None, **kwargs):
        run = launch(task, cluster_name, **kwargs)

        def stopped():
            with pytest.raises(Exception):  # noqa: B017 - the record is made, then Ctrl-C
                run()
            raise KeyboardInterrupt
        return stopped

    monkeypatch.setattr(sky, "launch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        SkyProvisioner().create("ctrl-c", TWO_PODS, lambda _: None)
    assert half_made_launch[-1] == "down"
    assert SkyProvisioner().machines("ctrl-c") == []


def test_check_refuses_a_bad_request_before_any_sdk_call(in_process_server):
    with pytest.raises(ConfigError, match="close matches.*m6i.large"):
        SkyProvisioner().check(MachineRequest(provider="aws", instance_type="m6i.larg"))
    assert in_process_server == []


def test_check_names_a_cloud_without_credentials(in_process_server, enabled_clouds):
    enabled_clouds("GCP")
    with pytest.raises(ProvisionError, match=r"no usable credentials for aws.*`sky check aws`.*"
                                             r"enabled clouds: gcp"):
        SkyProvisioner().check(MachineRequest(provider="aws", instance_type="m6i.large"))
    SkyProvisioner().check(MachineRequest(provider="gcp", instance_type="n2-standard-8"))
    assert in_process_server == ["enabled_clouds", "enabled_clouds"]


def test_price_comes_from_the_catalog():
    provisioner = SkyProvisioner()
    spot = MachineRequest(provider="aws", instance_type="g5.xlarge", region="us-east-1",
                          use_spot=True, num_nodes=2)
    assert provisioner.price(spot) == pytest.approx(2 * 0.403)
    on_demand = MachineRequest(provider="gcp", instance_type="n2-standard-8")
    assert provisioner.price(on_demand) == pytest.approx(0.388)
    assert provisioner.price(MachineRequest(provider="aws", instance_type="g5.xlargee")) is None


def test_plan_is_the_cheapest_launchable_offer_and_needs_no_credentials(enabled_clouds):
    """SkyPilot's catalog offers for the request on the cloud asked for, the cheapest first, as
    its optimizer chooses within one cloud; no cloud has credentials here."""
    enabled_clouds()
    provisioner = SkyProvisioner()
    plan = provisioner.plan(MachineRequest(provider="aws", cpus="4+", memory="16+", num_nodes=2))
    assert plan == {"cloud": "aws", "instance_type": "m6i.xlarge", "accelerators": None,
                    "region": None, "use_spot": False, "num_nodes": 2,
                    "price_per_hour": pytest.approx(2 * 0.192)}
    gpu = provisioner.plan(MachineRequest(provider="aws", accelerators="A10G:1", use_spot=True,
                                          region="us-west-2"))
    assert (gpu["instance_type"], gpu["region"]) == ("g5.xlarge", "us-west-2")
    assert gpu["price_per_hour"] == pytest.approx(0.421)  # that region's spot price
    with pytest.raises(ProvisionError, match="Accelerators for m6i.large: None"):
        provisioner.plan(MachineRequest(provider="aws", instance_type="m6i.large",
                                        accelerators="A10G:1"))
    with pytest.raises(ProvisionError, match="catalog has nothing for 1 x H100:8 on aws"):
        provisioner.plan(MachineRequest(provider="aws", accelerators="H100:8"))


def test_cheapest_is_served_and_checked_against_any_enabled_cloud(in_process_server,
                                                                  enabled_clouds):
    """provider="cheapest" (no provider=): SkyPilot may pick any cloud it has credentials for;
    with none, the error says so and names `sky check`. It has no price before launch."""
    assert plugins.provisioners()["cheapest"] is SkyProvisioner
    request = MachineRequest(provider="cheapest", cpus="4+", memory="16+")
    enabled_clouds()
    with pytest.raises(ProvisionError, match=r"no usable credentials for any cloud.*`sky check`"):
        SkyProvisioner().check(request)
    enabled_clouds("GCP")
    SkyProvisioner().check(request)
    assert SkyProvisioner().price(request) is None
    with pytest.raises(ConfigError, match="SkyPilot picks the cloud when it launches"):
        SkyProvisioner().plan(request)
