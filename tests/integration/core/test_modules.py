"""Classes as live, named, stateful services; remote exceptions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import remote_code

import tether as rh


@pytest.fixture(scope="module")
def RemoteTrainer(session_cluster):
    return rh.module(remote_code.Trainer).to(session_cluster)


@pytest.fixture
def trainer(RemoteTrainer, session_cluster):
    name = f"trainer-{uuid.uuid4().hex[:6]}"
    yield RemoteTrainer("resnet", lr=0.5, name=name)
    session_cluster.delete(name)


def test_named_instance_is_constructed_remotely(RemoteTrainer, session_cluster):
    trainer = RemoteTrainer("bert", name="trainer")
    assert trainer.name == "trainer"
    names = session_cluster.keys()
    assert "trainer" in names
    assert trainer.model == "bert" and trainer.lr == 0.1
    assert trainer.pid() != os.getpid()


def test_constructing_again_under_a_name_replaces_the_instance(RemoteTrainer, session_cluster):
    name = f"replaced-{uuid.uuid4().hex[:6]}"
    first = RemoteTrainer("first", name=name)
    first.train(3)
    second = RemoteTrainer("second", name=name)
    assert (second.model, second.steps) == ("second", 0)
    assert first.model == "second"  # a name is one live object: the old stub sees the new one
    session_cluster.delete(name)


def test_unnamed_instances_get_distinct_names(RemoteTrainer):
    a, b = RemoteTrainer("a"), RemoteTrainer("b")
    assert a.name != b.name
    assert (a.model, b.model) == ("a", "b")


def test_state_persists_between_calls(trainer):
    assert trainer.train() == 1
    assert trainer.train(batches=3) == 4
    assert trainer.steps == 4


def test_properties_are_read_remotely(trainer):
    trainer.train(2)
    assert trainer.summary == "resnet@2"
    assert trainer.history == [0.5, 1.0]


def test_instance_attributes_are_read_remotely(trainer):
    assert (trainer.model, trainer.lr, trainer.steps) == ("resnet", 0.5, 0)


def test_setting_an_attribute_sets_it_remotely(trainer):
    trainer.lr = 2.0
    assert trainer.lr == 2.0
    trainer.train(1)
    assert trainer.history == [2.0]  # the remote method saw the new value
    trainer.new_attribute = {"k": [1]}
    assert trainer.new_attribute == {"k": [1]}


def test_missing_attribute_is_an_attribute_error_naming_what_exists(trainer):
    with pytest.raises(AttributeError, match="no_such_thing") as info:
        trainer.no_such_thing  # noqa: B018
    assert isinstance(info.value, rh.NotFoundError)
    assert "train" in str(info.value) and "summary" in str(info.value)
    # so the attribute protocol works on a stub
    assert getattr(trainer, "no_such_thing", "default") == "default"
    assert not hasattr(trainer, "no_such_thing")
    assert hasattr(trainer, "steps")


def test_user_method_named_save_wins_over_the_stub(session_cluster):
    counter = rh.module(remote_code.Counter).to(session_cluster)(start=3, name="counter-save")
    counter.increment()
    assert counter.save() == "user save at 4"


def test_async_method_returns_an_awaitable(trainer):
    """An ``async def`` method is awaited on the caller's side too (issue 3); run_async=False
    makes it a plain blocking call."""
    trainer.train(3)
    assert asyncio.run(trainer.evaluate(factor=10)) == 30
    assert trainer.evaluate(run_async=False) == 3


def test_method_output_streams_to_the_caller(trainer, capfd):
    capfd.readouterr()
    assert trainer.report() == "resnet@0"
    out, err = capfd.readouterr()
    assert "report: resnet at step 0" in out and "report logged" in err
    assert asyncio.run(trainer.async_report()) == "resnet@0"
    assert "async report: resnet" in capfd.readouterr().out


def test_method_output_silenced_per_call(trainer, capfd):
    capfd.readouterr()
    assert trainer.report(stream_logs=False) == "resnet@0"
    assert asyncio.run(trainer.async_report(stream_logs=False)) == "resnet@0"
    out, err = capfd.readouterr()
    assert "report" not in out and "report logged" not in err


def test_module_to_with_stream_logs_false_silences_its_instances(session_cluster, capfd):
    quiet = rh.module(remote_code.Trainer).to(session_cluster, stream_logs=False)("quiet", name="quiet-trainer")
    capfd.readouterr()
    assert quiet.report() == "quiet@0"
    out, err = capfd.readouterr()
    assert "report" not in out and "report logged" not in err
    assert quiet.report(stream_logs=True) == "quiet@0"
    assert "report: quiet at step 0" in capfd.readouterr().out


def test_async_method_of_counter(session_cluster):
    counter = rh.module(remote_code.Counter).to(session_cluster)(start=9, name="counter-async")
    assert asyncio.run(counter.async_value()) == 9
    assert counter.async_value(run_async=False) == 9


def test_constructor_error_is_raised_and_nothing_is_kept(session_cluster):
    Broken = rh.module(remote_code.Broken).to(session_cluster)
    with pytest.raises(RuntimeError, match="constructor failed"):
        Broken(name="broken-instance")
    names = session_cluster.keys()
    assert "broken-instance" not in names


def test_serialized_class_defined_in_a_test(session_cluster):
    class Local:
        def __init__(self, base):
            self.base = base

        def plus(self, x):
            return self.base + x

    remote = rh.module(Local, serialize=True).to(session_cluster)(100, name="local-by-value")
    assert remote.plus(5) == 105
    assert remote.base == 100


# -- many callers, one object ------------------------------------------------------------------


def test_many_threads_calling_one_object(session_cluster):
    counter = rh.module(remote_code.Counter).to(session_cluster)(name="counter-threads")
    threads, calls = 16, 20

    def work(_):
        return [counter.increment() for _ in range(calls)]

    with ThreadPoolExecutor(threads) as pool:
        results = [v for chunk in pool.map(work, range(threads)) for v in chunk]
    # every increment returned a distinct count: no lost or duplicated update, no mixed-up replies
    assert sorted(results) == list(range(1, threads * calls + 1))
    assert counter.count == threads * calls


def test_each_thread_gets_its_own_result(session_cluster):
    echo = rh.function(remote_code.echo).to(session_cluster, name="echo-threads")

    def work(i):
        return [echo(i, j) == ((i, j), {}) for j in range(20)]

    with ThreadPoolExecutor(16) as pool:
        assert all(all(ok) for ok in pool.map(work, range(16)))


def test_sync_calls_run_concurrently_in_the_worker(session_cluster):
    """8 callers are all inside the method at once: a barrier of 8 parties only opens if so."""
    overlap = rh.module(remote_code.Overlap).to(session_cluster)(name="overlap-barrier")
    parties = 8
    with ThreadPoolExecutor(parties) as pool:
        names = list(pool.map(lambda _: overlap.meet(parties), range(parties)))
    assert len(set(names)) == parties  # eight different worker threads
    assert all(n.startswith("tether-call") for n in names)
    assert overlap.stats()["max_active"] == parties


def test_sleeping_calls_overlap_in_time(session_cluster):
    overlap = rh.module(remote_code.Overlap).to(session_cluster)(name="overlap-sleep")
    with ThreadPoolExecutor(8) as pool:
        spans = list(pool.map(lambda _: overlap.sleep(0.5), range(8)))
    # remote clock: every call started before any call ended, so all eight ran at the same time
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert overlap.max_active == 8


# -- from another process ----------------------------------------------------------------------


def _run_elsewhere(code: str) -> dict:
    """Run ``code`` in a fresh Python process sharing TETHER_HOME; it prints one JSON line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env=os.environ.copy(), check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_get_by_name_from_another_process_shares_the_live_instance(RemoteTrainer, session_cluster):
    name = f"trainer-shared-{uuid.uuid4().hex[:6]}"
    trainer = RemoteTrainer("gpt", name=name)
    trainer.train(2)
    seen = _run_elsewhere(f"""
        import json
        import tether as rh
        trainer = rh.cluster(name={session_cluster.name!r}, launcher="local").get({name!r})
        steps_before = trainer.steps
        steps_after = trainer.train(3)
        print(json.dumps({{"before": steps_before, "after": steps_after, "summary": trainer.summary,
                          "pid": trainer.pid(), "type": type(trainer).__name__}}))
    """)
    assert seen == {"before": 2, "after": 5, "summary": "gpt@5", "pid": trainer.pid(), "type": "RemoteInstance"}
    assert trainer.steps == 5  # the other process changed this same object


