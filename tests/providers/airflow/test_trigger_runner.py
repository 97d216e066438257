"""``TetherCallTrigger`` under Airflow's own trigger runner (``TriggerRunner.run_trigger`` and
``cancel_triggers``: the code the triggerer runs each trigger with), on a real local cluster.

A user's action on the deferred task (clear, mark failed or succeeded) reaches the trigger as
Airflow's user-action cancel, and the remote call is cancelled (``on_kill``). A triggerer that
stops (a restart, a hand-over to another triggerer) cancels the trigger without it: the remote
call runs on, and the trigger that takes over finds it by id and waits for its end."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import tether as rh

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def spin_service(airflow_home):
    """A local cluster with ``timeout_code:spin`` deployed on it; torn down after."""
    from tether.steps import actions

    tag = uuid.uuid4().hex[:6]
    cluster = actions.bring_up(f"aftr-{tag}", launcher="local")
    actions.deploy("timeout_code:spin", f"spin-{tag}", cluster.name)
    yield f"spin-{tag}", cluster
    cluster.teardown()


def _deferred(service: str, seconds: float, marker):
    from tether.providers.airflow.triggers.tether import TetherCallTrigger
    from tether.steps import deferred

    call = deferred.prepare_call(service)
    return call, TetherCallTrigger(call=call, arguments=deferred.encode_arguments([seconds, str(marker)]))


async def _started(task: asyncio.Task, marker) -> None:
    """Until the remote function has written its marker (the call runs)."""
    end = time.monotonic() + 60
    while not marker.exists():
        assert not task.done(), task
        assert time.monotonic() < end, "the call did not start"
        await asyncio.sleep(0.05)


def _runner():
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    return TriggerRunner()


def _run(runner, trigger_id: int, trigger) -> asyncio.Task:
    task = asyncio.ensure_future(runner.run_trigger(trigger_id, trigger))
    runner.triggers[trigger_id] = {"task": task, "name": f"tether-{trigger_id}", "events": 0}
    return task


def test_a_users_action_on_the_deferred_task_cancels_the_remote_call(spin_service, tmp_path):
    service, cluster = spin_service
    marker = tmp_path / "spin"
    call, trigger = _deferred(service, 60, marker)

    async def scenario() -> None:
        runner = _runner()
        task = _run(runner, 1, trigger)
        await _started(task, marker)
        runner.to_cancel.append(1)  # what the triggerer does when the task is cleared or marked
        await runner.cancel_triggers()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not runner.events

    asyncio.run(scenario())
    with pytest.raises(rh.CallCancelledError):  # the daemon's record of the call: cancelled
        cluster.result(call["call_id"], timeout=30)
    assert not (tmp_path / "spin.done").exists()


def test_a_triggerer_that_stops_leaves_the_call_running_and_the_next_trigger_waits_for_it(
        spin_service, tmp_path, capfd):
    from tether.providers.airflow.triggers.tether import TetherCallTrigger
    from tether.steps import deferred

    service, cluster = spin_service
    marker = tmp_path / "spin"
    call, trigger = _deferred(service, 3, marker)

    async def scenario() -> dict:
        runner = _runner()
        first = _run(runner, 1, trigger)
        await _started(first, marker)
        first.cancel()  # the triggerer shutting down: no user action, no on_kill
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(rh.CallTimeoutError):  # still running on the cluster
            await asyncio.to_thread(cluster.result, call["call_id"], 0)
        _, kwargs = trigger.serialize()
        second = _run(runner, 2, TetherCallTrigger(**kwargs))  # another triggerer takes over
        await asyncio.wait_for(second, 60)
        (entry,) = runner.events
        return entry.event.payload

    event = asyncio.run(scenario())
    assert event["status"] == "done" and event["call"] == call
    assert deferred.finish(event["call"], event) == "spun"  # what the resumed task gets
    assert (tmp_path / "spin.done").exists()
    out = capfd.readouterr()
    assert f"call {call['call_id']} of {service} was started earlier" in out.out + out.err
