"""The dashboard's data: the events log (bounded, kept across a daemon restart, posted events
checked), the usage sampler (CPU and memory from /proc), and the session cookie's value."""

from __future__ import annotations

import os
import sys
import time

import pytest

from tether.daemon.events import Events, check_posted
from tether.daemon.tokens import Tokens
from tether.daemon.usage import Usage, read_proc


def test_events_are_bounded_and_kept_in_the_state_dir(tmp_path):
    log = Events(max_count=5)
    log.record("worker_started", "before the state dir is known", env="default", pid=1)
    log.configure(tmp_path)
    for i in range(12):
        log.record("worker_died", f"died {i}", pid=i)
    assert [e["message"] for e in log.since()] == [f"died {i}" for i in range(7, 12)]
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) < 10  # compacted
    again = Events(max_count=5)
    again.configure(tmp_path)  # a restarted daemon
    assert [e["message"] for e in again.since()] == [f"died {i}" for i in range(7, 12)]
    new = again.record("climb", "from rung 1 to rung 2")
    assert new["seq"] > log.since()[-1]["seq"]
    assert [e["kind"] for e in again.since(after=new["seq"] - 1)] == ["climb"]
    assert again.since(kinds=["climb"]) == [new]


def test_events_survive_an_unwritable_file(tmp_path):
    log = Events()
    log.configure(tmp_path / "missing-dir")
    assert log.record("note", "kept in memory")["kind"] == "note"
    assert len(log.since()) == 1


@pytest.mark.parametrize("body, problem", [
    ([], "JSON object"),
    ({"kind": "worker_died", "message": "x"}, "kind must be one of"),
    ({"kind": "climb", "message": ""}, "message"),
    ({"kind": "climb", "message": "x" * 5000}, "message"),
    ({"kind": "climb", "message": "x", "seq": 3}, "reserved"),
    ({"kind": "climb", "message": "x", "nested": {"a": 1}}, "number, a short string"),
])
def test_a_posted_event_is_checked(body, problem):
    with pytest.raises(ValueError, match=problem):
        check_posted(body)


def test_a_posted_climb_keeps_its_fields():
    assert check_posted({"kind": "climb", "message": "m", "attempt": 2, "env": None}) == (
        "climb", "m", {"attempt": 2, "env": None})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_usage_samples_cpu_and_memory_of_live_workers():
    pid = os.getpid()
    cpu, rss = read_proc(pid)
    assert cpu > 0 and rss > 1 << 20
    usage = Usage(lambda: [("default", pid), ("gone", 2 ** 22 + 7)], interval=0.05, window=0.2)
    usage.sample()
    end = time.monotonic() + 0.06
    while time.monotonic() < end:  # some CPU to measure
        pass
    usage.sample()
    (series,) = usage.info()["series"]
    assert series["env"] == "default" and series["pid"] == pid and len(series["points"]) == 2
    assert series["points"][-1][1] > 10 and series["points"][-1][2] > 1 << 20
    assert usage.info(since=series["points"][-1][0])["series"][0]["points"] == []
    for _ in range(6):
        usage.sample()
    assert len(usage.series[("default", pid)]) == 4  # window / interval


def test_the_session_cookie_is_derived_from_the_token_and_ends_with_a_rotation():
    tokens = Tokens("secret-token", "c1", "path")
    first = tokens.session
    assert b"secret-token" not in first and len(first) == 64
    assert Tokens("secret-token", "c2", "path").session == first
    assert Tokens("secret-token", "c2", "path").cookie != tokens.cookie  # one cookie per cluster
    tokens.replace("another")
    assert tokens.session != first


def test_watching_a_cluster_is_not_activity():
    """An open dashboard (its polls, its follow streams) never keeps a cluster from autostopping."""
    import asyncio

    from tether.daemon.autostop import IdleTracker

    async def app(scope, receive, send):
        if scope["path"] == "/watch":
            IdleTracker.watching(scope)
            assert tracker.idle_seconds() > 0  # a stream in flight is not a request in flight
        await asyncio.sleep(0)

    tracker = IdleTracker(app)
    tracker.last_activity -= 100
    asyncio.run(tracker({"type": "http", "path": "/watch"}, None, None))
    assert tracker.in_flight == 0 and tracker.idle_seconds() >= 100
    asyncio.run(tracker({"type": "http", "path": "/call"}, None, None))
    assert tracker.in_flight == 0 and tracker.idle_seconds() < 1
