"""What a step says and does when something is missing or down (issue 11, "smaller"): a missing
service's hint (neutral, or the provider's own) and which services are on clusters that are up;
``cluster.status()`` of a cluster that is down; a function step on a cluster no step brought up;
a bring-up that finds the cluster up on a higher rung."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import memory_code
import pytest

import tether as rh
from tether.core.registry import local
from tether.steps import actions as steps

SMALL, BIG = {"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}
TETHER = str(Path(sys.executable).with_name("tether"))


def test_a_missing_service_names_no_orchestrator_unless_the_provider_gives_its_hint(names):
    up, down, gone = (steps.bring_up(names(p), launcher="local") for p in ("up", "down", "gone"))
    s_up, s_down, s_gone = names("s-up"), names("s-down"), names("s-gone")
    for service, cluster in ((s_up, up), (s_down, down), (s_gone, gone)):
        steps.deploy(memory_code.hog, service, cluster.name)
    down.teardown()  # saved, not running
    gone.teardown()
    local.delete(gone.name)  # not saved any more

    with pytest.raises(rh.NotFoundError) as info:
        steps.call(names("ghost"), "fit")
    text = str(info.value)
    assert "Operator" not in text and "tether.steps.actions.deploy(target, name, cluster)" in text
    assert f"{s_up} (cluster {up.name!r})" in text.split("; on clusters that are down")[0]
    assert "on clusters that are down (a call brings the cluster up and makes the service again)" in text
    assert f"{s_down} (cluster {down.name!r})" in text.split("on clusters that are down")[1]
    assert f"{s_gone} (cluster {gone.name!r})" in text.split("not saved any more")[1]

    hint = "Add a deploy_service task before this one."
    with pytest.raises(rh.NotFoundError, match="Add a deploy_service task before this one.$"):
        steps.call(names("ghost"), "fit", missing_hint=hint)
    with pytest.raises(rh.NotFoundError, match=hint):
        steps.cancel(names("ghost"), "some-call", missing_hint=hint)


def test_status_of_a_cluster_that_is_down_says_so_and_starts_nothing(names):
    cluster = rh.cluster(name=names("quiet"), launcher="local", memory="256Mi").save()
    status = cluster.status()
    assert (status["up"], status["status"], status["cluster"]) == (False, "down", cluster.name)
    assert not cluster.is_up()
    cli = subprocess.run([TETHER, "daemon", "status", "--cluster", cluster.name], capture_output=True,
                         text=True, timeout=60, env=os.environ)
    assert cli.returncode == 3 and "down" in cli.stdout  # the CLI says the same

    cluster.up_if_not()
    running = cluster.status()
    assert running["up"] and running["status"] == "up" and running["limits"]["memory"] == 256 << 20
    # a handle of another size asks for the status only: the daemon is not restarted at that size
    other = rh.Cluster(cluster.name, "local", memory="512Mi")
    assert other.status()["pid"] == running["pid"]
    assert cluster.status()["limits"]["memory"] == 256 << 20
    cluster.teardown()
    assert cluster.status()["status"] == "down" and not cluster.is_up()


def test_a_function_step_brings_a_saved_cluster_up_and_says_what_to_do_for_an_unknown_one(names, logger):
    cluster = steps.bring_up(names("fn"), launcher="local")
    cluster.teardown()  # saved, down: no cluster-up step ran in this pipeline

    def double(x: int) -> int:  # sent by value, as a function of a DAG file is
        return 2 * x

    assert steps.run_function(double, cluster.name, args=[21], logger=logger) == 42
    assert cluster.is_up()
    assert any(f"cluster {cluster.name!r} is down: bringing it up" in line for line in logger.lines)

    nowhere = names("nowhere")
    with pytest.raises(rh.NotFoundError) as info:
        steps.run_function(double, nowhere, args=[1])
    assert f"function 'double' runs on cluster {nowhere!r}, which no step brought up and which is not saved" \
        in str(info.value)
    assert f"tether.cluster(name={nowhere!r}, launcher='local').save()" in str(info.value)
    with pytest.raises(rh.NotFoundError, match="Add a tether cluster task first.$"):
        steps.run_function(double, nowhere, args=[1], missing_hint="Add a tether cluster task first.")


def test_a_bring_up_with_a_ladder_keeps_a_cluster_that_is_up_on_a_higher_rung(names, logger):
    name = names("kept")
    big = steps.bring_up(name, spec=BIG)
    pid = big.status()["pid"]
    kept = steps.bring_up(name, ladder=[{"memory": "256Mi", "cpus": "1"}, BIG], logger=logger)
    assert kept.status()["pid"] == pid and kept.status()["limits"]["memory"] == 1 << 30
    assert any("is up at memory=1Gi cpus=1: kept as it is" in line for line in logger.lines)
    kept.teardown()
    assert steps.bring_up(name, ladder=[SMALL, BIG]).status()["limits"]["memory"] == 256 << 20  # down: rung 1
