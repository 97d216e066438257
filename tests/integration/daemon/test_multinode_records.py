"""The records of a multi-node cluster through its head (docs/calls.md, "Multi-node clusters"): a
call the head forwards is recorded there with its caller, ``?nodes=all`` merges every node's
records, and the output of a call another node ran comes through the head (followed live too).

The cheapest multi-node cluster: two local daemons, the second registered with the first as its
node 1 (as the launcher does for SSH and cloud clusters)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import httpx
import pytest
import records_code
from process_helpers import running, wait_until

import tether as rh
from tether.client import routes
from tether.state import cluster_dir

FAR = "chatty-far"


@pytest.fixture(scope="module")
def pair():
    head = rh.cluster(name=f"mnr-head-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    node = rh.cluster(name=f"mnr-node-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    try:
        nc = node.client
        head.client.request_json("POST", "/_tether/nodes", body={
            "nodes": [{"index": 1, "host": nc.host, "port": nc.port, "token": nc.token}]})
        for name, fn in ((FAR, records_code.chatty), ("slow-far", records_code.slow_printer)):
            head.client.deploy({"op": "deploy", "kind": "function", "name": name,
                                "env": {"name": "far", "node_idx": 1}, **rh.function(fn).spec.wire()})
        rh.function(records_code.chatty).to(head, name="chatty-here")
        yield head, node
    finally:
        head.teardown()
        node.teardown()


def http(cluster) -> httpx.Client:
    client = cluster.client
    return httpx.Client(base_url=client.url, timeout=30, headers={"Authorization": f"Bearer {client.token}"})


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line]


def test_a_forwarded_call_is_recorded_on_the_head_with_its_caller_and_its_lines_marked(pair, capfd):
    head, node = pair
    with http(node) as n:
        node_pid = n.get("/_tether/status").json()["envs"]["far"]["worker"]["pid"]
    capfd.readouterr()
    assert head.client.call(FAR, "call", (2,), call_id="far-1") == 2
    assert capfd.readouterr().out == (f"({FAR} pid={node_pid} node=1) line 0\n"
                                      f"({FAR} pid={node_pid} node=1) line 1\n")
    caller = {"host": socket.gethostname(), "pid": os.getpid()}
    with http(head) as h, http(node) as n:
        row = h.get("/_tether/calls/far-1/record").json()
        assert row["node"] == 1 and row["outcome"] == "ok" and row["object"] == FAR
        assert {k: row["caller"][k] for k in caller} == caller
        there = n.get("/_tether/calls/far-1/record").json()  # the node has the caller too
        assert {k: there["caller"][k] for k in caller} == caller and there["output"]["lines"] == 2


def test_the_heads_listing_of_all_nodes_merges_them_newest_first(pair):
    head, _ = pair
    head.client.call(FAR, "call", (1,), call_id="far-2", stream_logs=False)
    head.client.call("chatty-here", "call", (1,), call_id="here-2", stream_logs=False)
    with http(head) as h:
        answer = h.get("/_tether/calls", params={"nodes": "all"}).json()
        rows = answer["calls"]
        assert answer["unreachable"] == []
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids))  # a forwarded call once: the node's record
        assert ids.index("here-2") < ids.index("far-2")
        far = next(r for r in rows if r["id"] == "far-1")
        assert far["node"] == 1 and far["output"]["lines"] == 2  # the node's record, with its output
        assert [r["started"] for r in rows] == sorted((r["started"] for r in rows), reverse=True)
        only = h.get("/_tether/calls", params={"nodes": "all", "service": FAR}).json()["calls"]
        assert {r["object"] for r in only} == {FAR} and {"far-1", "far-2"} <= {r["id"] for r in only}
        assert h.get("/_tether/calls", params={"nodes": "some"}).status_code == 400
        # a node that does not answer is named; the others' records are listed without it
        nc = pair[1].client
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]  # nothing listens there once closed
        head.client.request_json("POST", "/_tether/nodes", body={"nodes": [
            {"index": 1, "host": nc.host, "port": nc.port, "token": nc.token},
            {"index": 2, "host": "127.0.0.1", "port": port, "token": "x"}]})
        try:
            answer = h.get("/_tether/calls", params={"nodes": "all"}).json()
            assert [u["node"] for u in answer["unreachable"]] == [2] and "node 2" in answer["unreachable"][0]["error"]
            assert {"far-1", "far-2", "here-2"} <= {r["id"] for r in answer["calls"]}
        finally:
            head.client.request_json("POST", "/_tether/nodes", body={
                "nodes": [{"index": 1, "host": nc.host, "port": nc.port, "token": nc.token}]})


def test_the_output_of_a_call_another_node_ran_comes_through_the_head_live_too(pair):
    head, _ = pair
    with http(head) as h:
        events = ndjson(h.get("/_tether/calls/far-1/output").text)
        assert [e["text"] for e in events if e["event"] == "line"] == ["line 0\n", "line 1\n"]
        assert events[-1] == {"event": "end", "outcome": "ok"}

        done = threading.Event()

        def call() -> None:
            head.client.call("slow-far", "call", (3, 0.3), call_id="slow-1", stream_logs=False)
            done.set()

        threading.Thread(target=call, daemon=True).start()
        deadline = time.monotonic() + 10
        while h.get("/_tether/calls/slow-1/record").status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.02)  # followed once the head knows it (an unknown id is a 404, never a wait)
        with h.stream("GET", "/_tether/calls/slow-1/output", params={"follow": 1}) as resp:
            assert resp.status_code == 200
            followed = [json.loads(line) for line in resp.iter_lines() if line]
        assert done.wait(10)
        ticks = [e["text"] for e in followed if e["event"] == "line" and e["stream"] == "out"]
        assert ticks == ["tick 0\n", "tick 1\n", "tick 2\n"]
        assert followed[-1] == {"event": "end", "outcome": "ok"}
        missing = h.get("/_tether/calls/no-such-call/output")
        assert missing.status_code == 404 and "no-such-call" in missing.json()["message"]


def test_an_alias_of_an_object_on_another_node_reaches_it(pair):
    """The head resolves an alias (``fn.save(name=...)``) and forwards by the object's own name."""
    head, _ = pair
    head.client.alias("far-alias", FAR)
    assert head.client.call("far-alias", "call", (1,), stream_logs=False) == 1
    # the head named the node and the object's own name (x-tether-route); this launcher gives no
    # endpoint of node 1 to call it directly, so the calls go on through the head
    assert head.client.router.routes["far-alias"] == (1, FAR)
    with http(head) as h:
        before = len(h.get("/_tether/calls", params={"service": FAR}).json()["calls"])
        assert head.client.call("far-alias", "call", (1,), stream_logs=False) == 1
        assert len(h.get("/_tether/calls", params={"service": FAR}).json()["calls"]) == before + 1


