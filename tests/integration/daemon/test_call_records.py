"""Every call is recorded (docs/calls.md): who called what, how it ended, what it printed; kept in
the state dir's SQLite file across a daemon restart, followed live by any number of readers, and
never in the way of serving calls (a records file that fails stops recording only)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid

import httpx
import memory_code
import pytest
import records_code
import remote_code
from limits_support import require_cgroups

import tether as rh

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def http(cluster) -> httpx.Client:
    client = cluster.client
    return httpx.Client(base_url=client.url, timeout=TIMEOUT,
                        headers={"Authorization": f"Bearer {client.token}"})


def wait_for(fetch, what: str, timeout: float = 15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = fetch()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def records(h: httpx.Client, **params) -> list[dict]:
    resp = h.get("/_tether/calls", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()["calls"]


def ndjson(resp: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in resp.text.splitlines() if line]


@pytest.fixture
def cluster():
    c = rh.cluster(name=f"rec-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    yield c
    c.teardown()


def test_each_call_is_recorded_with_caller_outcome_and_output_and_survives_a_restart(cluster):
    chatty = rh.function(records_code.chatty).to(cluster, name="chatty")
    fail = rh.function(records_code.fail).to(cluster, name="fail")
    assert chatty(3) == 3
    with pytest.raises(ValueError):
        fail("boom")
    with http(cluster) as h:
        rows = wait_for(lambda: [r for r in records(h) if r["outcome"] != "running"][:2] if len(records(h)) >= 2
                        else None, "two records")
        by_object = {r["object"]: r for r in records(h)}
        ok, bad = by_object["chatty"], by_object["fail"]
        assert ok["outcome"] == "ok" and ok["method"] == "call" and ok["duration"] >= 0
        assert ok["caller"] == {"user": ok["caller"]["user"], "host": socket.gethostname(), "pid": os.getpid()}
        assert ok["output"] == {"lines": 3, "dropped": 0}
        assert bad["outcome"] == "error" and bad["error_type"] == "ValueError" and "boom" in bad["error_message"]
        assert [r["object"] for r in records(h, failed=1)] == ["fail"]
        assert [r["object"] for r in records(h, service="chatty")] == ["chatty"]
        assert records(h, since=time.time() + 60) == []
        assert len(rows) == 2
        lines = ndjson(h.get(f"/_tether/calls/{ok['id']}/output"))
        assert [e["text"] for e in lines if e["event"] == "line"] == ["line 0\n", "line 1\n", "line 2\n"]
        assert lines[-1] == {"event": "end", "outcome": "ok"}
    # written to the state dir in the background, read again by the next daemon
    wait_for(lambda: cluster.status()["recording"]["written"] >= 2, "the records to be written")
    pid = cluster.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z",
             "the daemon to die")
    cluster.up_if_not()
    with http(cluster) as h:
        again = {r["object"]: r for r in records(h)}
        assert again["chatty"]["id"] == ok["id"] and again["fail"]["outcome"] == "error"
        assert again["chatty"]["peak_memory"] and again["chatty"]["peak_memory"] > 1 << 20
        lines = ndjson(h.get(f"/_tether/calls/{ok['id']}/output"))
        assert [e["text"] for e in lines if e["event"] == "line"] == ["line 0\n", "line 1\n", "line 2\n"]


def _follow_then_call_printer(cluster, h: httpx.Client, call_id: str, args: tuple,
                              events: list[dict]) -> tuple[threading.Thread, threading.Thread]:
    """A follower of new ``printer`` calls (into ``events``, until one ends), then that call, each
    in a thread: (follower, caller)."""
    def follow_calls() -> None:
        with h.stream("GET", "/_tether/calls", params={"follow": 1, "service": "printer"}) as resp:
            for line in resp.iter_lines():
                events.append(json.loads(line))
                if events[-1]["event"] == "ended":
                    return

    watcher = threading.Thread(target=follow_calls, daemon=True)
    watcher.start()
    time.sleep(0.5)  # the follower is registered
    caller = threading.Thread(target=cluster.client.call, args=("printer", "call", args),
                              kwargs={"call_id": call_id}, daemon=True)
    caller.start()
    return watcher, caller


def test_output_streams_live_to_several_followers_and_new_calls_are_followed(cluster):
    rh.function(records_code.slow_printer).to(cluster, name="printer")
    call_id = f"follow-{uuid.uuid4().hex[:6]}"
    seen: dict[str, list[dict]] = {"a": [], "b": [], "calls": []}
    with http(cluster) as h:
        watcher, caller = _follow_then_call_printer(cluster, h, call_id, (5, 0.3), seen["calls"])

        def follow(key: str) -> None:
            with h.stream("GET", f"/_tether/calls/{call_id}/output", params={"follow": 1}) as resp:
                assert resp.status_code == 200
                for line in resp.iter_lines():
                    seen[key].append(json.loads(line))

        wait_for(lambda: any(e["event"] == "started" for e in seen["calls"]), "the call to start")
        followers = [threading.Thread(target=follow, args=(k,), daemon=True) for k in ("a", "b")]
        for t in followers:
            t.start()
        for t in [caller, *followers, watcher]:
            t.join(30)
            assert not t.is_alive()
    for key in ("a", "b"):
        texts = [e["text"] for e in seen[key] if e["event"] == "line"]
        assert "tick 4\n" in texts and any("logged 4" in t for t in texts), seen[key]
        assert seen[key][-1] == {"event": "end", "outcome": "ok"}
    kinds = [e["event"] for e in seen["calls"]]
    assert kinds == ["started", "ended"] and seen["calls"][1]["call"]["id"] == call_id


def test_a_call_printing_past_its_bound_keeps_the_newest_lines_and_says_how_many_were_dropped(
        monkeypatch):
    monkeypatch.setenv("TETHER_RECORDS_OUTPUT_LINES", "10")
    c = rh.cluster(name=f"rec-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    try:
        rh.function(records_code.chatty).to(c, name="chatty")
        c.client.call("chatty", "call", (50,), call_id="many-lines")
        with http(c) as h:
            events = ndjson(h.get("/_tether/calls/many-lines/output"))
        lines = [e["text"] for e in events if e["event"] == "line"]
        assert events[0] == {"event": "dropped", "lines": 40}
        assert lines == [f"line {i}\n" for i in range(40, 50)]
    finally:
        c.teardown()


def test_records_are_bounded_by_count_the_newest_kept(monkeypatch):
    monkeypatch.setenv("TETHER_RECORDS_MAX_COUNT", "5")
    c = rh.cluster(name=f"rec-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    try:
        rh.function(records_code.noop).to(c, name="noop")
        ids = [f"bounded-{i:02d}" for i in range(12)]
        for call_id in ids:
            c.client.call("noop", "call", (), call_id=call_id)
        with http(c) as h:
            kept = wait_for(lambda: [r["id"] for r in records(h)] if len(records(h)) <= 5 else None,
                            "the records to be trimmed to 5")
            assert kept == ids[:-6:-1]
            assert h.get(f"/_tether/calls/{ids[0]}/record").status_code == 404
    finally:
        c.teardown()


def test_recording_resumed_at_run_time_on_a_daemon_started_without_it(monkeypatch):
    monkeypatch.setenv("TETHER_RECORDS", "0")
    c = rh.cluster(name=f"rec-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    try:
        rh.function(records_code.noop).to(c, name="noop")
        c.client.call("noop", "call", (), call_id="before-resume")
        with http(c) as h:
            assert h.get("/_tether/calls").json()["recording"]["enabled"] is False
            for body in ({}, {"enabled": "yes"}, [True]):
                bad = h.put("/_tether/records", json=body)
                assert bad.status_code == 400 and "enabled" in bad.json()["message"], bad.text
            on = h.put("/_tether/records", json={"enabled": True}).json()
            assert (on["enabled"], on["paused"], on["error"]) == (True, False, None)
            c.client.call("noop", "call", (), call_id="after-resume")
            off = h.put("/_tether/records", json={"enabled": False}).json()
            assert (off["enabled"], off["paused"], off["written"]) == (False, True, 1)  # written when it answers
            c.client.call("noop", "call", (), call_id="while-paused")
            # a call ended before the resume or during the pause was not recorded; the rest still reads
            assert [r["id"] for r in records(h)] == ["after-resume"]
            assert h.get("/_tether/status").json()["recording"]["written"] == 1
    finally:
        c.teardown()


def test_a_call_running_when_recording_pauses_ends_for_its_followers_and_frees_its_output(cluster):
    rh.function(records_code.slow_printer).to(cluster, name="printer")
    call_id = f"paused-{uuid.uuid4().hex[:6]}"
    seen: dict[str, list[dict]] = {"output": [], "calls": []}
    with http(cluster) as h:
        def follow_output() -> None:
            with h.stream("GET", f"/_tether/calls/{call_id}/output", params={"follow": 1}) as resp:
                for line in resp.iter_lines():
                    seen["output"].append(json.loads(line))

        watcher, caller = _follow_then_call_printer(cluster, h, call_id, (6, 0.25), seen["calls"])
        wait_for(lambda: any(e["event"] == "started" for e in seen["calls"]), "the call to start")
        reader = threading.Thread(target=follow_output, daemon=True)
        reader.start()
        wait_for(lambda: any(e["event"] == "line" for e in seen["output"]), "its first line")
        assert h.get("/_tether/status").json()["recording"]["live_output"]["calls"] == 1
        assert h.put("/_tether/records", json={"enabled": False}).json()["paused"] is True
        try:
            for t in (caller, reader, watcher):
                t.join(30)
                assert not t.is_alive(), "a follower of a call that ended during the pause was left waiting"
            assert seen["output"][-1] == {"event": "end", "outcome": "ok"}
            assert [e["event"] for e in seen["calls"]] == ["started", "ended"]
            live = h.get("/_tether/status").json()["recording"]["live_output"]
            assert live["calls"] == 0 and live["bytes"] == 0  # its output is no longer counted
            assert call_id not in [r["id"] for r in records(h)]  # it ended while paused
        finally:
            h.put("/_tether/records", json={"enabled": True})


def test_a_worker_that_dies_and_a_cancelled_call_are_recorded_as_such(cluster):
    rh.function(remote_code.die).to(cluster, name="die")
    rh.function(remote_code.sleepy).to(cluster, name="sleepy")
    with pytest.raises(rh.WorkerDiedError):
        cluster.client.call("die", "call", ("exit",), call_id="died")
    raised: list[BaseException] = []

    def call_and_be_cancelled() -> None:
        try:
            cluster.client.call("sleepy", "call", (60,), call_id="cancelled")
        except rh.TetherError as exc:
            raised.append(exc)

    caller = threading.Thread(target=call_and_be_cancelled, daemon=True)
    caller.start()
    with http(cluster) as h:
        wait_for(lambda: h.get("/_tether/calls/cancelled/record").status_code == 200, "the call to start")
        assert h.get("/_tether/calls/cancelled/record").json()["outcome"] == "running"
        assert h.post("/_tether/calls/cancelled/cancel").json()["cancelled"]
        caller.join(30)
        assert raised, "the cancelled call raised nothing"
        died = wait_for(lambda: h.get("/_tether/calls/died/record").json(), "the record")
        assert died["outcome"] == "worker_died" and died["error_type"] == "WorkerDied"
        cancelled = wait_for(lambda: (r := h.get("/_tether/calls/cancelled/record").json())["outcome"] != "running"
                             and r, "the cancelled call to end")
        assert cancelled["outcome"] == "cancelled", cancelled
        assert [r["id"] for r in records(h, outcome=["worker_died", "cancelled"])] == ["cancelled", "died"]


def test_an_out_of_memory_kill_is_recorded_with_its_peak(make_cluster, monkeypatch):
    require_cgroups()
    monkeypatch.setenv("TETHER_LIMITS", "cgroup")
    c = make_cluster(memory="256Mi", cpus=1)
    rh.function(memory_code.hog).to(c, name="hog")
    with pytest.raises(rh.OutOfMemoryError):
        c.client.call("hog", "call", (1024,), call_id="oom")
    with http(c) as h:
        row = h.get("/_tether/calls/oom/record").json()
        metrics = h.get("/_tether/metrics").text
    assert row["outcome"] == "out_of_memory" and row["error_type"] == "OOMKilled"
    assert 128 << 20 < row["peak_memory"] <= (256 << 20) + (1 << 20)
    # counted in the Prometheus metrics too (the others: test_call_observability.py)
    assert 'tether_calls_total{service="hog",method="call",outcome="out_of_memory"} 1\n' in metrics


def test_following_an_unknown_call_is_a_404_naming_it(cluster):
    with http(cluster) as h:
        for path in ("/_tether/calls/no-such-call/output?follow=1", "/_tether/calls/no-such-call/record"):
            resp = h.get(path)
            assert resp.status_code == 404
            assert resp.json()["error"] == "not_found" and "'no-such-call'" in resp.json()["message"]
        resp = h.get("/_tether/calls", params={"outcome": "weird"})
        assert resp.status_code == 400 and "'weird'" in resp.json()["message"]


@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    where = tmp_path / "tiny"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], check=True)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_stops_recording_never_serving_calls(tiny_disk, monkeypatch):
    monkeypatch.setenv("TETHER_RECORDS_FILE", str(tiny_disk / "calls.sqlite"))
    c = rh.cluster(name=f"rec-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    try:
        chatty = rh.function(records_code.chatty).to(c, name="chatty")
        for _ in range(20):  # ~60 KB of output each: the 256 KB disk fills up
            assert chatty(1000) == 1000
        status = wait_for(lambda: c.status() if c.status().get("recording", {}).get("error") else None,
                          "recording to stop")
        assert "full" in status["recording"]["error"] or "disk" in status["recording"]["error"]
        for _ in range(5):
            assert chatty(10) == 10
        with http(c) as h:
            assert h.get("/_tether/calls").json()["recording"]["error"]
        with open(os.path.join(status["state_dir"], "daemon.log")) as f:
            text = f.read()
        assert text.count("call records stopped") == 1, text[-2000:]
    finally:
        c.teardown()
