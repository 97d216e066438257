"""``examples/dags/prefect_pipeline.py``, run as it is under the Prefect test harness on a real local
cluster: the train task is OOM-killed at the 256 MiB cgroup limit and retried on 2 GiB, the same live
instance evaluates, and the cluster is down at the end; and run as a user runs it,
``python prefect_pipeline.py``, against a Prefect server (the harness's)."""

from __future__ import annotations

import re

import pytest

import tether as rh

pytestmark = pytest.mark.timeout(300)  # a script run starts Prefect and a cluster of its own

def test_the_example_flow_trains_on_the_next_rung_after_an_oom_and_tears_down(
        prefect_harness, examples, task_runs, run_logs):
    state = examples.load("prefect_pipeline").train_and_evaluate(return_state=True)
    assert state.is_completed()
    # evaluate() of the instance that trained: found by name after the climb
    assert state.result() == {"score": 1.0, "weight": 1.0, "data_mib": 512.0}
    calls = sorted(r.run_count for r in task_runs(state) if r.name.startswith("tether-call"))
    assert calls == [1, 2]  # evaluate ran once; train twice: 256 MiB, then 2 GiB
    assert rh.cluster("train").spec == {"memory": "256Mi", "cpus": 1}  # a local climb grows the env, not the cluster
    assert not rh.cluster("train").is_up()
    logged = "\n".join(run_logs(state))
    assert "the kernel OOM killer killed it at the cluster's memory limit of 256 MiB" in logged
    assert re.search(r"env 'default' of cluster 'train' goes from (memory=256Mi cpus=1|cpus=1 memory=256Mi) "
                     r"to memory=2Gi cpus=2", logged)  # the saved cluster's spec may list cpus first
    assert "tearing down cluster 'train'" in logged


def test_the_example_flow_tears_down_when_even_the_last_rung_is_too_small(prefect_harness, examples):
    state = examples.load("prefect_pipeline").train_and_evaluate(data_mib=4096, return_state=True)
    assert state.is_failed()
    with pytest.raises(rh.OutOfMemoryError, match=r"every rung of the ladder: tried memory=256Mi cpus=1 "
                                                  r"\(attempt 1\), memory=2Gi cpus=2 \(attempt 2\)"):
        state.result()
    assert not rh.cluster("train").is_up()  # the flow's `finally` ran


def test_the_example_runs_as_a_script_against_a_prefect_server(examples, prefect_api, task_runs, run_logs):
    done, [run] = prefect_api.run(examples.folder / "prefect_pipeline.py", flow="train-and-evaluate")
    assert done.returncode == 0, done.stdout + done.stderr
    # evaluate() of the instance that trained, found by its name after the climb
    assert done.stdout.rstrip().endswith("{'score': 1.0, 'weight': 1.0, 'data_mib': 512.0}")
    assert run.state.is_completed()
    calls = sorted(r.run_count for r in task_runs(run.state) if r.name.startswith("tether-call"))
    assert calls == [1, 2]  # train ran twice (256 MiB, then 2 GiB), evaluate once
    oom, climb, reset = ("the kernel OOM killer killed it at the cluster's memory limit of 256 MiB",
                         "env 'default' of cluster 'train' goes from ",
                         "the climb reset the state of instance 'trainer'")
    logged = run_logs(run.state, expect=(oom, climb, reset, "tearing down cluster 'train'"))  # the UI's
    assert any(oom in m for m in logged)
    # (the saved cluster's spec may list cpus first: the same rung)
    assert any(re.search(climb + r"(memory=256Mi cpus=1|cpus=1 memory=256Mi) to memory=2Gi cpus=2", m)
               for m in logged), [m for m in logged if "[tether]" in m]
    assert any(reset in m for m in logged)  # said, not silent
    assert "score 1.00 for a model trained on 512 MiB" in logged  # the remote print, in the run's logs
    assert sum("bringing up cluster 'train'" in m for m in logged) == 1
    assert sum("tearing down cluster 'train'" in m for m in logged) == 1  # once, at the end
    assert not rh.cluster("train").is_up()


def test_the_example_as_a_script_with_more_data_than_the_last_rung_fails_the_task(
        examples, prefect_api, task_runs):
    done, [run] = prefect_api.run(examples.folder / "prefect_pipeline.py", "--data-mib", "4096",
                                  flow="train-and-evaluate")
    assert done.returncode != 0
    assert "trainer.train ran out of memory on every rung of the ladder" in done.stderr
    assert "Add a bigger rung to the ladder" in done.stderr  # what to do
    assert run.state.is_failed()
    calls = [(r.state.type.value, r.run_count) for r in task_runs(run.state) if r.name.startswith("tether-call")]
    assert calls == [("FAILED", 2)]  # train, on both rungs; evaluate never ran
    assert not rh.cluster("train").is_up()  # the flow's `finally` tore it down


def test_the_example_as_a_script_with_a_bad_data_size_fails_the_task_without_a_retry(
        examples, prefect_api, task_runs):
    done, [run] = prefect_api.run(examples.folder / "prefect_pipeline.py", "--data-mib", "0",
                                  flow="train-and-evaluate")
    assert done.returncode != 0
    assert "ValueError: data_mib must be a whole number of MiB, at least 1 (got 0): pass e.g. data_mib=512" \
        in done.stderr
    assert run.state.is_failed()
    calls = [(r.state.type.value, r.run_count) for r in task_runs(run.state) if r.name.startswith("tether-call")]
    assert calls == [("FAILED", 1)]  # not an out-of-memory error: no retry, no climb
    assert not rh.cluster("train").is_up()