def test_get_by_name_in_this_process(RemoteTrainer, session_cluster):
    RemoteTrainer("local-get", name="trainer-get-here").train(1)
    same = session_cluster.get("trainer-get-here")
    assert same.steps == 1
    assert same.train() == 2


# -- remote exceptions --------------------------------------------------------------------------


def test_remote_exception_is_reraised_as_its_own_type(session_cluster):
    fn = rh.function(remote_code.raise_value_error).to(session_cluster)
    with pytest.raises(ValueError, match="bad value 42") as info:
        fn("bad value 42")
    assert type(info.value) is ValueError
    tb = info.value.remote_traceback
    assert "raise_value_error" in tb and "remote_code.py" in tb
    assert 'raise ValueError(msg)' in tb
    assert "runtime.py" not in tb  # the worker's own frames are dropped: the caller sees its code
    assert "Remote traceback" in "".join(getattr(info.value, "__notes__", []))


def test_remote_exception_of_a_method_carries_its_frame(session_cluster):
    counter = rh.module(remote_code.Counter).to(session_cluster)(name="counter-error")
    with pytest.raises(TypeError) as info:
        counter.increment("not a number")
    tb = info.value.remote_traceback
    assert "in increment" in tb and "self.count += by" in tb
    assert "runtime.py" not in tb


def test_exception_type_not_importable_here_is_a_remote_error(session_cluster, tmp_path):
    remote_only = tmp_path / "remote_only_dir"
    remote_only.mkdir()
    module = f"remote_only_{uuid.uuid4().hex[:8]}"
    (remote_only / f"{module}.py").write_text(textwrap.dedent("""
        class RemoteOnlyError(Exception):
            pass

        def fail():
            raise RemoteOnlyError("only the worker knows this type")
    """))
    fn = rh.function(remote_code.raise_from_module).to(session_cluster)
    with pytest.raises(rh.RemoteError) as info:
        fn(str(remote_only), module)
    err = info.value
    assert err.remote_type == f"{module}.RemoteOnlyError"
    assert "only the worker knows this type" in str(err)
    assert "in fail" in err.remote_traceback and f"{module}.py" in err.remote_traceback
    assert module not in sys.modules
