"""The HTTP edge's knobs (``tether.daemon.http_guard``): read from the environment, bounded by the
open-files limit; the daemon raises that limit at start. The protocol itself is tested against a
real daemon (tests/integration/daemon/test_hostile_input.py)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from tether.daemon.http_guard import EdgeLimits, answer


def test_defaults_sit_above_what_tethers_clients_need():
    limits = EdgeLimits.from_env()
    assert limits.max_connections >= 1024 and limits.max_per_peer >= 1024  # bench: ~150 at once
    assert limits.max_header_bytes >= 16 * 1024 and limits.max_headers >= 50
    assert 5 <= limits.header_timeout <= limits.keep_alive <= 600


def test_knobs_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TETHER_MAX_HEADER_BYTES", "1000")
    monkeypatch.setenv("TETHER_HEADER_TIMEOUT", "0.5")
    monkeypatch.setenv("TETHER_MAX_CONNECTIONS", "8")
    limits = EdgeLimits.from_env(open_files=20000)
    assert (limits.max_header_bytes, limits.header_timeout) == (1000, 0.5)
    assert limits.max_connections == 8 and limits.max_per_peer == 8  # a peer never exceeds the total


def test_connections_are_bounded_by_the_open_files_limit():
    assert EdgeLimits.from_env(open_files=1024).max_connections == 704  # a reserve for workers, files
    assert EdgeLimits.from_env(open_files=100).max_connections == 16


@pytest.mark.parametrize("value", ["abc", "0", "-3", "nan", "inf"])
def test_a_bad_knob_stops_the_daemon_with_its_name(monkeypatch, value):
    monkeypatch.setenv("TETHER_KEEP_ALIVE", value)
    with pytest.raises(ValueError, match="TETHER_KEEP_ALIVE"):
        EdgeLimits.from_env()


def test_the_open_files_soft_limit_is_raised_to_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit is {hard}")
    code = ("import resource; from tether.daemon.http_guard import raise_open_files; "
            "print(raise_open_files(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    got, now = map(int, out.stdout.split())
    assert got == now == min(hard if hard != resource.RLIM_INFINITY else 1 << 20, 1 << 20)


def test_an_early_answer_is_json_and_closes_the_connection():
    raw = answer(431, "headers_too_large", "too big")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert b"connection: close" in head and b"content-length: %d" % len(body) in head
    assert body == b'{"error": "headers_too_large", "message": "too big"}'
