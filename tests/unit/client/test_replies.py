"""The caller's one message loop (``Reply.take``) and its one error boundary (``Reply.transport``),
on messages built with the wire format itself: no daemon needed."""

from __future__ import annotations

import asyncio
import json

import pytest

import tether as rh
from tether.client.logsink import remote_logs_to
from tether.client.replies import Reply, http_error
from tether.protocol import wire


def _msg(kind: int, frames) -> wire.Message:
    return wire.decode(wire.encode_bytes(kind, frames, 7))


@pytest.fixture
def reply() -> Reply:
    return Reply("c1", "http://127.0.0.1:1", {"service": "svc", "method": "m", "call_id": "abc"})


def test_a_log_line_is_printed_and_taken(reply, capsys):
    assert reply.take(_msg(wire.LOG, [b"out", b"hello\n"])) is None
    assert reply.take(_msg(wire.LOG, [b"err", b"oops\n"])) is None
    out, err = capsys.readouterr()
    assert (out, err) == ("hello\n", "oops\n")


def test_log_lines_go_to_a_steps_logger_when_one_takes_them(reply, capsys):
    lines = []
    with remote_logs_to(lambda line, stream: lines.append((line, stream))):
        reply.take(_msg(wire.LOG, [b"out", b"a\nb"]))
    assert lines == [("a", "out"), ("b", "out")] and capsys.readouterr() == ("", "")


def test_stream_logs_off_prints_nothing(capsys):
    quiet = Reply("c1", "u", {}, stream_logs=False)
    assert quiet.take(_msg(wire.LOG, [b"out", b"hello\n"])) is None
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("kind", [wire.RESULT, wire.STREAM, wire.ITEM], ids=["result", "stream", "item"])
def test_what_the_caller_acts_on_is_returned(reply, kind):
    msg = _msg(kind, [b"x"])
    assert reply.take(msg) is msg


def test_an_error_is_raised_as_the_remote_type_with_the_context(reply):
    try:
        raise OSError("remote disk")  # a remote OSError is the code's error, not the network's
    except OSError as exc:
        frames = wire.error_frames(exc)
    with pytest.raises(OSError, match="remote disk") as info:
        with reply.transport():
            pass
        reply.take(_msg(wire.ERROR, frames))
    assert not isinstance(info.value, rh.ConnectionError)
    assert "raise OSError" in info.value.remote_traceback


def test_a_daemon_error_carries_the_call_context(reply):
    frames = wire.plain_error_frames(wire.NOT_FOUND, "no object 'svc'")
    with pytest.raises(rh.NotFoundError) as info:
        reply.take(_msg(wire.ERROR, frames))
    assert (info.value.cluster, info.value.service, info.value.call_id) == ("c1", "svc", "abc")


def test_the_end_of_the_body_and_an_unknown_kind_are_connection_errors(reply):
    with pytest.raises(rh.ConnectionError, match="closed before the call finished"):
        reply.take(None)
    with pytest.raises(rh.ConnectionError, match="unexpected message kind 99"):
        reply.take(wire.Message(99, 0, []))


@pytest.mark.parametrize("error", [ConnectionResetError("reset"), TimeoutError("slow"), ValueError("bad chunk"),
                                   asyncio.IncompleteReadError(b"", 8)],
                         ids=["reset", "timeout", "malformed", "incomplete"])
def test_transport_errors_become_connection_errors_naming_the_cluster(reply, error):
    with pytest.raises(rh.ConnectionError) as info:
        with reply.transport():
            raise error
    assert "cluster 'c1'" in str(info.value) and "http://127.0.0.1:1" in str(info.value)
    assert info.value.__cause__ is error and info.value.call_id == "abc"


def test_ours_and_other_errors_pass_the_boundary_untouched(reply):
    ours = rh.AuthenticationError("no")
    with pytest.raises(rh.AuthenticationError) as info:
        with reply.transport():
            raise ours
    assert info.value is ours
    with pytest.raises(KeyError):
        with reply.transport():
            raise KeyError("a bug, not the network")


@pytest.mark.parametrize("status,kind,expected", [
    (401, "unauthorized", rh.AuthenticationError), (404, "not_found", rh.NotFoundError),
    (400, "bad_request", rh.ConfigError), (410, "expired", rh.ResultExpiredError),
    (502, "node_unreachable", rh.ConnectionError), (409, "version_mismatch", rh.VersionMismatchError),
    (500, "internal", rh.TetherError), (413, "too_large", rh.ConfigError),
    (431, "headers_too_large", rh.ConfigError), (408, "timeout", rh.CallTimeoutError),
    (503, "too_many_connections", rh.ConnectionError), (503, "worker_unavailable", rh.TetherError)],
    ids=lambda v: str(v) if isinstance(v, int) else None)
def test_http_errors_map_to_one_tether_error_each(status, kind, expected):
    body = json.dumps({"error": kind, "message": "why", "daemon_protocol": 9}).encode()
    err = http_error("c1", status, body, service="svc")
    assert type(err) is expected and err.cluster == "c1" and err.service == "svc"
    if expected is rh.VersionMismatchError:
        assert err.daemon_protocol == 9 and err.client_protocol == wire.PROTOCOL_VERSION


def test_a_result_timeout_is_a_timeout_error_naming_the_call():
    body = json.dumps({"error": "timeout", "message": "call abc is still running after 0 s"}).encode()
    err = http_error("c1", 408, body, call_id="abc")
    assert isinstance(err, TimeoutError) and err.call_id == "abc" and "still running" in str(err)


def test_an_internal_error_carries_its_error_id():
    body = json.dumps({"error": "internal", "message": "failed (error id 1a2b)", "error_id": "1a2b"}).encode()
    err = http_error("c1", 500, body)
    assert err.error_id == "1a2b" and "1a2b" in str(err)


def test_a_body_that_is_not_json_is_still_an_error():
    err = http_error("c1", 503, b"<html>busy</html>")
    assert "HTTP 503" in str(err) and "busy" in str(err)
