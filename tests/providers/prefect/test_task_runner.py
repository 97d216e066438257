"""``TetherTaskRunner`` in real flow runs (``prefect_test_harness``, real local clusters, real cgroup
OOM kills): submitted tasks run at once in the cluster's workers, futures pass as arguments,
``.map``, a failing task, the OOM ladder per task run, remote output in each task run's logs,
teardown policies, and what bad input says."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import runner_code
from prefect import flow, task
from prefect.futures import wait
from prefect.utilities.annotations import unmapped

import tether as rh
from tether.providers.prefect import (
    PrefectTetherFuture,
    TetherCluster,
    TetherService,
    TetherTaskRunner,
    bring_up_cluster,
    call_service,
    deploy_service,
)

pytestmark = pytest.mark.timeout(300)
LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}]


def test_submitted_tasks_run_at_once_each_in_a_worker_of_the_cluster(
        prefect_harness, tag, tmp_path, task_runs, task_run_logs):
    meet = str(tmp_path)

    @flow(task_runner=TetherTaskRunner(cluster=f"pf-{tag}", launcher="local", max_workers=3))
    def spans():
        futures = [runner_code.span.submit(label, meet, 3) for label in ("a", "b", "c")]
        assert all(isinstance(f, PrefectTetherFuture) for f in futures)
        return [f.result() for f in futures], [f.cluster for f in futures]

    state = spans(return_state=True)
    results, clusters = state.result()
    assert all(r["met"] for r in results)  # each waited until the three had started
    assert max(r["start"] for r in results) < min(r["end"] for r in results)  # by their own clocks
    assert len({r["pid"] for r in results}) == 3 and os.getpid() not in {r["pid"] for r in results}
    assert all(r["imported_by_path"] for r in results)  # the worker imported runner_code
    assert clusters == [f"pf-{tag}"] * 3
    # each task run's remote output is in its own logs
    logs = task_run_logs(state)
    starts = [[m for m in logs.get(run.id, []) if m.startswith("span ")] for run in task_runs(state)]
    assert sorted(m[0].split()[1] for m in starts) == ["a", "b", "c"] and all(len(m) == 1 for m in starts)
    assert not rh.cluster(f"pf-{tag}").is_up()  # the runner brought it up, so it tore it down


def test_futures_as_arguments_map_wait_and_async_tasks(prefect_harness, tag, task_runs, task_run_logs):
    @flow(task_runner=TetherTaskRunner(cluster=f"pf-{tag}", launcher="local"))
    def fan_in():
        parts = runner_code.span.map(["a", "bb", "ccc"], unmapped(None))
        done, not_done = wait(parts)  # Prefect's own wait on the runner's futures
        assert len(done) == 3 and not not_done and all(f.state.is_completed() for f in done)
        offset = runner_code.double.submit(5)
        return runner_code.total.submit(parts, offset=offset).result()

    state = fan_in(return_state=True)
    assert state.result() == 16, state
    runs = task_runs(state)
    spans = {r.id for r in runs if r.name.startswith("span")}
    summed = next(r for r in runs if r.name.startswith("total"))
    assert len(spans) == 3
    # Prefect tracked the futures passed as arguments as the task run's inputs
    assert {i.id for i in summed.task_inputs["parts"]} == spans
    assert len(summed.task_inputs["offset"]) == 1
    assert task_run_logs(state)[summed.id][0] == "adding up 3 parts"


def test_tethers_own_tasks_submitted_to_the_runner_run_here(prefect_harness, tag):
    block = TetherCluster(cluster_name=f"pf-{tag}", launcher="local")
    service = TetherService(service_name=f"scale-{tag}", cluster_name=f"pf-{tag}", target="runner_code:scale")

    @flow(task_runner=TetherTaskRunner(cluster=block))
    def mixed():
        up = bring_up_cluster.submit(block)
        deployed = deploy_service.submit(service, wait_for=[up])
        called = call_service.submit(service.service_name, None, [2], wait_for=[deployed])
        doubled = runner_code.double.submit(called)
        return called.result(), doubled.result(), called.cluster, doubled.cluster

    assert mixed() == (6, 12, None, f"pf-{tag}")


def test_an_async_flow_and_a_subflow_share_the_cluster_brought_up_and_torn_down_once(
        prefect_harness, tag, run_logs):
    runner = TetherTaskRunner(cluster=f"pf-{tag}", launcher="local")

    @flow(task_runner=runner)
    def child() -> int:
        return runner_code.double.submit(4).result()

    @flow(task_runner=runner)
    async def parent() -> tuple:
        doubled = [f.result() for f in runner_code.double.map([1, 2])]
        return doubled, child(), rh.cluster(f"pf-{tag}").is_up()

    import asyncio

    state = asyncio.run(parent(return_state=True))
    assert state.result() == ([2, 4], 8, True)  # the subflow found the cluster up, and left it up
    logged = run_logs(state)
    assert sum(f"bringing up cluster 'pf-{tag}'" in m for m in logged) == 1
    assert sum(f"tearing down cluster 'pf-{tag}'" in m for m in logged) == 1
    assert not rh.cluster(f"pf-{tag}").is_up()


def test_a_failing_task_fails_with_the_remote_error_after_its_own_retries_only(
        prefect_harness, tag, task_runs):
    @flow(task_runner=TetherTaskRunner(cluster=f"pf-{tag}", ladder=LADDER))
    def failing():
        return runner_code.fail.submit("bad batch").result()  # retries=1: its own

    state = failing(return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="bad batch"):
        state.result()
    assert [r.run_count for r in task_runs(state)] == [2]  # the task's one retry, no more
    assert rh.cluster(f"pf-{tag}").spec == LADDER[0]  # no climb for a ValueError
    with pytest.raises(rh.NotFoundError):
        rh.cluster(f"pf-{tag}-rung2")


@pytest.fixture
def cgroup_limits(monkeypatch):
    from limits_support import require_cgroups

    require_cgroups()
    monkeypatch.setenv("TETHER_LIMITS", "cgroup")


def hold_task():
    """A task defined in a function: it has no import path, so it travels by value and the worker
    imports neither this module nor Prefect."""

    @task
    def hold(mib: int) -> int:
        import sys

        assert "test_task_runner" not in sys.modules and "prefect" not in sys.modules
        print(f"holding {mib} MiB", flush=True)
        chunks = [bytearray(b"\x01" * (1 << 20)) for _ in range(mib)]
        return len(chunks)

    return hold


def test_a_task_run_that_runs_out_of_memory_climbs_alone(
        prefect_harness, tag, cgroup_limits, task_runs, task_run_logs):
    @flow(task_runner=TetherTaskRunner(cluster=f"pf-{tag}", ladder=LADDER, max_workers=2))
    def shards():
        futures = hold_task().map([20, 400])
        return [(f.result(), f.cluster) for f in futures]

    state = shards(return_state=True)
    assert state.result() == [(20, f"pf-{tag}"), (400, f"pf-{tag}-rung2")]
    runs = {r.run_count: r for r in task_runs(state)}
    assert sorted(runs) == [1, 2]  # the small shard ran once, on 256 MiB; the big one climbed
    logs = task_run_logs(state)
    climbed = "\n".join(logs[runs[2].id])
    assert f"ran out of memory on cluster 'pf-{tag}'" in climbed
    assert "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in climbed
    assert f"on cluster 'pf-{tag}-rung2', after running out of memory" in climbed
    assert climbed.count("holding 400 MiB") == 2
    assert any(f"bringing up cluster 'pf-{tag}-rung2' (rung 2 of 2, memory=1Gi cpus=1)" in m
               for m in logs[None])
    # nothing was resized: each rung is its own cluster, and both are down after the flow run
    assert rh.cluster(f"pf-{tag}").spec == LADDER[0]
    assert rh.cluster(f"pf-{tag}-rung2").spec == LADDER[1]
    assert not rh.cluster(f"pf-{tag}").is_up() and not rh.cluster(f"pf-{tag}-rung2").is_up()


def test_past_the_last_rung_the_task_run_fails_with_every_rung_tried(prefect_harness, tag, cgroup_limits):
    @flow(task_runner=TetherTaskRunner(cluster=f"pf-{tag}", ladder=LADDER))
    def too_big():
        return hold_task().submit(2048).result()

    state = too_big(return_state=True)
    with pytest.raises(rh.OutOfMemoryError, match=r"every rung of the ladder: tried memory=256Mi cpus=1 "
                                                  r"\(attempt 1\), memory=1Gi cpus=1 \(attempt 2\)"):
        state.result()


def test_without_a_ladder_an_oom_is_not_retried_by_the_tasks_own_retries(
        prefect_harness, tag, cgroup_limits, task_runs):
    @flow(task_runner=TetherTaskRunner(cluster=f"pf-{tag}", launcher="local", spec={"memory": "256Mi"}))
    def no_ladder():
        return hold_task().with_options(retries=2).submit(400).result()

    state = no_ladder(return_state=True)
    with pytest.raises(rh.OutOfMemoryError, match="No ladder says what to try next"):
        state.result()
    assert [r.run_count for r in task_runs(state)] == [1]  # the same size would run out again


@pytest.mark.parametrize(("policy", "up_before", "up_after"), [
    ("started", False, False), ("started", True, True), ("always", True, False), ("never", False, True),
], ids=["started-brought-up", "started-was-up", "always", "never"])
def test_teardown_policies(prefect_harness, tag, policy, up_before, up_after):
    block = TetherCluster(cluster_name=f"pf-{tag}", launcher="local", spec={"memory": "512Mi"})
    if up_before:
        block.up()

    @flow(task_runner=TetherTaskRunner(cluster=block, teardown=policy))
    def one():
        return runner_code.double.submit(2).result()

    assert one() == 4
    assert rh.cluster(f"pf-{tag}").is_up() is up_after
    assert rh.cluster(f"pf-{tag}").spec == {"memory": "512Mi"}  # the block's


def test_bad_input_fails_natively_saying_what_to_do(prefect_harness, tag):
    with pytest.raises(rh.ConfigError, match="use one of 'started', 'always', 'never'"):
        TetherTaskRunner(cluster="x", teardown="sometimes")
    with pytest.raises(rh.ConfigError, match="memory='lots' is not a size"):
        TetherTaskRunner(cluster="x", ladder=[{"memory": "lots"}])
    with pytest.raises(rh.ConfigError, match="max_workers=0"):
        TetherTaskRunner(cluster="x", max_workers=0)

    @flow(task_runner=TetherTaskRunner(cluster=f"no-such-cluster-{tag}"))
    def nowhere():
        return runner_code.double.submit(1).result()

    with pytest.raises(rh.NotFoundError, match=f"no cluster named 'no-such-cluster-{tag}'"):
        nowhere()

    @task
    def numbers():
        yield 1

    @flow(task_runner=TetherTaskRunner(cluster=f"pf-{tag}", launcher="local"))
    def generator():
        return numbers.submit().result()

    with pytest.raises(rh.ConfigError, match="task 'numbers' is a generator"):
        generator()


FLOW_FILE = '''
import os
import sys

from prefect import flow, task

from tether.providers.prefect import TetherTaskRunner


@task
def square(x: int) -> int:
    print(f"squaring {x}; prefect imported here: {'prefect' in sys.modules}", flush=True)
    return x * x


@flow(task_runner=TetherTaskRunner(cluster=os.environ["CLUSTER"], launcher="local"))
def squares() -> list:
    return [f.result() for f in square.map([1, 2, 3])]


if __name__ == "__main__":
    print("squares:", squares())
'''


def test_a_flow_file_run_as_a_script_sends_its_tasks_by_value(prefect_api, tag, tmp_path, run_logs):
    (tmp_path / "squares.py").write_text(FLOW_FILE)
    done, [run] = prefect_api.run(tmp_path / "squares.py", flow="squares", CLUSTER=f"pf-{tag}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "squares: [1, 4, 9]" in done.stdout
    assert run.state.is_completed()
    logged = run_logs(run.state, expect=[f"squaring {x}" for x in (1, 2, 3)])
    # the function came pickled from __main__: the worker never imported Prefect
    assert sorted(m for m in logged if m.startswith("squaring")) == [
        f"squaring {x}; prefect imported here: False" for x in (1, 2, 3)]
    assert not rh.cluster(f"pf-{tag}").is_up()


def test_a_function_the_cluster_lost_is_deployed_again(prefect_harness, tag):
    @flow(task_runner=TetherTaskRunner(cluster=f"pf-{tag}", launcher="local", max_workers=1))
    def twice():
        first = runner_code.double.submit(1).result()
        cluster = rh.cluster(f"pf-{tag}")
        [deployed] = [k for k in cluster.keys() if k.startswith("prefect-double-")]
        cluster.delete(deployed)  # as a daemon restarted empty would have it
        return first, runner_code.double.submit(2).result()

    assert twice() == (2, 4)


CANCELLED_FLOW = '''
import os
import time
from pathlib import Path

from prefect import flow, task

from tether.providers.prefect import TetherTaskRunner


@task
def beat(path: str) -> None:
    for i in range(3000):
        Path(path).write_text(f"{os.getpid()} {i}")
        time.sleep(0.05)


@flow(task_runner=TetherTaskRunner(cluster=os.environ["CLUSTER"], launcher="local", teardown="never"))
def beating() -> None:
    beat.submit(os.environ["BEAT"]).result()


if __name__ == "__main__":
    beating()
'''


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_a_flow_run_stopped_by_a_signal_cancels_its_remote_calls(prefect_api, tag, tmp_path, stop):
    """SIGTERM (what a Prefect worker sends to cancel a flow run) or Ctrl-C: the task run's remote
    call stops, though the cluster stays up (``teardown="never"``)."""
    import signal
    import time

    (tmp_path / "beating.py").write_text(CANCELLED_FLOW)
    beat = tmp_path / "beat"
    proc = subprocess.Popen([sys.executable, "beating.py"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=prefect_api.env(CLUSTER=f"pf-{tag}", BEAT=str(beat)))
    try:
        deadline = time.monotonic() + 120
        while not beat.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert beat.exists(), proc.communicate(timeout=60)[0] if proc.poll() is not None else "no beat"
        proc.send_signal(getattr(signal, stop))
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rh.cluster(f"pf-{tag}").is_up()  # teardown="never": only the call stopped
    assert "CallCancelledError: the call to prefect-beat-" in output  # the task run's failure
    last = beat.read_text()
    time.sleep(1)  # twenty beats' worth: a call still running would have written again
    assert beat.read_text() == last, output[-3000:]