def test_direct_calls_keep_the_heads_autostop_away(pair, monkeypatch):
    """Calls that go to the node directly send the head nothing: the caller's router sends it a
    health request now and then, so that the head's autostop does not stop it under them. Last in
    this module: the head stops at its end."""
    head, node = pair
    monkeypatch.setattr(routes, "HEAD_TOUCH", 0.5)
    saved = head.client.router  # this launcher gives no node endpoint: a router that reaches it
    router = head.client.router = routes.Router(lambda index: node.client,
                                                lambda: head.client.request_json("GET", "/health"))
    pid = json.loads((cluster_dir(head.name) / "daemon.json").read_text())["pid"]
    try:
        assert head.client.call(FAR, "call", (0,), stream_logs=False) == 0  # the head names node 1
        assert router.routes[FAR] == (1, FAR)
        with http(head) as h:
            seen = len(h.get("/_tether/calls", params={"service": FAR}).json()["calls"])
        head.autostop_mins = 0.03  # ~2 s
        end = time.monotonic() + 5
        while time.monotonic() < end:
            assert head.client.call(FAR, "call", (0,), stream_logs=False) == 0
            time.sleep(0.1)
        assert running(pid), "the head stopped while direct calls went on"
        with http(head) as h:
            assert len(h.get("/_tether/calls", params={"service": FAR}).json()["calls"]) == seen  # all direct
        router.close()  # no more health requests: the idle head stops
        wait_until(lambda: not running(pid), timeout=30, what="the idle head to stop")
    finally:
        head.client.router = saved
