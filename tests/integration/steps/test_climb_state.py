"""State across a climb, on real local clusters with real cgroup OOM kills (issue 11).

- On a local cluster only the env of the service that ran out of memory grows: the other envs'
  workers, and the state of their instances, stay; the cluster keeps its size.
- The step's log names every instance whose state the climb reset.
- ``__tether_rebuild__(self, context)`` is called on each instance the climb made again, with its
  constructor arguments and the step's call, before the call runs.
- Where one env cannot grow (a rung with a key only a machine can take), the whole cluster climbs
  as before, and the warning says which instances are made again and which are gone.
"""

from __future__ import annotations

import sys

import memory_code
import pytest
import rebuild_code
from limits_support import require_cgroups

import tether as rh
from tether.steps import actions as steps
from tether.steps.services import Service

SMALL, BIG = {"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}
LADDER = [SMALL, BIG]


def oom_then_climb(service: str, method: str, logger, ladder=LADDER, **kwargs):
    """Attempt 1 runs out of memory on the small rung; attempt 2 climbs and returns the result."""
    with pytest.raises(rh.OutOfMemoryError) as info:
        steps.call(service, method, kwargs=kwargs, ladder=ladder, attempt=1, logger=logger)
    assert info.value.limit == 256 << 20 and not info.value.exhausted
    return steps.call(service, method, kwargs=kwargs, ladder=ladder, attempt=2, logger=logger)


def warnings_in(logger) -> list[str]:
    return [line for line in logger.lines if "reset the state" in line]


def test_only_the_env_that_ran_out_of_memory_grows_and_the_others_keep_their_state(names, logger):
    require_cgroups()
    cluster = steps.bring_up(names("envs"), ladder=LADDER, logger=logger)
    hog, keeper = names("hog"), names("keeper")
    steps.deploy(memory_code.Model, hog, cluster.name, args=["h"], env=rh.env(name="fit-env"))
    steps.deploy(memory_code.Model, keeper, cluster.name, args=["k"], env=rh.env(name="keep-env"))
    assert steps.call(keeper, "fit", kwargs={"mib": 8}) == 8
    keeper_pid = steps.call(keeper, "pid")

    assert oom_then_climb(hog, "fit", logger, mib=400) == 400

    # the other env's worker never restarted: same process, same state
    assert steps.call(keeper, "pid") == keeper_pid
    assert steps.call(keeper, "score") == "k:8"
    limits = cluster.status()["limits"]
    assert limits["memory"] == 256 << 20 and limits["enforced_by"].startswith("cgroup")
    grown = limits["envs"]["fit-env"]
    assert grown["memory"] == 1 << 30 and grown["enforced_by"].startswith("cgroup")
    assert grown["cgroup"] != limits["cgroup"]  # a group of its own, not under the cluster's limit
    assert "keep-env" not in limits["envs"]
    # the dashboard's timeline: the OOM kill, then the climb the step posted
    events = cluster.client.request_json("GET", "/_tether/events")["events"]
    kinds = [e["kind"] for e in events]
    assert "oom_kill" in kinds and kinds.index("oom_kill") < kinds.index("climb"), kinds
    climb = next(e for e in events if e["kind"] == "climb")
    assert "from rung 1 to rung 2 of 2" in climb["message"], climb
    assert climb["how"] == "env" and climb["env"] == "fit-env" and climb["attempt"] == 2
    (told,) = warnings_in(logger)
    assert f"instance {hog!r}" in told and keeper not in told and "env 'fit-env'" in told

    # a later step on the same ladder, at its first attempt, finds the env big already: no restart
    hog_pid = steps.call(hog, "pid", ladder=LADDER, attempt=1, logger=logger)
    assert steps.call(hog, "score", ladder=LADDER, attempt=1) == "h:400"
    assert steps.call(hog, "pid") == hog_pid
    assert len(warnings_in(logger)) == 1

    # a daemon restart keeps the env's size; a teardown forgets it
    cluster.restart_server()
    assert cluster.status()["limits"]["envs"]["fit-env"]["memory"] == 1 << 30
    cluster.teardown()
    cluster.up_if_not()
    assert "envs" not in cluster.status()["limits"]


def test_the_rebuild_hook_gets_the_constructor_arguments_and_the_step_inputs(names, logger, tmp_path):
    require_cgroups()
    cluster = steps.bring_up(names("rebuild"), ladder=LADDER, logger=logger)
    trainer, sibling = names("trainer"), names("sibling")
    steps.deploy(rebuild_code.Checkpointed, trainer, cluster.name, kwargs={"folder": str(tmp_path), "tag": "a"})
    steps.deploy(rebuild_code.Checkpointed, sibling, cluster.name, args=[str(tmp_path)], kwargs={"tag": "b"})
    assert steps.call(sibling, "warm", args=[7]) == 7

    assert oom_then_climb(trainer, "fit", logger, mib=400) == 400

    (context,) = steps.call(trainer, "rebuilds")
    assert context["service"] == trainer and context["cluster"] == cluster.name
    assert (context["args"], context["kwargs"]) == ((), {"folder": str(tmp_path), "tag": "a"})
    assert (context["method"], context["call_args"], context["call_kwargs"]) == ("fit", (), {"mib": 400})
    assert context["attempt"] == 2 and context["rung"] == BIG
    assert "climb" in context["reason"] and "'default'" in context["reason"]
    # the instance that shared the worker was made again too, and rebuilt without a call of its own
    (other,) = steps.call(sibling, "rebuilds")
    assert (other["args"], other["kwargs"], other["method"]) == ((str(tmp_path),), {"tag": "b"}, None)
    assert steps.call(sibling, "score") == "b:7"  # back from its checkpoint
    (told,) = warnings_in(logger)
    assert trainer in told and sibling in told
    assert f"[tether] rebuilt instance {trainer!r} with __tether_rebuild__" in logger.lines
    assert f"[tether] rebuilt instance {sibling!r} with __tether_rebuild__" in logger.lines
    assert "rebuilt a from its checkpoint (400)" in logger.lines  # its output, in the step's log


def test_where_one_env_cannot_grow_the_whole_cluster_climbs_and_says_what_went(names, logger, tmp_path):
    require_cgroups()
    # a rung that names an interpreter needs a new machine (daemon): no env can take it alone
    ladder = [SMALL, {**BIG, "python": sys.executable}]
    cluster = steps.bring_up(names("whole"), ladder=ladder, logger=logger)
    trainer = names("trainer")
    steps.deploy(rebuild_code.Checkpointed, trainer, cluster.name, kwargs={"folder": str(tmp_path)})
    plain = names("plain")
    rh.module(memory_code.Model).to(cluster)("p", name=plain).fit(1)  # deployed, not through the steps

    assert oom_then_climb(trainer, "fit", logger, ladder=ladder, mib=400) == 400

    assert cluster.name in [line for line in logger.lines if "goes from" in line][0]
    (told,) = warnings_in(logger)
    assert f"{trainer!r} is made again from its constructor arguments at its next call" in told
    assert f"{plain!r} was not deployed through tether's pipeline steps: gone" in told
    assert rh.cluster(cluster.name).status()["limits"]["memory"] == 1 << 30
    # made again by the step's call, which rebuilt it first with that call
    (context,) = steps.call(trainer, "rebuilds")
    assert context["method"] == "fit" and context["call_kwargs"] == {"mib": 400}
    assert f"instance {trainer!r} was made again on cluster {cluster.name!r}" in " ".join(logger.lines)


def test_a_missing_method_or_the_codes_own_not_found_never_remakes_the_instance(names, tmp_path):
    cluster = steps.bring_up(names("nf"), launcher="local")
    model, fn = names("model"), names("fn")
    steps.deploy(memory_code.Model, model, cluster.name)
    steps.deploy(rebuild_code.raises_not_found, fn, cluster.name)
    steps.call(model, "fit", kwargs={"mib": 1})
    with pytest.raises(rh.NotFoundError, match="has no attribute 'fitt'"):
        steps.call(model, "fitt", kwargs={"mib": 1})
    assert steps.call(model, "score") == "m:1"  # the same instance: not made again
    marker = tmp_path / "runs"
    with pytest.raises(rh.NotFoundError, match="the user's own lookup failed"):
        steps.call(fn, args=[str(marker)])
    assert marker.read_text() == "ran\n"  # raised by the code: never sent twice


def test_a_call_asks_the_daemon_nothing_before_it(names, monkeypatch):
    cluster = steps.bring_up(names("lean"), launcher="local")
    model = names("model")
    steps.deploy(memory_code.Model, model, cluster.name)
    asked = []
    real = rh.Cluster._info

    def counting(self, key):
        asked.append(key)
        return real(self, key)

    monkeypatch.setattr(rh.Cluster, "_info", counting)
    for _ in range(3):
        steps.call(model, "fit", kwargs={"mib": 1})
    assert asked == []  # one request per call: no GET /_tether/objects/{name} first
    cluster.teardown()  # ...and when the cluster lost it, it is made again from its record
    assert steps.call(model, "fit", kwargs={"mib": 2}) == 2
    assert asked == [model]
    assert Service.load(model).cluster == cluster.name
