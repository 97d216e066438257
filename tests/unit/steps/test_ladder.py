"""Compute specs and ladders: parsing sizes, matching a cluster to a rung, climbing through the hook."""

from __future__ import annotations

import pytest

import tether as rh
from tether import compute, plugins
from tether.steps.ladder import Ladder, next_rung

SMALL, MEDIUM, LARGE = {"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 2}, {"memory": "4Gi", "cpus": 2}


@pytest.mark.parametrize("text, size", [
    ("512Mi", 512 * 2**20), ("2Gi", 2 * 2**30), ("1.5G", 1_500_000_000), ("512MB", 512_000_000),
    ("512MiB", 512 * 2**20), (4096, 4096), ("100", 100), (" 1 Ki ", 1024),
], ids=lambda v: str(v))
def test_memory_sizes_parse(text, size):
    assert compute.parse_memory(text) == size


@pytest.mark.parametrize("bad", ["lots", "-1Gi", "0", "1Xi", True, None, "1e9"], ids=repr)
def test_bad_memory_sizes_say_how_to_write_one(bad):
    with pytest.raises(rh.ConfigError, match="size"):
        compute.parse_memory(bad)


@pytest.mark.parametrize("bad", [0, -1, "two", True, float("inf")], ids=repr)
def test_bad_cpus_are_config_errors(bad):
    with pytest.raises(rh.ConfigError, match="CPUs"):
        compute.parse_cpus(bad)


def test_bytes_print_in_binary_units():
    assert compute.format_bytes(256 * 2**20) == "256 MiB"
    assert compute.format_bytes(int(1.5 * 2**30)) == "1.5 GiB"
    assert compute.format_bytes(None) == "unknown"


def test_ladder_is_exported_lazily_and_round_trips_through_json():
    ladder = rh.Ladder([SMALL, MEDIUM, "gpu"])
    assert ladder[2] == {"cluster": "gpu"}
    assert Ladder(ladder.config()) == ladder
    assert "cluster 'gpu'" in repr(ladder)


@pytest.mark.parametrize("bad", [[], {"memory": "1Gi"}, [{"memory": "huge"}], [{}], [42]], ids=repr)
def test_bad_ladders_are_config_errors(bad):
    with pytest.raises(rh.ConfigError):
        rh.Ladder(bad)


def test_oom_climbs_one_rung_and_stops_at_the_top():
    ladder = Ladder([SMALL, MEDIUM, LARGE])
    assert ladder.next(SMALL, "oom") == MEDIUM
    assert ladder.next({**MEDIUM, "cluster": "train", "python": "/x"}, "oom") == LARGE  # extra keys
    assert ladder.next(LARGE, "oom") is None
    assert ladder.next({"memory": 268435456, "cpus": 1.0}, "oom") == MEDIUM  # same values, other forms


@pytest.mark.parametrize("failure", ["user", "preempted", "anything"])
def test_only_oom_climbs(failure):
    assert Ladder([SMALL, MEDIUM]).next(SMALL, failure) is None


def test_a_cluster_on_no_rung_climbs_to_the_first_with_more_memory():
    rungs = [SMALL, MEDIUM, LARGE]
    assert next_rung({"memory": "512Mi"}, "oom", rungs) == MEDIUM
    assert next_rung({"memory": "8Gi"}, "oom", rungs) is None
    assert next_rung({"instance_type": "m5.large"}, "oom", rungs) == SMALL


def test_attempts_map_to_rungs_and_past_the_top_stay_there():
    ladder = Ladder([SMALL, MEDIUM, LARGE])
    assert [ladder.for_attempt(n) for n in (1, 2, 3, 4)] == [SMALL, MEDIUM, LARGE, LARGE]
    assert ladder.tried(2) == [SMALL, MEDIUM]
    assert [ladder.exhausted(n) for n in (1, 2, 3)] == [False, False, True]
    with pytest.raises(rh.ConfigError):
        ladder.for_attempt(0)


class SkipAhead:
    """A third party's policy: on OOM, jump straight to the top rung."""

    @plugins.hookimpl
    def tether_next_compute(self, current, failure, ladder):
        top = ladder[-1]
        return None if failure != "oom" or compute.contains(current, top) else top


def test_a_plugin_policy_answers_before_the_built_in_one():
    pm = plugins.get_plugin_manager()
    plugin = SkipAhead()
    pm.register(plugin, name="skip-ahead-test")
    try:
        ladder = Ladder([SMALL, MEDIUM, LARGE])
        assert ladder.next(SMALL, "oom") == LARGE
        assert ladder.tried(3) == [SMALL, LARGE]  # the top reached at the second attempt
        assert ladder.exhausted(2)
    finally:
        pm.unregister(plugin)
    assert Ladder([SMALL, MEDIUM, LARGE]).next(SMALL, "oom") == MEDIUM


def test_the_built_in_policy_is_registered_like_a_third_party_plugin():
    from importlib.metadata import entry_points

    import tether.steps.upscale as upscale

    assert {ep.name: ep.value for ep in entry_points(group="tether")}.get("upscale") == "tether.steps.upscale"
    assert plugins.get_plugin_manager().get_plugin("upscale") is upscale


@pytest.mark.parametrize("rung", [
    {"memory": "256Mi", "cpus": 1}, {"memory": "256Mi", "cpus": "1"}, {"memory": 268435456, "cpus": 1.0},
    {"memory": "256MiB", "cpus": "1.0"}, {"memory": 268435456.0, "cpus": 1}, {"memory": "268435456", "cpus": 1},
], ids=repr)
def test_a_rung_in_any_json_form_is_one_rung(rung):
    # orchestrators' configs carry numbers as strings (Dagster's resource fields, Airflow params)
    assert Ladder([rung, MEDIUM]) == Ladder([SMALL, MEDIUM])
    assert Ladder([rung, MEDIUM])[0] == SMALL  # canonical: == with the README's form
    assert Ladder([rung, MEDIUM]).next(SMALL, "oom") == MEDIUM
    assert Ladder([SMALL, MEDIUM]).index(rung) == 0


@pytest.mark.parametrize("given, canonical", [
    ({"memory": "1.5G"}, {"memory": "1500M"}), ({"memory": "1.5Gi"}, {"memory": "1536Mi"}),
    ({"memory": 1000}, {"memory": "1k"}), ({"memory": 1001}, {"memory": 1001}),
    ({"cpus": "0.5"}, {"cpus": 0.5}), ({"cpus": 2.0, "instance_type": "m5"}, {"cpus": 2, "instance_type": "m5"}),
], ids=repr)
def test_normalize_writes_one_canonical_form(given, canonical):
    assert compute.normalize(given) == canonical
    assert compute.normalize(canonical) == canonical


def test_a_rung_reads_the_same_whatever_order_its_keys_came_in():
    """Messages name a rung one way: a spec saved as {"cpus", "memory"} reads like the ladder's."""
    assert compute.describe({"cpus": 1, "memory": "256Mi"}) == compute.describe({"memory": "256Mi", "cpus": 1})
    assert compute.describe({"cpus": 1, "memory": "256Mi"}) == "memory=256Mi cpus=1"
