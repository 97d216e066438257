"""What a caller sees of its calls beyond the result (docs/calls.md): remote lines marked with
their service and worker, the daemon's Prometheus metrics, the running calls' output bounded in
total, and the records left after a teardown. One local cluster for the module."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import records_code
from prometheus_client.parser import text_string_to_metric_families

import tether as rh
from tether.client.logsink import remote_logs_to

OUTPUT_BYTES = 400_000  # the running calls' output held in memory, in total


@pytest.fixture(scope="module")
def cluster():
    before = os.environ.get("TETHER_RECORDS_OUTPUT_BYTES")
    os.environ["TETHER_RECORDS_OUTPUT_BYTES"] = str(OUTPUT_BYTES)  # the daemon started now has it
    try:
        c = rh.cluster(name=f"obs-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    finally:
        if before is None:
            os.environ.pop("TETHER_RECORDS_OUTPUT_BYTES")
        else:
            os.environ["TETHER_RECORDS_OUTPUT_BYTES"] = before
    rh.function(records_code.chatty).to(c, name="chatty")
    rh.function(records_code.fail).to(c, name="fail")
    rh.function(records_code.burst).to(c, name="burst")
    yield c
    c.teardown()


def http(cluster, token: str | None = None) -> httpx.Client:
    client = cluster.client
    return httpx.Client(base_url=client.url, timeout=30,
                        headers={"Authorization": f"Bearer {token or client.token}"})


def worker_pid(cluster) -> int:
    with http(cluster) as h:
        return h.get("/_tether/status").json()["envs"]["default"]["worker"]["pid"]


def test_remote_lines_are_marked_with_their_service_and_worker_and_sinks_get_them_raw(
        cluster, capfd, monkeypatch):
    pid = worker_pid(cluster)
    capfd.readouterr()
    assert cluster.client.call("chatty", "call", (2,)) == 2
    with pytest.raises(ValueError):
        cluster.client.call("fail", "call", ("boom",))
    out, err = capfd.readouterr()
    assert out.splitlines() == [f"(chatty pid={pid}) line 0", f"(chatty pid={pid}) line 1"]
    assert f"(fail pid={pid}) about to fail" in err.splitlines()  # not a terminal: no colour codes
    assert asyncio.run(cluster.client.acall("chatty", "call", (1,))) == 1  # the async client too
    assert capfd.readouterr().out == f"(chatty pid={pid}) line 0\n"

    got: list[tuple[str, str]] = []
    with remote_logs_to(lambda line, stream: got.append((line, stream))):
        cluster.client.call("chatty", "call", (2,))
    assert got == [("line 0", "out"), ("line 1", "out")]  # a step's logger adds its own context

    monkeypatch.setenv("TETHER_LOG_PREFIX", "0")
    cluster.client.call("chatty", "call", (1,))
    assert capfd.readouterr().out == "line 0\n"


def _metrics(cluster) -> dict[str, dict[tuple, float]]:
    with http(cluster) as h:
        resp = h.get("/_tether/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_count_calls_by_outcome_and_time_them_and_need_the_token(cluster):
    before = _metrics(cluster)
    ok_key = (("method", "call"), ("outcome", "ok"), ("service", "chatty"))
    err_key = (("method", "call"), ("outcome", "error"), ("service", "fail"))
    ok0 = before.get("tether_calls_total", {}).get(ok_key, 0)
    err0 = before.get("tether_calls_total", {}).get(err_key, 0)
    for _ in range(3):
        cluster.client.call("chatty", "call", (0,))
    with pytest.raises(ValueError):
        cluster.client.call("fail", "call", ("x",))
    after = _metrics(cluster)
    assert after["tether_calls_total"][ok_key] == ok0 + 3
    assert after["tether_calls_total"][err_key] == err0 + 1
    buckets = {dict(k)["le"]: v for k, v in after["tether_call_duration_seconds_bucket"].items()
               if dict(k)["service"] == "chatty"}
    count = after["tether_call_duration_seconds_count"][(("service", "chatty"),)]
    assert buckets["+Inf"] == count >= 3 and buckets["0.0001"] <= buckets["600.0"] <= count
    assert after["tether_call_duration_seconds_sum"][(("service", "chatty"),)] > 0
    assert after["tether_calls_running"][()] == 0
    assert after["tether_workers"][()] == 1
    pid = worker_pid(cluster)
    rss = after["tether_worker_memory_bytes"][(("env", "default"), ("pid", str(pid)))]
    assert 1 << 20 < rss <= after["tether_worker_peak_memory_bytes"][(("env", "default"), ("pid", str(pid)))]
    assert after["tether_records_enabled"][()] == 1
    with http(cluster, token="wrong") as h:
        assert h.get("/_tether/metrics").status_code == 401


def test_the_running_calls_output_stays_within_its_total_bound(cluster):
    """Eight calls print 300 lines of 1000 characters each at once (2.4 MB), then run on: what
    the daemon holds of them stays under TETHER_RECORDS_OUTPUT_BYTES, the oldest lines of the
    biggest buffers dropped and counted."""
    calls, lines, width = 8, 300, 1000
    done: list[int] = []

    def one(i: int) -> None:
        with remote_logs_to(lambda line, stream: None):  # streamed (else not sent), not printed
            done.append(cluster.client.call("burst", "call", (lines, width, 2.0), call_id=f"burst-{i}"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(calls)]
    for t in threads:
        t.start()
    seen, running = 0, []
    with http(cluster) as h:
        deadline = time.monotonic() + 30
        while len(running) < calls and time.monotonic() < deadline:
            live = h.get("/_tether/status").json()["recording"]["live_output"]
            assert live["bytes"] <= live["max_bytes"] == OUTPUT_BYTES
            seen = max(seen, live["bytes"])
            running = [r for r in h.get("/_tether/calls", params={"outcome": "running", "service": "burst"})
                       .json()["calls"] if r["output"]["lines"] + r["output"]["dropped"] == lines]
            time.sleep(0.05)
        assert len(running) == calls, "every call printed all its lines while running"
        assert sum(r["output"]["dropped"] for r in running) > 0
        assert seen > OUTPUT_BYTES // 2
        for t in threads:
            t.join()
        assert done == [lines] * calls
        for i in range(calls):  # ended: lines kept and dropped add up; the newest are the ones kept
            row = h.get(f"/_tether/calls/burst-{i}/record").json()
            assert row["output"]["lines"] + row["output"]["dropped"] == lines
            events = [json.loads(e) for e in h.get(f"/_tether/calls/burst-{i}/output").text.splitlines()]
            kept = [e["text"] for e in events if e["event"] == "line"]
            assert kept[-1].startswith(f"{lines - 1:06d}")
            assert len(kept) == row["output"]["lines"]
            if row["output"]["dropped"]:
                assert events[0] == {"event": "dropped", "lines": row["output"]["dropped"]}
        assert h.get("/_tether/status").json()["recording"]["live_output"]["bytes"] == 0


def test_teardown_keeps_the_records_in_one_file_and_a_new_daemon_lists_them():
    """By design: a pipeline tears its cluster down at its end, and its calls are what one looks
    at then. The records stay in calls.sqlite (bounded by count and age), folded into that one
    file: no -wal or -shm beside it once the daemon stopped."""
    c = rh.cluster(name=f"obs-td-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    try:
        rh.function(records_code.chatty).to(c, name="chatty")
        c.client.call("chatty", "call", (1,), call_id="before-teardown", stream_logs=False)
        with http(c) as h:
            path = Path(h.get("/_tether/status").json()["recording"]["file"])
        c.teardown()
        assert path.exists()
        assert not [p.name for p in path.parent.iterdir() if re.fullmatch(r"calls\.sqlite-(wal|shm)", p.name)]
        db = sqlite3.connect(path)
        assert db.execute("SELECT outcome FROM calls WHERE id = 'before-teardown'").fetchall() == [("ok",)]
        db.close()
        c.up_if_not()
        with http(c) as h:
            assert h.get("/_tether/calls/before-teardown/record").json()["outcome"] == "ok"
    finally:
        c.teardown()
