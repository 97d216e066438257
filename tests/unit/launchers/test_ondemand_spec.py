"""The on-demand launcher's definition: Runhouse's keywords checked and normalized, the request
they make, and ``tether.cluster(...)`` choosing the launcher from them. Nothing is launched."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tether import plugins
from tether.errors import ConfigError
from tether.launchers.ondemand import spec as specs
from tether.launchers.ondemand.launcher import OnDemandLauncher, SkyLauncher
from tether.launchers.ondemand.provisioner import Provisioner
from tether.plugins import hookimpl


class Nowhere(Provisioner):
    """A provisioner that never has to make anything: these tests only define clusters."""

    name = "nowhere"
    providers = frozenset({"nowhere", "kubernetes"})


class _Plugin:
    @hookimpl
    def tether_provisioners(self):
        return [Nowhere]


@pytest.fixture
def nowhere():
    pm = plugins.get_plugin_manager()
    plugin = _Plugin()
    pm.register(plugin)
    yield
    pm.unregister(plugin)


def test_the_launchers_are_registered_under_both_names():
    found = plugins.launchers()
    assert found["ondemand"] is OnDemandLauncher and found["sky"] is SkyLauncher


def test_keywords_on_cluster_choose_the_ondemand_launcher(nowhere):
    made = tether.cluster("od-unit-a", instance_type="m5.large", provider="nowhere")
    assert made.launcher_name == "ondemand"
    assert tether.ondemand_cluster("od-unit-b", provider="nowhere").launcher_name == "ondemand"
    assert tether.cluster("od-unit-c", launcher="sky", provider="nowhere").launcher_name == "sky"
    assert tether.cluster("od-unit-d", launcher="local", memory="1Gi").launcher_name == "local"


def test_values_are_normalized_and_autostop_has_a_default(nowhere, monkeypatch):
    spec = {"provider": "nowhere", "accelerators": {"A10G": 1}, "cpus": 4, "memory": "32+",
            "open_ports": 8080}
    OnDemandLauncher().validate(spec)
    assert spec["accelerators"] == "A10G:1" and spec["cpus"] == "4" and spec["open_ports"] == [8080]
    assert spec["autostop_mins"] == specs.DEFAULT_AUTOSTOP_MINS
    monkeypatch.setenv("TETHER_ONDEMAND_AUTOSTOP_MINS", "15")
    assert tether.ondemand_cluster("od-unit-e", provider="nowhere").autostop_mins == 15
    assert tether.ondemand_cluster("od-unit-f", provider="nowhere", autostop_mins=-1).autostop_mins == -1


def test_the_request_carries_every_keyword(nowhere):
    spec = {"provider": "kubernetes", "instance_type": "4CPU--16GB", "num_nodes": 2, "use_spot": True,
            "region": "r", "zone": "z", "disk_size": 100, "open_ports": [80, 443],
            "context": "kind-a", "namespace": "ml", "kube_config_path": "~/.kube/other"}
    made = tether.ondemand_cluster("od-unit-req", image="docker:img", **spec)
    request = made.launcher.request(made)
    assert (request.provider, request.instance_type, request.num_nodes, request.use_spot) == (
        "kubernetes", "4CPU--16GB", 2, True)
    assert (request.region, request.zone, request.disk_size, request.image) == ("r", "z", 100, "docker:img")
    assert request.open_ports == (80, 443)
    assert request.extra == {"context": "kind-a", "namespace": "ml", "kube_config_path": "~/.kube/other"}


def test_the_request_image_is_the_clusters_docker_base(nowhere):
    """``image=`` is taken by ``Cluster`` (a ``tether.Image``); the launcher asks the provisioner
    for its docker base, in SkyPilot's form. Without a docker base (steps only), no image."""
    image = tether.Image("x").from_docker("python:3.11-slim").install_packages(["numpy"])
    made = tether.ondemand_cluster("od-unit-img", provider="nowhere", image=image)
    assert made.launcher.docker_images
    assert made.launcher.request(made).image == "docker:python:3.11-slim"
    steps_only = tether.ondemand_cluster("od-unit-img2", provider="nowhere",
                                         image=tether.Image("y").run_bash(["true"]))
    assert steps_only.launcher.request(steps_only).image is None
    assert tether.ondemand_cluster("od-unit-img3", provider="nowhere").launcher.request(
        tether.ondemand_cluster("od-unit-img3", provider="nowhere")).image is None


