"""The resources' fields, checked when the definitions load (no cluster needed): the README's shared
ladder, with ``cpus`` as a number or a string, and a bad rung refused with what a rung looks like."""

import pytest

from tether.providers.dagster import PipesTetherClient, TetherClusterResource, TetherServiceResource


@pytest.mark.parametrize("cpus", [1, "1", 0.5], ids=["int", "str", "float"])
def test_the_shared_ladder_is_accepted_with_cpus_as_a_number_or_a_string(cpus):
    ladder = [{"memory": "256Mi", "cpus": cpus}, {"memory": "2Gi", "cpus": 2}]
    cluster = TetherClusterResource(cluster_name="train", ladder=ladder, teardown="on_failure")
    assert cluster.ladder == ladder
    service = TetherServiceResource(service_name="trainer", cluster=cluster, target="trainer:Trainer")
    assert service.cluster.ladder == ladder
    assert PipesTetherClient(cluster=cluster).cluster.ladder == ladder


def test_a_bad_rung_or_policy_is_refused_saying_what_to_use():
    with pytest.raises(Exception, match=r"memory='lots' is not a size: use bytes or e.g. '512Mi'"):
        TetherClusterResource(cluster_name="train", ladder=[{"memory": "lots"}])
    with pytest.raises(Exception, match="a ladder needs at least one rung"):
        TetherClusterResource(cluster_name="train", ladder=[])
    with pytest.raises(Exception, match="'always', 'on_failure' or 'never'"):
        TetherClusterResource(cluster_name="train", teardown="sometimes")


def test_a_cluster_resource_with_a_registry_url_points_the_step_at_it(sqlite_registry, monkeypatch):
    """``registry_url`` + ``registry_token`` (an ``EnvVar`` in definitions): while the resource is
    set up (the step's process), names resolve in that team registry; after, as before. A service
    resource uses its cluster's."""
    from dagster import EnvVar, build_resources

    from tether.core.registry import remote
    from tether.core.registry.names import resolve

    for name in ("TETHER_REGISTRY", "TETHER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEAM_TOKEN", sqlite_registry.tokens["bob"])
    cluster = TetherClusterResource(cluster_name="train", registry_url=sqlite_registry.url,
                                    registry_token=EnvVar("TEAM_TOKEN"))
    service = TetherServiceResource(service_name="trainer", cluster=cluster, target="trainer:Trainer")
    with build_resources({"service": service}) as resources:
        assert remote.configured() == remote.Login(sqlite_registry.url, sqlite_registry.tokens["bob"])
        assert resolve("train").path == "/bob/train"
        assert resources.service.cluster.registry_url == sqlite_registry.url
    assert remote.configured() is None
