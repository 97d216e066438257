"""The wire format: framing, values with out-of-band buffers, errors. No network."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tether import errors
from tether.protocol import wire

FRAME_SETS = {
    "no-frames": [],
    "one-empty": [b""],
    "one": [b"hello"],
    "several": [b"meta", b"", b"\x00" * 3, bytes(range(256))],
    "big": [b"x" * (3 * 1024 * 1024), b"tail"],
    "memoryview": [memoryview(b"abcdef")[1:4], bytearray(b"mutable")],
}


@pytest.mark.parametrize("frames", FRAME_SETS.values(), ids=FRAME_SETS.keys())
@pytest.mark.parametrize("kind", [wire.CALL, wire.CONTROL, wire.RESULT, wire.ERROR, wire.LOG, wire.HELLO, wire.CANCEL])
def test_encode_decode_round_trip(kind, frames):
    data = wire.encode_bytes(kind, frames, call_id=2**63 + 5)
    msg = wire.decode(data)
    assert msg.kind == kind
    assert msg.call_id == 2**63 + 5
    assert [bytes(f) for f in msg.frames] == [bytes(f) for f in frames]


def test_encode_does_not_copy_frames():
    frame = bytearray(b"payload")
    parts = wire.encode(wire.RESULT, [frame])
    assert parts[1] is frame  # the header is separate; the frame is passed through as is


def test_decode_frames_are_views_of_the_body():
    body = bytearray(wire.encode_bytes(wire.RESULT, [b"abc"]))
    msg = wire.decode(body)
    body[-1:] = b"Z"
    assert bytes(msg.frames[0]) == b"abZ"


def test_message_parts_reencode_identically():
    data = wire.encode_bytes(wire.LOG, [b"out", b"text\n"], call_id=9)
    assert b"".join(bytes(p) for p in wire.decode(data).parts()) == data


def test_message_json():
    msg = wire.decode(wire.encode_bytes(wire.CONTROL, [wire.json_frame({"op": "deploy", "n": [1]})]))
    assert msg.json(0) == {"op": "deploy", "n": [1]}


# -- bad input -------------------------------------------------------------------------------

VALID = wire.encode_bytes(wire.CALL, [b"meta", b"pickle-bytes"], call_id=3)


@pytest.mark.parametrize("cut", range(len(VALID)), ids=lambda c: f"cut{c}")
def test_truncated_message_raises_value_error(cut):
    with pytest.raises(ValueError):
        wire.decode(VALID[:cut])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\xff" * 64,
        VALID + b"trailing",
        wire.encode_bytes(wire.CALL, [b"a"])[:-1] + b"",
        # a header announcing more frames than allowed
        bytes([wire.CALL, 0, 0, 0]) + (wire.MAX_FRAMES + 1).to_bytes(4, "little") + bytes(8),
        # a frame length far beyond the body
        bytes([wire.CALL, 0, 0, 0]) + (1).to_bytes(4, "little") + bytes(8) + (2**40).to_bytes(8, "little"),
    ],
    ids=["empty", "garbage", "ff", "trailing", "short-frame", "too-many-frames", "huge-length"],
)
def test_garbage_raises_value_error(data):
    with pytest.raises(ValueError):
        wire.decode(data)


def test_loads_of_garbage_is_a_serialization_error():
    with pytest.raises(errors.SerializationError, match="cannot unpickle"):
        wire.loads([b"not a pickle"])


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, 1, "s", b"b", [1, (2, 3)], {"k": {1, 2}}, ValueError("e")],
    ids=["none", "int", "str", "bytes", "list", "dict", "exception"],
)
def test_dumps_loads_round_trip(value):
    back = wire.loads(wire.dumps(value))
    if isinstance(value, Exception):
        assert type(back) is ValueError and back.args == value.args
    else:
        assert back == value


def test_numpy_buffers_travel_out_of_band():
    array = np.arange(1_000_000, dtype=np.float64)
    frames = wire.dumps(array)
    assert len(frames) == 2
    assert len(frames[0]) < 1000  # the pickle holds no array data
    assert memoryview(frames[1]).nbytes == array.nbytes  # the raw buffer, not base64 or a copy in the pickle
    back = wire.loads(frames)
    np.testing.assert_array_equal(back, array)


def test_numpy_through_a_whole_message():
    arrays = {"a": np.random.default_rng(0).random((300, 400)), "b": np.arange(10, dtype=np.int8)}
    body = wire.encode_bytes(wire.RESULT, wire.dumps(((arrays,), {})))
    msg = wire.decode(body)
    assert len(msg.frames) == 3  # the pickle and one raw frame per array
    (got,), kwargs = wire.loads(msg.frames)
    assert kwargs == {}
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], value)
        assert got[key].dtype == value.dtype


def test_unpicklable_argument_is_named():
    import threading

    with pytest.raises(errors.SerializationError) as info:
        wire.dumps(((1, threading.Lock()), {}), "the arguments")
    assert "argument 1" in str(info.value) and "lock" in str(info.value).lower()
    with pytest.raises(errors.SerializationError, match="keyword argument 'key'"):
        wire.dumps(((), {"key": threading.Lock()}), "the arguments")


# -- errors --------------------------------------------------------------------------------------


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def test_error_round_trip_keeps_type_and_traceback():
    exc = _raise(KeyError("missing"))
    msg = wire.decode(wire.encode_bytes(wire.ERROR, wire.error_frames(exc)))
    back = wire.exception_from_error(msg)
    assert type(back) is KeyError and back.args == ("missing",)
    assert "_raise" in back.remote_traceback and "KeyError" in back.remote_traceback


def test_error_of_an_unknown_type_is_a_remote_error():
    exc = _raise(ValueError("boom"))
    meta, _ = wire.error_frames(exc)
    frames = [meta, pickle.dumps(exc).replace(b"builtins", b"nosuchmod")]
    back = wire.exception_from_error(wire.decode(wire.encode_bytes(wire.ERROR, frames)), cluster="c")
    assert isinstance(back, errors.RemoteError)
    assert back.remote_type == "builtins.ValueError" and back.cluster == "c"
    assert "boom" in str(back) and "_raise" in back.remote_traceback


@pytest.mark.parametrize(
    ("kind", "expected"),
    [(wire.WORKER_DIED, errors.WorkerDiedError), (wire.SERIALIZATION, errors.SerializationError),
     (wire.NOT_FOUND, errors.NotFoundError), (wire.BAD_REQUEST, errors.ConfigError)],
    ids=["worker-died", "serialization", "not-found", "bad-request"],
)
def test_plain_errors_map_to_tether_errors(kind, expected):
    frames = wire.plain_error_frames(kind, "what happened", "T", pid=12)
    back = wire.exception_from_error(wire.decode(wire.encode_bytes(wire.ERROR, frames)))
    assert type(back) is expected
    assert "what happened" in str(back) and back.pid == 12
