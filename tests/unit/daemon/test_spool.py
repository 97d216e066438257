"""A big call body from a caller without shared memory is written into shared-memory files as it
arrives (``tether.daemon.spool``): the worker maps them as it maps a local caller's frames."""

from __future__ import annotations

import asyncio
import os

import pytest

from tether.daemon import spool
from tether.daemon.requests import BadRequest
from tether.protocol import shm, wire


def _receiver(body: bytes, piece: int = 65_536):
    pieces = [body[i:i + piece] for i in range(0, len(body), piece)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                for i, p in enumerate(pieces)]
    it = iter(messages)

    async def receive():
        return next(it)

    return receive


def _read(body: bytes, folder, length: int | None = None, piece: int = 65_536):
    declared = str(len(body) if length is None else length).encode()
    return asyncio.run(spool.read_call(_receiver(body, piece), declared, folder))


def _call(*frames: bytes, kind: int = wire.CALL, flags: int = 0) -> bytes:
    return wire.encode_bytes(kind, list(frames), 0, flags)


def test_big_frames_go_to_files_the_worker_maps(tmp_path):
    big, small = os.urandom(3 << 20), b"pickle"
    got = _read(_call(small, big, b"tail"), tmp_path, piece=50_000)
    assert isinstance(got, spool.Spooled) and got.flags == wire.SHARED | wire.OWNED
    assert len(got.names) == 1 and (tmp_path / got.names[0]).stat().st_mode & 0o777 == 0o600
    frames = shm.resolve(got.frames, got.flags, tmp_path)  # as the worker does: maps and unlinks
    assert [bytes(f) for f in frames] == [small, big, b"tail"]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("body", [
    _call(b"x" * 100),  # small: read into memory
    _call(b"p", b"y" * (2 << 20), flags=wire.SHARED),  # already shared: not ours to spool
    _call(b"p", b"y" * (2 << 20), kind=wire.CONTROL),
    _call(*[b"z" * 300_000] * 8),  # big, but no frame worth a file
])
def test_other_bodies_are_read_as_they_are(tmp_path, body):
    got = _read(body, tmp_path)
    assert bytes(got) == body and not list(tmp_path.iterdir())


def test_no_folder_reads_into_memory():
    body = _call(b"p", b"y" * (2 << 20))
    assert bytes(_read(body, None)) == body


def test_a_body_longer_than_declared_is_refused_and_leaves_no_file(tmp_path):
    body = _call(b"p", b"y" * (2 << 20))
    with pytest.raises(BadRequest):
        _read(body + b"extra", tmp_path, length=len(body))
    assert not list(tmp_path.iterdir())


def test_a_body_whose_frames_do_not_add_up_goes_to_the_usual_checks(tmp_path):
    body = _call(b"p", b"y" * (2 << 20))
    got = _read(body[:-10], tmp_path)  # lengths announce more than the body holds
    with pytest.raises(BadRequest):
        from tether.daemon.requests import decode_message

        decode_message(got, wire.CALL)
    assert not list(tmp_path.iterdir())


def test_a_caller_that_goes_away_mid_body_leaves_no_file(tmp_path):
    body = _call(b"p", b"y" * (2 << 20))
    messages = iter([{"type": "http.request", "body": body[:1 << 20], "more_body": True},
                     {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    with pytest.raises(BadRequest):
        asyncio.run(spool.read_call(receive, str(len(body)).encode(), tmp_path))
    assert not list(tmp_path.iterdir())
