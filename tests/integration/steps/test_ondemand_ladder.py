"""Ladder rungs that are bigger machines, on on-demand clusters of ``testcloud`` (issue 12).

No cloud exists here: ``testcloud`` (``ondemand_support.py``) is the one fake, and its instances are
real test hosts, each in a cgroup of its instance type's memory ("small": 256 MiB, "large": 2 GiB).
A service that needs more than a small machine has is OOM-killed by the kernel; the step's next
attempt provisions the "large" rung as a cluster of its own, the service is made there again under
the same name, and the cluster's ``shrink=`` decides whether the small machines are deleted.
"""

from __future__ import annotations

import pytest
from ondemand_support import BACKEND, host_gone, provide_testcloud
from placed_code import importable

import tether as rh
from tether.steps import actions as steps
from tether.steps import climb
from tether.steps.services import Service

pytestmark = pytest.mark.timeout(900)

LADDER = [{"instance_type": "small"}, {"instance_type": "large"}]

CODE = '''
class Model:
    def __init__(self, tag):
        self.tag, self.fitted = tag, None

    def fit(self, mib):
        chunks = [bytearray(b"\\x01" * (1 << 20)) for _ in range(mib)]
        self.fitted = len(chunks)
        return self.fitted

    def score(self):
        return f"{self.tag}:{self.fitted}"
'''


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    with importable(tmp_path_factory.mktemp("odladder"), "odladder_code", CODE) as module:
        yield module


@pytest.fixture(scope="module")
def testcloud(test_hosts):
    yield from provide_testcloud(test_hosts)


def _types(name: str) -> list[str]:
    return [i.type for i in BACKEND.clusters.get(name) or []]


def _bring_up(name: str, logger, **spec):
    return steps.bring_up(name, spec={"provider": "testcloud", "instance_type": "small",
                                      "autostop_mins": -1, **spec}, ladder=LADDER, logger=logger)


def test_an_oom_on_a_small_machine_climbs_to_a_large_one_and_the_small_one_goes(
        testcloud, code, names, logger):
    name, svc = names("odl"), names("fitter")
    big = f"{name}.rung2"
    names(big)  # torn down after the test too (the fixture tears down by name)
    _bring_up(name, logger)
    steps.deploy(code.Model, svc, name, args=["m"])
    small = list(BACKEND.clusters[name])
    with pytest.raises(rh.OutOfMemoryError) as caught:
        steps.call(svc, "fit", kwargs={"mib": 400}, ladder=LADDER, attempt=1, logger=logger)
    assert not caught.value.exhausted and caught.value.next_rung == {"instance_type": "large"}

    assert steps.call(svc, "fit", kwargs={"mib": 400}, ladder=LADDER, attempt=2, logger=logger) == 400
    assert Service.load(svc).cluster == big
    assert _types(big) == ["large"]
    assert name not in BACKEND.clusters and all(host_gone(i.host) for i in small)  # shrink="terminate"
    said = "\n".join(logger.lines)
    assert f"to bigger machines, cluster {big!r}" in said and "machines deleted (shrink='terminate')" in said

    # a later step, at its first attempt, finds the service where it lives now: nothing launched
    launches = dict(BACKEND.launches)
    assert steps.call(svc, "score", ladder=LADDER, attempt=1, logger=logger) == "m:400"
    assert BACKEND.launches == launches
    assert rh.cluster(big).status()["instance_type"] == "large"


def test_shrink_keep_leaves_the_small_machines_and_their_services(testcloud, code, names, logger):
    name, hog, keeper = names("odk"), names("hog"), names("keeper")
    big = f"{name}.rung2"
    names(big)
    _bring_up(name, logger, shrink="keep")
    steps.deploy(code.Model, hog, name, args=["h"])
    steps.deploy(code.Model, keeper, name, args=["k"], env=rh.env(name="keep-env"))  # own worker
    assert steps.call(keeper, "fit", kwargs={"mib": 8}) == 8
    with pytest.raises(rh.OutOfMemoryError):
        steps.call(hog, "fit", kwargs={"mib": 400}, ladder=LADDER, attempt=1, logger=logger)
    assert steps.call(hog, "fit", kwargs={"mib": 400}, ladder=LADDER, attempt=2, logger=logger) == 400

    assert _types(name) == ["small"] and _types(big) == ["large"]
    assert Service.load(hog).cluster == big and Service.load(keeper).cluster == name
    assert steps.call(keeper, "score") == "k:8"  # the small machine kept its state
    assert "keeps its machines (shrink='keep')" in "\n".join(logger.lines)


def test_a_failed_climb_leaves_no_bigger_machine_and_the_small_one_serving(testcloud, code, names, logger):
    name, svc = names("odf"), names("fitter")
    big = f"{name}.rung2"
    names(big)
    _bring_up(name, logger)
    steps.deploy(code.Model, svc, name, args=["f"])
    with pytest.raises(rh.OutOfMemoryError):
        steps.call(svc, "fit", kwargs={"mib": 400}, ladder=LADDER, attempt=1, logger=logger)
    BACKEND.fail["sshd_refuses"] = 0  # the large machine is made, and tether cannot get on it
    try:
        with pytest.raises(rh.LaunchError, match=r"cleaned up: tc-") as caught:
            steps.call(svc, "fit", kwargs={"mib": 400}, ladder=LADDER, attempt=2, logger=logger)
    finally:
        BACKEND.fail.clear()
    assert caught.value.cleaned_up and big not in BACKEND.clusters  # nothing keeps billing
    assert _types(name) == ["small"] and Service.load(svc).cluster == name
    assert steps.call(svc, "fit", kwargs={"mib": 8}) == 8  # the small machine still serves


def test_a_user_cluster_named_like_a_rung_is_its_own_cluster(testcloud, code, names, logger):
    """``x.rung2`` named so by its user is not rung 2 of ``x``: its climb makes ``x.rung2.rung2``,
    and a rung cluster says what it is in its saved spec (``rung_of``), not in its name."""
    name, svc = f"{names('odn')}.rung2", names("fitter")
    big = f"{name}.rung2"
    try:
        _bring_up(name, logger)
        steps.deploy(code.Model, svc, name, args=["n"])
        with pytest.raises(rh.OutOfMemoryError):
            steps.call(svc, "fit", kwargs={"mib": 400}, ladder=LADDER, attempt=1, logger=logger)
        assert steps.call(svc, "fit", kwargs={"mib": 400}, ladder=LADDER, attempt=2, logger=logger) == 400
        assert Service.load(svc).cluster == big
        assert _types(big) == ["large"] and name not in BACKEND.clusters
        assert rh.cluster(big).spec["rung_of"] == name  # saved: a later process reads it too
    finally:
        for cluster in (big, name):
            try:
                rh.cluster(cluster).teardown()
            except rh.NotFoundError:
                pass


def test_a_climb_does_not_take_over_a_user_cluster_of_the_rungs_name(testcloud, names, logger):
    """The user's own saved ``x.rung2`` is refused as x's rung, before anything is launched."""
    name = names("odo")
    mine = rh.ondemand_cluster(f"{name}.rung2", instance_type="small", provider="testcloud").save()
    small = rh.ondemand_cluster(name, instance_type="small", provider="testcloud")
    launches = dict(BACKEND.launches)
    try:
        with pytest.raises(rh.ConfigError, match=r"exists and is not a rung of"):
            climb.to_bigger_machines(small, {"instance_type": "large"}, 1, logger.info, "a test", "rung 2 of 2")
        assert BACKEND.launches == launches and f"{name}.rung2" not in BACKEND.clusters
    finally:
        mine.delete_configs()