@pytest.mark.parametrize(("spec", "message"), [
    ({"num_nodes": 0}, "num_nodes is a number of machines"),
    ({"num_nodes": True}, "num_nodes is a number of machines"),
    ({"use_spot": "yes"}, "use_spot is True or False"),
    ({"cpus": "many"}, "cpus is a number"),
    ({"memory": "lots"}, "memory is a number"),
    ({"accelerators": "A10G:x"}, "accelerators is 'KIND' or 'KIND:COUNT'"),
    ({"disk_size": -5}, "disk_size is a number of GB"),
    ({"open_ports": ["http"]}, "open_ports is a port or a list of ports"),
    ({"open_ports": [70000]}, "open_ports holds port numbers"),
    ({"namespace": "ml"}, "go with provider='kubernetes'"),
    ({"autostop_mins": "soon"}, "autostop_mins is a number of minutes"),
    ({"shrink": "maybe"}, "shrink is 'terminate'"),
    ({"ips": ["10.0.0.1"]}, "does not understand ips"),
    ({"instance_type": ""}, "instance_type is a name"),
])
def test_bad_values_are_refused_at_definition(nowhere, spec, message):
    with pytest.raises(ConfigError, match=message):
        OnDemandLauncher().validate({"provider": "nowhere", **spec})


@pytest.fixture
def without_sky(nowhere):
    """The built-in SkyPilot provisioner unregistered (as a third-party-only install would be)."""
    pm = plugins.get_plugin_manager()
    module = pm.unregister(name="sky")
    assert module is not None
    yield
    pm.register(module, name="sky")


def test_an_unknown_provider_names_the_installed_ones_and_what_to_install(without_sky):
    with pytest.raises(ConfigError, match=r"provider='aws' \(installed: kubernetes, nowhere\)") as caught:
        tether.cluster("od-unit-g", instance_type="m5.large", provider="aws")
    # tether is on no package index: the line given is the one that works from this checkout
    root = Path(tether.__file__).resolve().parents[2]
    assert f"pip install -e '{root}[sky]' -c '{root / 'constraints.txt'}'" in str(caught.value)


def test_without_a_provider_skypilot_picks_the_cheapest_cloud(nowhere):
    """No provider=: the default ("cheapest") is served by the built-in SkyPilot provisioner."""
    from tether.launchers.sky import SkyProvisioner

    made = tether.ondemand_cluster("od-unit-h", cpus="4+", memory="16+")
    assert specs.request(made.spec).provider == specs.DEFAULT_PROVIDER == "cheapest"
    assert type(OnDemandLauncher().provisioner(made)) is SkyProvisioner


def test_without_a_provider_and_without_skypilot_the_error_names_the_installed_ones(without_sky):
    with pytest.raises(ConfigError, match=r"provider='cheapest' \(installed: kubernetes, nowhere\)"
                                          r".*pip install -e '.*\[sky\]' -c"):
        tether.ondemand_cluster("od-unit-i", cpus="4+")


@pytest.mark.parametrize(("memory", "asked"), [
    ("32+", "32+"), ("32", "32"), (32, "32"), ("2Gi", "2+"), ("512Mi", "0.5+"), (2 * 1024**3, "2+"),
])
def test_memory_in_the_clouds_form_or_tethers_a_rungs_size_is_at_least_that(nowhere, memory, asked):
    spec = {"provider": "nowhere", "memory": memory}
    OnDemandLauncher().validate(spec)
    assert specs.request(spec).memory == asked


# -- Runhouse's instance_type shorthand ('A10G:1': accelerators, 'CPU:4': cpus) -----------------


@pytest.mark.parametrize(("given", "meant"), [
    ({"instance_type": "A10G:1"}, {"accelerators": "A10G:1"}),
    ({"instance_type": "H100:8", "cpus": "32+"}, {"accelerators": "H100:8", "cpus": "32+"}),
    ({"instance_type": "CPU:4"}, {"cpus": "4"}),
    ({"instance_type": "CPU:4+"}, {"cpus": "4+"}),
    ({"instance_type": "g5.xlarge"}, {"instance_type": "g5.xlarge"}),
    ({"instance_type": "n2-standard-8"}, {"instance_type": "n2-standard-8"}),
    ({"instance_type": "4CPU--16GB"}, {"instance_type": "4CPU--16GB"}),
])
def test_runhouse_instance_type_shorthand(given, meant):
    spec = {"provider": "aws", **given}
    specs.check(spec)
    shape = {k: v for k, v in spec.items() if k in ("instance_type", "accelerators", "cpus")}
    assert shape == meant
    request = specs.request(spec)
    assert (request.instance_type, request.accelerators) == (meant.get("instance_type"), meant.get("accelerators"))


def test_the_shorthand_and_its_keyword_together_are_refused():
    with pytest.raises(ConfigError, match="means accelerators='A10G:1'.*give one of them"):
        specs.check({"provider": "aws", "instance_type": "A10G:1", "accelerators": "T4:1"})

