"""Failure classification: what counts as out-of-memory, and how it becomes tether.OutOfMemoryError."""

from __future__ import annotations

import pickle

import pytest

import tether as rh
from tether import plugins
from tether.steps import upscale


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError: the classifier goes by the type's name."""


def _raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


@pytest.mark.parametrize("error", [
    MemoryError(),
    rh.OutOfMemoryError("killed", limit=1, peak=2),
    OutOfMemoryError("CUDA: tried to allocate 20.00 GiB"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity)"),
    RuntimeError("CUDA error: out of memory"),
    rh.RemoteError("Tried to allocate 2.00 GiB", remote_type="torch.cuda.OutOfMemoryError"),
    rh.RemoteError("boom", remote_type="torch.OutOfMemoryError"),
    _raised_from(ValueError("the batch failed"), MemoryError()),
], ids=["MemoryError", "tether", "type-name", "cuda-message", "cuda-error", "remote-type",
        "remote-type-new-torch", "raised-from-MemoryError"])
def test_out_of_memory_is_recognised(error):
    assert upscale.classify(error, {}) == "oom"


@pytest.mark.parametrize("error", [ValueError("bad input"), rh.WorkerDiedError("segfault", signal="SIGSEGV"),
                                   rh.RemoteError("no", remote_type="mylib.Error"), KeyError("memory")],
                         ids=["ValueError", "WorkerDied", "RemoteError", "KeyError"])
def test_other_failures_are_the_users(error):
    assert upscale.classify(error, {}) == "user"


@pytest.mark.parametrize("error", [rh.ConnectionError("down"), rh.LaunchError("no daemon"),
                                   rh.CallCancelledError("cancelled"), rh.CallTimeoutError("too slow", timeout=5),
                                   _raised_from(rh.CallTimeoutError("too slow"), TimeoutError("timed out"))],
                         ids=["connection", "launch", "cancelled", "call-timeout", "call-timeout-from-socket"])
def test_tethers_own_trouble_has_no_classification(error):
    assert upscale.classify(error, {}) is None


def test_a_plugin_classifier_answers_before_the_built_in_one():
    class Preemption:
        @plugins.hookimpl
        def tether_classify_failure(self, error, context):
            return "preempted" if isinstance(error, rh.ConnectionError) else None

    pm = plugins.get_plugin_manager()
    plugin = Preemption()
    pm.register(plugin, name="preemption-test")
    try:
        assert upscale.classify(rh.ConnectionError("node gone"), {}) == "preempted"
        assert upscale.classify(MemoryError(), {}) == "oom"  # no opinion: the built-in answers
    finally:
        pm.unregister(plugin)


def test_an_oom_kill_keeps_its_limit_peak_and_traceback():
    killed = rh.OutOfMemoryError("the worker ran out of memory", remote_type="OOMKilled",
                                 remote_traceback="", limit=256 << 20, peak=255 << 20, cluster="small")
    oom = upscale.out_of_memory(killed, service="trainer")
    assert (oom.limit, oom.peak, oom.cluster, oom.service) == (256 << 20, 255 << 20, "small", "trainer")
    assert upscale.describe_oom(oom) == "limit 256 MiB, peak 255 MiB"
    again = pickle.loads(pickle.dumps(oom))  # errors travel between processes
    assert (type(again), again.limit, again.service) == (rh.OutOfMemoryError, 256 << 20, "trainer")


def test_a_cuda_error_becomes_a_tether_oom_without_limits():
    error = rh.RemoteError("Tried to allocate 2.00 GiB", remote_type="torch.cuda.OutOfMemoryError",
                           remote_traceback="Traceback ...")
    oom = upscale.out_of_memory(error)
    assert isinstance(oom, rh.OutOfMemoryError) and isinstance(oom, rh.RemoteError)
    assert isinstance(oom, MemoryError)
    assert (oom.limit, oom.peak, oom.remote_traceback) == (None, None, "Traceback ...")
    assert "torch.cuda.OutOfMemoryError" in str(oom)
    assert upscale.describe_oom(oom) == "limit and peak unknown"
