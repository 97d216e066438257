"""Which rung a cluster is at, for rungs that have no order of their own (``instance_type``): the
ladder's order decides, so a later step's first attempt never shrinks a cluster that climbed."""

from __future__ import annotations

from types import SimpleNamespace

from tether.steps.climb import reached, rung_base
from tether.steps.ladder import Ladder

LADDER = Ladder([{"instance_type": "small"}, {"instance_type": "large"}])


def test_a_bigger_instance_type_is_at_and_above_the_smaller_rung():
    large = {"provider": "testcloud", "instance_type": "large", "cluster": "train.rung2"}
    assert reached(LADDER, large, LADDER[0]) and reached(LADDER, large, LADDER[1])


def test_a_smaller_instance_type_is_below_the_bigger_rung():
    small = {"provider": "testcloud", "instance_type": "small", "cluster": "train"}
    assert reached(LADDER, small, LADDER[0]) and not reached(LADDER, small, LADDER[1])


def test_a_type_off_the_ladder_reaches_no_rung():
    assert not reached(LADDER, {"instance_type": "medium"}, LADDER[0])


def test_a_cluster_rung_is_reached_only_on_that_cluster():
    ladder = Ladder([{"instance_type": "small"}, "big"])
    assert not reached(ladder, {"instance_type": "small", "cluster": "train"}, ladder[1])


def test_a_rung_cluster_is_known_by_its_saved_rung_of_never_by_its_name():
    assert rung_base(SimpleNamespace(name="train.rung2", spec={"rung_of": "train"})) == "train"
    assert rung_base(SimpleNamespace(name="train", spec={})) == "train"
    assert rung_base(SimpleNamespace(name="mine.rung2", spec={})) == "mine.rung2"  # the user's own name


def test_a_clouds_memory_form_is_not_a_size_to_compare():
    ladder = Ladder([{"memory": "1Gi"}, {"memory": "4Gi"}])
    assert not reached(ladder, {"memory": "32+", "provider": "aws"}, ladder[0])
    assert reached(ladder, {"memory": "4Gi", "provider": "aws"}, ladder[1])
