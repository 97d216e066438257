"""The resources under Dagster's default executor, run with the real CLI (``dagster job execute``):
every step, and every retry, sets the resources up in a process of its own, and the CLI sets them up
once more after the run. The cluster is brought up lazily, on first use, and reused on whatever rung
it climbed to; the teardown policy applies once per run, after its last step, never per step."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import tether as rh
from tether import compute
from tether.core.registry import local
from tether.steps.climb import current_spec

pytestmark = pytest.mark.timeout(400)
DEFS = Path(__file__).parent / "cli_defs.py"


def _count(messages: list[str], text: str) -> int:
    return sum(text in m for m in messages)


def test_always_tears_down_once_after_the_last_of_parallel_steps(tag, dagster_cli):
    done = dagster_cli(DEFS, "fit_and_score", env={"DG_TAG": tag, "DG_TEARDOWN": "always"})
    assert done.returncode == 0, done.output[-4000:]
    assert [e.step_key for e in done.of_type("STEP_UP_FOR_RETRY")] == ["fitted"]  # 256Mi, then 1Gi
    assert done.metadata("fitted") == {"fitted": 400}
    # two steps in parallel, each in its own process, on the instance fitted by a third one
    assert done.metadata("score_a") == done.metadata("score_b") == {"score": "d:400"}
    messages = done.messages()
    assert _count(messages, f"bringing up cluster 'dg-{tag}'") == 1
    assert _count(messages, f"tearing down cluster 'dg-{tag}'") == 1
    down = next(e for e in done.events if f"tearing down cluster 'dg-{tag}'" in e.user_message)
    assert down.step_key in ("score_a", "score_b")  # the last step to end, not the first
    assert done.run.tags[f"tether/cluster/dg-{tag}"] == "torn down"
    assert not rh.cluster(f"dg-{tag}").is_up()  # and not brought up again after the run


def test_never_keeps_the_climbed_cluster_and_its_live_instance_for_the_next_run(tag, dagster_cli):
    first = dagster_cli(DEFS, "fit_and_score", env={"DG_TAG": tag, "DG_TEARDOWN": "never"})
    assert first.returncode == 0, first.output[-4000:]
    assert not _count(first.messages(), "tearing down")
    assert _count(first.messages(), f"the run is over: cluster 'dg-{tag}' stays up (teardown='never')") == 1
    assert first.run.tags[f"tether/cluster/dg-{tag}"] == "kept"
    assert rh.cluster(f"dg-{tag}").is_up()
    # the rung it climbed to: a local climb grows the env of the service, the cluster keeps rung 1
    assert local.load(f"dg-{tag}")["spec"] == {"memory": "256Mi", "cpus": 1}
    assert compute.parse_memory(current_spec(f"dg-{tag}", "default")["memory"]) == 1 << 30

    # the next run (on_failure, and nothing fails): the cluster as it is, the same live instance
    second = dagster_cli(DEFS, "rescore", env={"DG_TAG": tag, "DG_TEARDOWN": "on_failure"})
    assert second.returncode == 0, second.output[-4000:]
    assert second.metadata("rescored") == {"score": "d:400"}  # fitted in the first run
    messages = second.messages()
    assert not _count(messages, "bringing up") and not _count(messages, "goes from")  # not shrunk
    assert compute.parse_memory(current_spec(f"dg-{tag}", "default")["memory"]) == 1 << 30
    assert _count(messages, f"reusing cluster 'dg-{tag}'") == 1
    assert not _count(messages, "tearing down")
    assert second.run.tags[f"tether/cluster/dg-{tag}"] == "kept"
    assert rh.cluster(f"dg-{tag}").is_up()


def test_on_failure_tears_a_failed_run_down_once_and_leaves_it_down(tag, dagster_cli):
    done = dagster_cli(DEFS, "fit_then_fail", env={"DG_TAG": tag, "DG_TEARDOWN": "on_failure"})
    assert done.returncode != 0
    assert [e.step_key for e in done.of_type("STEP_FAILURE")] == ["broken"]
    assert "after_broken" not in {e.step_key for e in done.of_type("STEP_START")}
    assert _count(done.messages(), f"tearing down cluster 'dg-{tag}'") == 1
    assert not rh.cluster(f"dg-{tag}").is_up()  # not brought back up after the run


def test_a_last_step_without_the_resource_still_gets_the_teardown_once(tag, dagster_cli):
    done = dagster_cli(DEFS, "fit_and_report", env={"DG_TAG": tag, "DG_TEARDOWN": "always"})
    assert done.returncode == 0, done.output[-4000:]
    assert _count(done.messages(), f"tearing down cluster 'dg-{tag}'") == 1  # after the run
    assert done.run.tags[f"tether/cluster/dg-{tag}"] == "torn down"
    assert not rh.cluster(f"dg-{tag}").is_up()


def test_pipes_runs_on_the_climbed_cluster_in_a_step_process_of_its_own(tag, dagster_cli):
    done = dagster_cli(DEFS, "fit_then_pipe", env={"DG_TAG": tag, "DG_TEARDOWN": "always"})
    assert done.returncode == 0, done.output[-4000:]
    assert done.metadata("piped") == {"rows": 7, "table": "t", "held_mib": 0, "tether cluster": f"dg-{tag}"}
    messages = done.messages()
    assert _count(messages, "building 7 rows for piped") == 1  # pipes.log from the cluster
    reused = [e.user_message for e in done.events if e.step_key == "piped" and "reusing cluster" in e.user_message]
    assert len(reused) == 1 and "memory=1Gi" in reused[0]  # the rung fitted climbed to, not rung 1
    assert _count(messages, f"tearing down cluster 'dg-{tag}'") == 1
    assert not rh.cluster(f"dg-{tag}").is_up()


def test_an_interrupted_run_cancels_the_remote_call_and_gets_its_teardown(tag, dagster_cli, tmp_path):
    marker = tmp_path / "spin-started"
    done = dagster_cli(DEFS, "spin", env={"DG_TAG": tag, "DG_TEARDOWN": "on_failure", "DG_MARKER": str(marker)},
                       interrupt_when=marker)
    assert done.returncode != 0
    assert _count(done.messages(), "the run was interrupted: call ") == 1
    assert any(f"of 'spin-{tag}' cancelled" in m for m in done.messages())
    _wait_past_its_end(marker, 8)  # the call was 8 s long: cancelled, it never reaches its end
    assert marker.exists() and not Path(f"{marker}.done").exists()
    # the run failed (interrupted): on_failure takes the cluster down once, after the run
    assert _count(done.messages(), f"tearing down cluster 'dg-{tag}'") == 1
    assert not rh.cluster(f"dg-{tag}").is_up()


def test_an_interrupted_run_cancels_the_pipes_call(tag, dagster_cli, tmp_path):
    marker = tmp_path / "pipes-started"
    done = dagster_cli(DEFS, "pipe_long", env={"DG_TAG": tag, "DG_TEARDOWN": "never", "DG_MARKER": str(marker)},
                       interrupt_when=marker)
    assert done.returncode != 0
    said = [m for m in done.messages() if "interrupted" in m]
    assert any(m.startswith("[tether] the run was interrupted: call ") and m.endswith("cancelled")
               for m in said), said
    _wait_past_its_end(marker, 8)  # the function was 8 s long: cancelled, it never reaches its end
    assert marker.exists() and not Path(f"{marker}.done").exists()


def test_a_mapped_fan_out_is_torn_down_once_after_its_last_copy(tag, dagster_cli):
    done = dagster_cli(DEFS, "mapped", env={"DG_TAG": tag, "DG_TEARDOWN": "always"})
    assert done.returncode == 0, done.output[-4000:]
    assert any("gathered ['d:1', 'd:1', 'd:1']" in m for m in done.messages())
    assert _count(done.messages(), f"bringing up cluster 'dg-{tag}'") == 1  # no copy tore it down early
    assert _count(done.messages(), f"tearing down cluster 'dg-{tag}'") == 1
    down = next(e for e in done.events if f"tearing down cluster 'dg-{tag}'" in e.user_message)
    assert down.step_key in (None, "gathered")  # after the last step: gathered uses no resource
    assert not rh.cluster(f"dg-{tag}").is_up()


def _wait_past_its_end(marker: Path, seconds: float) -> None:
    """Until 2 s past the end a call of ``seconds`` would have had: it wrote ``marker`` as it
    started (the file's mtime), so there is no need to wait the whole length again from here."""
    time.sleep(max(0.0, marker.stat().st_mtime + seconds + 2 - time.time()))
