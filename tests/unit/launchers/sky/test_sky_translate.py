"""The translation of a ``MachineRequest`` into SkyPilot's ``sky.Resources``/``sky.Task``/
``sky.launch`` keywords, checked by SkyPilot's own classes over the fixture catalog (conftest).

No cloud exists here: SkyPilot validates against its catalog (the fixture's CSVs), its kubeconfig
(the fixture's, whose cluster does not exist) and, for the dry run, its optimizer, which is what
``sky.launch(..., dryrun=True)`` runs on the API server. Each test fails when the translation is
wrong: a misspelt keyword is a TypeError of ``sky.Resources``, a wrong value a ValueError of
``validate()``, a wrong accelerator form a different ``accelerators`` dict or an infeasible plan.
"""

from __future__ import annotations

import inspect

import pytest

from tether.errors import ConfigError
from tether.launchers.ondemand.provisioner import MachineRequest
from tether.launchers.sky import translate


def resources(request: MachineRequest):
    """SkyPilot's own Resources for one node of ``request``, validated by SkyPilot."""
    import sky

    built = sky.Resources(**translate.resources_config(request))
    built.validate()
    return built


def test_every_provider_is_a_skypilot_cloud():
    from sky.utils import registry

    assert translate.CLOUDS <= set(registry.CLOUD_REGISTRY.keys())
    for alias, cloud in translate.ALIASES.items():
        assert registry.CLOUD_REGISTRY.from_str(alias) is registry.CLOUD_REGISTRY.from_str(cloud)


def test_aws_instance_type_accelerator_spot_region_zone_image_ports_disk():
    request = MachineRequest(provider="aws", instance_type="g5.xlarge", accelerators="A10G:1",
                             region="us-east-1", zone="us-east-1a", use_spot=True, disk_size=200,
                             image="nvcr.io/nvidia/pytorch:24.01-py3", open_ports=(8080, 6006))
    built = resources(request)
    assert str(built.cloud) == "AWS"
    assert built.instance_type == "g5.xlarge"
    assert built.accelerators == {"A10G": 1}
    assert built.use_spot is True
    assert (built.region, built.zone) == ("us-east-1", "us-east-1a")
    assert built.disk_size == 200
    assert built.image_id == {"us-east-1": "docker:nvcr.io/nvidia/pytorch:24.01-py3"}
    assert built.extract_docker_image() == "nvcr.io/nvidia/pytorch:24.01-py3"
    assert sorted(built.ports) == ["6006", "8080"]
    assert built.get_cost(3600) == pytest.approx(0.403)  # the spot price of that row


def test_aws_cpus_and_memory_stay_minimums():
    built = resources(MachineRequest(provider="aws", cpus="4+", memory="16+"))
    assert (built.cpus, built.memory) == ("4+", "16+")
    assert built.instance_type is None


def test_gcp_host_vm_with_an_attached_gpu_and_a_docker_image():
    request = MachineRequest(provider="gcp", instance_type="n1-standard-8", accelerators="T4:1",
                             region="us-central1", zone="us-central1-a", image="docker:ubuntu:22.04")
    built = resources(request)
    assert str(built.cloud) == "GCP"
    assert (built.instance_type, built.accelerators) == ("n1-standard-8", {"T4": 1})
    assert (built.region, built.zone) == ("us-central1", "us-central1-a")
    assert built.image_id == {"us-central1": "docker:ubuntu:22.04"}


def test_the_catalog_is_really_read():
    """The negative control: a type the fixture catalog lacks is refused by SkyPilot itself
    (so the tests above pass because the values are right, not because nothing is checked)."""
    with pytest.raises(ValueError, match="Invalid instance type 'g5.xlargee'"):
        resources(MachineRequest(provider="aws", instance_type="g5.xlargee"))
    with pytest.raises(ValueError, match="Invalid region 'eu-west-9'"):
        resources(MachineRequest(provider="aws", region="eu-west-9"))


