"""How the daemon reads a request (``tether.daemon.requests``), on ASGI messages made here: a body
allocated as it arrives and bounded, JSON bounded in depth, the control routes' checks."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from tether.daemon.requests import (
    BadRequest,
    check_env_spec,
    check_nodes,
    check_run,
    check_timeout,
    loads_json,
    read_body,
)


def _receiver(pieces: list[bytes], disconnect: bool = False):
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1 or disconnect}
                for i, p in enumerate(pieces)]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    taken = []

    async def receive():
        taken.append(1)
        return messages[len(taken) - 1]

    receive.taken = taken
    return receive


def read(pieces, length=None, limit=None, disconnect=False):
    receive = _receiver(pieces, disconnect)
    return asyncio.run(read_body(receive, length, limit)), receive


def test_a_body_in_one_piece_is_returned_as_it_came():
    piece = b"x" * 100
    body, _ = read([piece], b"100")
    assert body is piece


def test_a_body_in_pieces_grows_in_one_buffer():
    pieces = [bytes([i]) * 70_000 for i in range(20)]
    body, _ = read(pieces, str(sum(map(len, pieces))).encode())
    assert isinstance(body, bytearray) and body == b"".join(pieces)


def test_a_declared_length_over_the_limit_is_413_before_reading():
    with pytest.raises(BadRequest) as info:
        read([b"0123456789"], b"10000000000000", limit=1 << 20)
    assert info.value.status == 413 and info.value.kind == "too_large"
    assert "TETHER_MAX_BODY" in info.value.message and "10000000000000" in info.value.message


def test_a_declared_length_is_not_allocated():
    """1 GiB declared, 10 bytes sent, then the caller went away: nothing near 1 GiB allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(BadRequest, match="went away"):
            read([b"0123456789"], str(1 << 30).encode(), limit=2 << 30, disconnect=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("pieces", [[b"x" * 600], [b"x" * 300, b"x" * 301]], ids=["one-piece", "pieces"])
def test_a_body_without_a_length_stops_at_the_limit(pieces):
    with pytest.raises(BadRequest) as info:
        read(pieces, None, limit=500)
    assert info.value.status == 413


def test_a_body_at_the_limit_is_read():
    body, _ = read([b"x" * 250, b"x" * 250], None, limit=500)
    assert len(body) == 500


def test_a_bad_content_length_is_400():
    with pytest.raises(BadRequest, match="Content-Length") as info:
        read([b""], b"ten")
    assert info.value.status == 400


def test_json_nested_too_deep_is_a_bad_request_not_a_recursion_error():
    with pytest.raises(BadRequest, match="nested too deeply"):
        loads_json(b"[" * 100_000 + b"]" * 100_000, "the JSON body")
    assert loads_json(b"[[[1]]]", "x") == [[[1]]]


@pytest.mark.parametrize(("spec", "field"), [
    ({"reqs": "abc"}, "reqs"),
    ({"reqs": ["a", 1]}, "reqs"),
    ({"env_vars": ["A=1"]}, "env_vars"),
    ({"env_vars": {"A": 1}}, "env_vars"),
    ({"env_vars": {"A=B": "1"}}, "env_vars"),
    ({"name": 5}, "name"),
    ({"working_dir": ["/"]}, "working_dir"),
    ({"python": 3}, "python"),
    ({"node_idx": "1"}, "node_idx"),
    ({"node_idx": True}, "node_idx"),
    ("default", "env spec"),
])
def test_a_malformed_env_spec_names_its_field(spec, field):
    with pytest.raises(BadRequest, match=field):
        check_env_spec(spec)


def test_a_good_env_spec_passes():
    check_env_spec({"name": "gpu", "reqs": ["numpy>=1.26"], "env_vars": {"A": "1"}, "working_dir": None,
                    "python": "python3", "node_idx": 1})


@pytest.mark.parametrize(("body", "field"), [
    ({"nodes": [{"index": "zz", "host": "h", "port": 1, "token": "t"}]}, "index"),
    ({"nodes": [{"index": 1, "host": "h", "port": "abc", "token": "t"}]}, "port"),
    ({"nodes": [{"index": 1, "host": "h", "port": 70000, "token": "t"}]}, "port"),
    ({"nodes": [{"index": 1, "host": 5, "port": 1, "token": "t"}]}, "host"),
    ({"nodes": [{"index": 1, "host": "h", "port": 1, "token": "t"}], "ping_seconds": "x"}, "ping_seconds"),
    ({"nodes": "all"}, "nodes"),
])
def test_a_malformed_node_table_names_its_field(body, field):
    with pytest.raises(BadRequest, match=field):
        check_nodes(body)


def test_a_good_node_table_passes():
    nodes = [{"index": 1, "host": "10.0.0.2", "port": 4000, "token": "t", "label": None}]
    assert check_nodes({"nodes": nodes, "ping_seconds": 20}) == (nodes, 20.0)
    assert check_nodes({"nodes": []}) == ([], None)


@pytest.mark.parametrize(("body", "match"), [
    ({"commands": ["true"], "cwd": 5}, "cwd"),
    ({"commands": ["true"], "env_vars": {"A": None}}, "env_vars"),
    ({"commands": "true"}, "commands"),
])
def test_a_malformed_run_names_its_field(body, match):
    with pytest.raises(BadRequest, match=match):
        check_run(body)


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("0", 0.0), ("2.5", 2.5), ("inf", None)])
def test_a_timeout_is_seconds_or_forever(raw, expected):
    assert check_timeout(raw) == expected


@pytest.mark.parametrize("raw", ["nan", "-1", "abc", "-inf"])
def test_a_bad_timeout_is_a_bad_request(raw):
    with pytest.raises(BadRequest, match="timeout"):
        check_timeout(raw)
