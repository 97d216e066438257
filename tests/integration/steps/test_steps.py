"""The actions every orchestrator provider wraps (tether.steps.actions), on real local clusters: bring
up a named cluster, deploy by import path, call with a ladder that climbs on a real OOM, tear down;
and what a wrong name or an exhausted ladder says."""

from __future__ import annotations

import memory_code
import pytest

import tether as rh
from tether.steps import actions as steps
from tether.steps.services import Service

SMALL, BIG = {"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}


def test_a_step_oom_on_the_small_rung_succeeds_on_the_next_and_the_state_stays_there(names, logger):
    cluster = steps.bring_up(names("climb"), ladder=[SMALL, BIG], logger=logger)
    assert cluster.status()["limits"]["memory"] == 256 << 20
    service = names("model")
    steps.deploy("memory_code:Model", service, cluster.name, kwargs={"tag": "t"}, logger=logger)
    with pytest.raises(rh.OutOfMemoryError) as info:
        steps.call(service, "fit", kwargs={"mib": 400}, ladder=[SMALL, BIG], attempt=1, logger=logger)
    err = info.value
    assert (err.exhausted, err.next_rung, err.rungs_tried, err.attempt) == (False, BIG, [SMALL], 1)
    assert err.limit == 256 << 20 and err.peak
    assert "The next attempt runs on memory=1Gi cpus=1" in str(err)
    assert steps.call(service, "fit", kwargs={"mib": 400}, ladder=[SMALL, BIG], attempt=2, logger=logger) == 400
    limits = rh.cluster(cluster.name).status()["limits"]
    assert limits["memory"] == 256 << 20  # the cluster keeps its size...
    assert limits["envs"]["default"]["memory"] == 1 << 30  # ...and the service's env grew in place
    # a later step, by name only, finds the same live (fitted) instance
    assert steps.call(service, "score", logger=logger) == "t:400"
    # ...and with the same ladder at its first attempt does not shrink the cluster back
    assert steps.call(service, "score", ladder=[SMALL, BIG], attempt=1) == "t:400"
    assert "fitting on 400 MiB" in logger.lines  # remote output went to the step's logger
    assert any("env 'default' of cluster" in line and "goes from memory=256Mi cpus=1 to memory=1Gi cpus=1"
               in line for line in logger.lines)


def test_an_exhausted_ladder_raises_the_last_oom_listing_every_rung_tried(names):
    cluster = steps.bring_up(names("top"), ladder=[SMALL, BIG])
    service = names("hog")
    steps.deploy(memory_code.hog, service, cluster.name)
    with pytest.raises(rh.OutOfMemoryError) as info:
        steps.call(service, args=[2048], ladder=[SMALL, BIG], attempt=2)
    err = info.value
    assert err.exhausted and err.next_rung is None and err.rungs_tried == [SMALL, BIG]
    assert err.limit == 1 << 30
    assert "ran out of memory on every rung of the ladder: tried memory=256Mi cpus=1 (attempt 1), " \
           "memory=1Gi cpus=1 (attempt 2)" in str(err)


def test_a_rung_can_be_another_cluster_and_the_service_follows_it(names):
    small = steps.bring_up(names("small"), spec=SMALL)
    big = steps.bring_up(names("big"), spec={"memory": "1Gi"})
    service = names("model")
    steps.deploy(memory_code.Model, service, small.name)
    ladder = rh.Ladder([small.name, big.name])
    with pytest.raises(rh.OutOfMemoryError) as info:
        steps.call(service, "fit", kwargs={"mib": 400}, ladder=ladder, attempt=1)
    assert info.value.next_rung == {"cluster": big.name}
    assert steps.call(service, "fit", kwargs={"mib": 400}, ladder=ladder, attempt=2) == 400
    assert Service.load(service).cluster == big.name
    assert steps.call(service, "score") == "m:400"


@pytest.mark.parametrize("fn, match", [(memory_code.raise_memory_error, "could not allocate"),
                                       (memory_code.cuda_like_oom, "CUDA out of memory")],
                         ids=["MemoryError", "cuda"])
def test_memory_errors_raised_by_the_code_are_ooms_too(names, fn, match):
    cluster = steps.bring_up(names("oomish"), launcher="local")
    service = names("svc")
    steps.deploy(fn, service, cluster.name)
    with pytest.raises(rh.OutOfMemoryError, match=match) as info:
        steps.call(service, ladder=[SMALL, BIG], attempt=1)
    assert info.value.limit is None  # nothing killed it: no limit to report


def test_other_failures_come_through_as_they_are(names):
    cluster = steps.bring_up(names("plain"), launcher="local")
    service = names("fail")
    steps.deploy(memory_code.fail, service, cluster.name)
    with pytest.raises(ValueError, match="bad batch"):
        steps.call(service, args=["bad batch"], ladder=[SMALL, BIG], attempt=1)


def test_a_service_is_made_again_when_its_cluster_lost_it(names):
    cluster = steps.bring_up(names("again"), launcher="local")
    service = names("model")
    steps.deploy("memory_code:Model", service, cluster.name, args=["z"])
    cluster.teardown()  # a new daemon knows nothing of it
    assert steps.call(service, "fit", kwargs={"mib": 1}) == 1
    assert steps.call(service, "score") == "z:1"


def test_arguments_that_are_not_json_are_kept_pickled(names):
    cluster = steps.bring_up(names("pickled"), launcher="local")
    service = names("model")
    steps.deploy(memory_code.Model, service, cluster.name, kwargs={"tag": b"bytes"})
    assert Service.load(service).pickled_args
    cluster.teardown()
    assert steps.call(service, "fit", kwargs={"mib": 1}) == 1
    assert steps.call(service, "score") == "b'bytes':1"


def test_unknown_names_are_said_with_the_name():
    with pytest.raises(rh.NotFoundError, match="no cluster named 'nowhere-x'"):
        steps.bring_up("nowhere-x")
    with pytest.raises(rh.NotFoundError, match="no cluster named 'nowhere-y'"):
        steps.deploy(memory_code.hog, "h", "nowhere-y")
    with pytest.raises(rh.NotFoundError, match="no service named 'ghost-z'"):
        steps.call("ghost-z", "fit")
    with pytest.raises(rh.NotFoundError, match="no cluster named 'nowhere-w'"):
        steps.teardown("nowhere-w")
    with pytest.raises(rh.ConfigError, match="cannot import 'no_such_module'"):
        steps.deploy("no_such_module:Thing", "t", "local")