def test_kubernetes_context_is_skypilots_region_and_namespace_is_its_config():
    from sky.provision.kubernetes import utils as k8s_utils

    request = MachineRequest(provider="kubernetes", cpus="4+", memory="16+", open_ports=(8080,),
                             image="python:3.11-slim",
                             extra={"context": "lab-ctx", "namespace": "team-a"})
    built = resources(request)
    assert str(built.cloud) == "Kubernetes"
    assert built.region == "lab-ctx"
    assert (built.cpus, built.memory, built.ports) == ("4+", "16+", ["8080"])
    assert built.image_id == {"lab-ctx": "docker:python:3.11-slim"}
    # SkyPilot resolves the namespace of a context from its config: ours while tether launches
    assert k8s_utils.get_namespace("lab-ctx") == "default"
    with translate.sky_context(request):
        assert k8s_utils.get_namespace("lab-ctx") == "team-a"
    assert k8s_utils.get_namespace("lab-ctx") == "default"


def test_kubernetes_unknown_context_is_refused_by_skypilot():
    with pytest.raises(ValueError, match="Context nope-ctx not found in kubeconfig"):
        resources(MachineRequest(provider="k8s", extra={"context": "nope-ctx"}))


def test_kube_config_path_is_the_kubeconfig_skypilot_reads(tmp_path, sky_home):
    from sky.provision.kubernetes import utils as k8s_utils

    other = tmp_path / "other-kubeconfig"
    other.write_text((sky_home / ".kube" / "config").read_text().replace("lab-ctx", "far-ctx"))
    request = MachineRequest(provider="kubernetes",
                             extra={"context": "far-ctx", "kube_config_path": str(other)})
    with pytest.raises(ValueError, match="far-ctx not found"):
        resources(request)
    with translate.sky_context(request):
        assert "far-ctx" in k8s_utils.get_all_kube_context_names()
        assert resources(request).region == "far-ctx"


def test_task_has_the_nodes_and_no_commands():
    task = translate.to_task("trainer", MachineRequest(provider="aws", instance_type="m6i.large",
                                                       num_nodes=3))
    assert (task.name, task.num_nodes, task.run, task.setup) == ("trainer", 3, None, None)
    (built,) = task.resources
    assert built.instance_type == "m6i.large"
    with pytest.raises(ConfigError, match="at least one node"):
        translate.to_task("trainer", MachineRequest(provider="aws", num_nodes=0))


@pytest.mark.parametrize(("fields", "match"), [
    ({"accelerators": "A10G:two"}, "accelerators"),
    ({"cpus": "many"}, "cpus"),
    ({"memory": "lots+"}, "memory"),
], ids=["accelerator-count", "cpus", "memory"])
def test_a_value_skypilot_cannot_read_is_a_config_error(fields, match):
    with pytest.raises(ConfigError, match=f"SkyPilot refused .*{match}"):
        translate.to_task("trainer", MachineRequest(provider="aws", **fields))


def test_autostop_is_skypilots_autodown_in_launch():
    import sky

    task = translate.to_task("c", MachineRequest(provider="aws"))
    kwargs = translate.launch_kwargs(MachineRequest(provider="aws", autostop_mins=30))
    assert kwargs == {"idle_minutes_to_autostop": 30, "down": True}
    bound = inspect.signature(sky.launch).bind(task, cluster_name="c", **kwargs)
    assert bound.arguments["down"] is True
    assert translate.launch_kwargs(MachineRequest(provider="aws", autostop_mins=None)) == {}
    assert translate.launch_kwargs(MachineRequest(provider="aws", autostop_mins=-1)) == {}


@pytest.mark.parametrize(("fields", "match"), [
    ({"provider": "awz"}, "not a cloud SkyPilot provisions"),
    ({"provider": "aws", "extra": {"namespace": "x"}}, "namespace is not a keyword of provider='aws'"),
    ({"provider": "kubernetes", "extra": {"contxt": "x"}}, "it takes: context, kube_config_path"),
    ({"provider": "kubernetes", "region": "us-east-1"}, "takes context="),
    ({"provider": "gcp", "zone": "us-central1-a"}, "needs its region"),
], ids=["unknown-provider", "k8s-key-on-aws", "misspelt-k8s-key", "region-on-k8s", "zone-alone"])
def test_bad_keywords_are_config_errors(fields, match):
    with pytest.raises(ConfigError, match=match):
        translate.resources_config(MachineRequest(**fields))


