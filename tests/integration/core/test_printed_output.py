"""What a call prints reaches its caller whole, in order, and promptly.

The worker coalesces a call's writes (``worker/call_context.py``): these check what that must not
change. Stdout and stderr keep their interleaving, all of it arrives before the result (or the
next generator item), and a line printed before a long wait arrives while the call still runs.
"""

from __future__ import annotations

import contextlib
import io
import threading
import uuid

import flow_code as fc
import pytest

import tether as rh


class _Recorder:
    """The caller's stdout and stderr, recorded as one sequence of (stream, text)."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []
        self.changed = threading.Condition()

    def stream(self, name: str) -> io.TextIOBase:
        recorder = self

        class Stream(io.TextIOBase):
            def write(self, text: str) -> int:
                with recorder.changed:
                    recorder.parts.append((name, text))
                    recorder.changed.notify_all()
                return len(text)

        return Stream()

    @contextlib.contextmanager
    def recording(self):
        with contextlib.redirect_stdout(self.stream("out")), contextlib.redirect_stderr(self.stream("err")):
            yield self

    def lines(self) -> list[tuple[str, str]]:
        """Whole lines per stream, in the order their last piece came."""
        got, partial = [], {"out": "", "err": ""}
        for name, text in self.parts:
            text = partial[name] + text
            *done, partial[name] = text.split("\n")
            got += [(name, line) for line in done]
        return got


def deploy(cluster, fn):
    return rh.function(fn).to(cluster, name=f"{fn.__name__}-{uuid.uuid4().hex[:6]}")


@pytest.fixture(autouse=True)
def _plain_lines(monkeypatch):
    monkeypatch.setenv("TETHER_LOG_PREFIX", "0")  # lines as printed


def test_stdout_and_stderr_keep_their_order_and_come_before_the_result(session_cluster):
    interleaved, n = deploy(session_cluster, fc.interleaved), 2_000
    recorder = _Recorder()
    with recorder.recording():
        assert interleaved(n) == n  # the result: every line came before it
    expected = [line for i in range(n) for line in (("out", f"out {i}"), ("err", f"err {i}"))]
    assert recorder.lines() == expected


def test_a_generator_items_lines_come_before_the_item(session_cluster):
    printed_items = deploy(session_cluster, fc.printed_items)
    recorder = _Recorder()
    with recorder.recording():
        for i in printed_items(50):
            assert recorder.lines()[-1] == ("out", f"before {i}")


@pytest.mark.parametrize("fn", [fc.print_then_wait, fc.aprint_then_wait], ids=["sync", "async"])
def test_a_line_printed_before_a_long_wait_arrives_while_the_call_runs(session_cluster, tmp_path, fn):
    waiter, marker = deploy(session_cluster, fn), tmp_path / "go"
    recorder, result = _Recorder(), {}
    with recorder.recording():
        call = threading.Thread(target=lambda: result.update(value=waiter(str(marker), run_async=False)))
        call.start()
        try:
            with recorder.changed:
                arrived = recorder.changed.wait_for(lambda: ("out", "waiting for the caller") in recorder.lines(),
                                                    timeout=30)
        finally:
            marker.touch()  # the call ends either way
            call.join()
    assert arrived, f"the line did not arrive while the call waited: {recorder.parts!r}"
    assert result["value"] == "released"


def test_a_line_printed_by_a_forked_child_reaches_the_caller(session_cluster):
    from_a_child = deploy(session_cluster, fc.from_a_child)
    recorder = _Recorder()
    with recorder.recording():
        assert from_a_child() == 0
    assert ("out", "from the child") in recorder.lines()


def test_a_line_printed_just_before_os_exit_reaches_the_caller(session_cluster):
    env = rh.env(name=f"exiting-{uuid.uuid4().hex[:6]}")  # its own worker: the others' live on
    last_words = rh.function(fc.last_words).to(session_cluster, env=env, name=f"last-words-{uuid.uuid4().hex[:6]}")
    recorder = _Recorder()
    try:
        with recorder.recording(), pytest.raises(rh.WorkerDiedError):
            last_words(3)
    finally:
        session_cluster.delete(env.env_name)
    assert ("out", "last words") in recorder.lines()
