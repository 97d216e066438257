"""WARN messages in the caller's one message loop (``Reply.take``): a warning through
``warnings.warn``, pointed at the caller's own line, never taken for the call's result."""

from __future__ import annotations

import warnings

import pytest

import tether as rh
from tether.client.replies import Reply
from tether.protocol import wire


def warn(meta: dict) -> wire.Message:
    return wire.Message(wire.WARN, 0, [memoryview(wire.json_frame(meta))])


def test_a_state_reset_is_a_state_reset_warning_with_its_fields():
    reply = Reply("c", "http://x", {"service": "tally"})
    with pytest.warns(rh.StateResetWarning, match="instance 'tally' was made again") as seen:
        assert reply.take(warn({"category": "state_reset", "message": "instance 'tally' was made again",
                                "service": "tally", "reason": "the daemon restarted", "at": 1.0})) is None
    (told,) = seen
    assert told.message.service == "tally" and told.message.reason == "the daemon restarted"
    assert told.filename == __file__


def test_a_warning_of_a_kind_this_client_does_not_know_is_a_tether_warning():
    reply = Reply("c", "http://x", {})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert reply.take(warn({"category": "from-the-future", "message": "hello"})) is None
    assert [(w.category, str(w.message)) for w in seen] == [(rh.TetherWarning, "hello")]


def test_the_result_after_a_warning_is_the_result():
    reply = Reply("c", "http://x", {})
    result = wire.Message(wire.RESULT, 0, [memoryview(b"x")])
    with pytest.warns(rh.TetherWarning):
        reply.take(warn({"message": "m"}))
    assert reply.take(result) is result