# -- the dry run: SkyPilot's optimizer over the fixture catalog ----------------------------------


def optimize(request: MachineRequest):
    """What ``sky.launch(dryrun=True)`` does before it would provision: the optimizer picks the
    cheapest launchable resources, or raises. (The dry run itself goes through SkyPilot's API
    server, whose uvicorn pin the test venv cannot meet; see the Makefile.)"""
    from sky import dag as dag_lib
    from sky import optimizer

    task = translate.to_task("dry", request)
    with dag_lib.Dag() as dag:
        dag.add(task)
    optimizer.Optimizer.optimize(dag, quiet=True)
    return task.best_resources


def test_dry_run_plans_the_spot_gpu_node(enabled_clouds):
    enabled_clouds("AWS", "GCP")
    best = optimize(MachineRequest(provider="aws", accelerators="A10G:1", use_spot=True,
                                   num_nodes=2))
    assert (best.instance_type, best.use_spot, best.region) == ("g5.xlarge", True, "us-east-1")


def test_dry_run_of_runhouses_instance_type_shorthand(enabled_clouds):
    """``rh.cluster("a10g", instance_type="A10G:1", provider="aws")`` as Runhouse's docs (and
    tether's README) write it: an A10G machine, not an instance type named "A10G:1"."""
    from tether.launchers.ondemand import spec as specs

    enabled_clouds("AWS")
    spec = {"provider": "aws", "instance_type": "A10G:1"}
    specs.check(spec)
    assert optimize(specs.request(spec)).instance_type == "g5.xlarge"


def test_dry_run_picks_the_smallest_type_with_enough_cpus_and_memory(enabled_clouds):
    enabled_clouds("AWS")
    best = optimize(MachineRequest(provider="aws", cpus="4+", memory="16+"))
    assert best.instance_type == "m6i.xlarge"


def test_dry_run_refuses_an_accelerator_the_type_has_not(enabled_clouds):
    from sky import exceptions as sky_exc

    enabled_clouds("AWS")
    with pytest.raises(sky_exc.ResourcesMismatchError, match="Accelerators for m6i.large: None"):
        optimize(MachineRequest(provider="aws", instance_type="m6i.large", accelerators="A10G:1"))


def test_dry_run_on_gcp_attaches_the_gpu_to_the_host_vm(enabled_clouds):
    enabled_clouds("GCP")
    best = optimize(MachineRequest(provider="gcp", instance_type="n1-standard-8",
                                   accelerators="T4:1", region="us-central1"))
    assert (best.instance_type, best.accelerators, best.zone) == (
        "n1-standard-8", {"T4": 1}, "us-central1-a")


# -- across SkyPilot's wire: the client sends the task to its API server as YAML -----------------


@pytest.mark.parametrize("request_", [
    MachineRequest(provider="aws", instance_type="g5.xlarge", accelerators="A10G:1",
                   region="us-east-1", zone="us-east-1a", use_spot=True, disk_size=200,
                   image="nvcr.io/nvidia/pytorch:24.01-py3", open_ports=(8080,), num_nodes=2),
    MachineRequest(provider="gcp", accelerators="T4:1", cpus="8+", region="us-central1"),
    MachineRequest(provider="kubernetes", cpus="4+", memory="16+", image="python:3.11-slim",
                   extra={"context": "lab-ctx"}),
], ids=["aws", "gcp", "kubernetes"])
def test_the_task_survives_skypilots_wire(request_):
    """``sky.launch`` dumps the DAG to YAML (``dag_utils.dump_dag_to_yaml_str``) and the server
    loads it back: what tether built must come out the same on the server's side."""
    from sky import dag as dag_lib
    from sky.utils import dag_utils

    task = translate.to_task("wire", request_)
    with dag_lib.Dag() as dag:
        dag.add(task)
    (loaded,) = dag_utils.load_dag_from_yaml_str(dag_utils.dump_dag_to_yaml_str(dag)).tasks
    assert (loaded.name, loaded.num_nodes) == ("wire", request_.num_nodes)
    (sent,), (got,) = task.resources, loaded.resources
    for field in ("cloud", "instance_type", "accelerators", "cpus", "memory", "region", "zone",
                  "use_spot", "disk_size", "image_id", "ports"):
        assert str(getattr(got, field)) == str(getattr(sent, field)), field
    got.validate()


# -- provider="cheapest" (an on-demand cluster without provider=): SkyPilot picks the cloud -------


def test_cheapest_names_no_cloud_and_keeps_the_shape(enabled_clouds):
    enabled_clouds("AWS", "GCP")  # a Resources without a cloud is checked against the enabled ones
    request = MachineRequest(provider="cheapest", cpus="8+", memory="30+", use_spot=True,
                             image="python:3.11-slim", open_ports=(8080,))
    assert "infra" not in translate.resources_config(request)
    built = resources(request)
    assert built.cloud is None  # SkyPilot's optimizer chooses it at launch
    assert (built.cpus, built.memory, built.use_spot, built.ports) == ("8+", "30+", True, ["8080"])
    assert built.extract_docker_image() == "python:3.11-slim"


def test_cheapest_is_the_cheapest_offer_of_the_enabled_clouds(enabled_clouds):
    """The dry run over the fixture catalog: 8 cpus and 32 GB on demand are cheapest on AWS
    (m6i.2xlarge $0.384/h, GCP n2-standard-8 $0.388/h), on spot on GCP ($0.094/h vs $0.152/h).
    With only AWS enabled, AWS's offer is taken; provider="aws" stays on AWS."""
    enabled_clouds("AWS", "GCP")
    best = optimize(MachineRequest(provider="cheapest", cpus="8+", memory="32+"))
    assert (str(best.cloud), best.instance_type) == ("AWS", "m6i.2xlarge")
    spot = MachineRequest(provider="cheapest", cpus="8+", memory="32+", use_spot=True)
    best = optimize(spot)
    assert (str(best.cloud), best.instance_type) == ("GCP", "n2-standard-8")
    on_aws = optimize(MachineRequest(provider="aws", cpus="8+", memory="32+", use_spot=True))
    assert (str(on_aws.cloud), on_aws.instance_type) == ("AWS", "m6i.2xlarge")
    enabled_clouds("AWS")
    best = optimize(spot)
    assert (str(best.cloud), best.instance_type) == ("AWS", "m6i.2xlarge")


def test_cheapest_with_an_accelerator_goes_to_a_cloud_that_has_it(enabled_clouds):
    enabled_clouds("AWS", "GCP")
    best = optimize(MachineRequest(provider="cheapest", accelerators="A10G:1"))
    assert (str(best.cloud), best.instance_type) == ("AWS", "g5.xlarge")


@pytest.mark.parametrize(("fields", "match"), [
    ({"region": "us-east-1"}, "give provider= too"),
    ({"zone": "us-east-1a"}, "give provider= too"),
    ({"extra": {"namespace": "x"}}, "namespace need a provider="),
], ids=["region", "zone", "k8s-key"])
def test_cheapest_refuses_what_belongs_to_one_cloud(fields, match):
    with pytest.raises(ConfigError, match=match):
        translate.resources_config(MachineRequest(provider="cheapest", **fields))


def test_cheapest_survives_skypilots_wire():
    from sky import dag as dag_lib
    from sky.utils import dag_utils

    task = translate.to_task("wire", MachineRequest(provider="cheapest", cpus="4+", num_nodes=2))
    with dag_lib.Dag() as dag:
        dag.add(task)
    (loaded,) = dag_utils.load_dag_from_yaml_str(dag_utils.dump_dag_to_yaml_str(dag)).tasks
    (got,) = loaded.resources
    assert (got.cloud, got.cpus, loaded.num_nodes) == (None, "4+", 2)
