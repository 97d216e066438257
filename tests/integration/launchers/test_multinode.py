"""A two-node SSH cluster on test hosts: the caller talks to the head only; the head deploys to,
calls, and deletes on the node that holds each object (``tether.env(compute={"node_idx": 1})``).

The two hosts have different users, so where a call ran is plain from what it returns.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from placed_code import cluster_of, importable
from process_helpers import wait_until

import tether as rh

pytestmark = pytest.mark.timeout(300)

CODE = '''
import os, time

def where(tag):
    print(f"node says {tag}", flush=True)
    return {"uid": os.getuid(), "home": os.path.expanduser("~"), "file": __file__}

class Counter:
    def __init__(self, start=0):
        self.n = start

    def bump(self):
        self.n += 1
        return self.n

def count(n):
    for i in range(n):
        yield i
    return "counted"

def endless(marker):
    i = 0
    try:
        while True:
            yield i
            i += 1
            time.sleep(0.01)
    finally:
        open(os.path.expanduser(marker), "w").close()

def slow(seconds, marker):
    open(os.path.expanduser(marker), "w").close()
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # short sleeps: a cancel stops the thread between two
        time.sleep(0.01)
    return "done"

def make(n):
    return list(range(n))

def total(xs):
    return sum(xs)
'''


@pytest.fixture(scope="module")
def placed_module(tmp_path_factory):
    """A project with CODE in it, importable here (the code travels by rsync to every node)."""
    with importable(tmp_path_factory.mktemp("multinode"), "placed", CODE) as module:
        yield module


@pytest.fixture(scope="module")
def pair(ssh_hosts):
    """A cluster of the two session hosts (head: ssh_hosts[0]), up for the whole module."""
    cluster = cluster_of(ssh_hosts, "pair")
    cluster.up_if_not()
    yield cluster
    cluster.teardown()


ON_NODE_1 = rh.env(name="on-node-1", compute={"node_idx": 1})


def _uid(host) -> int:
    return int(host.ssh("id -u").stdout)


def test_calls_go_to_the_node_that_holds_the_object(pair, ssh_hosts, placed_module, capfd):
    far = rh.function(placed_module.where).to(pair, env=ON_NODE_1, name="where-far")
    near = rh.function(placed_module.where).to(pair, name="where-near")
    got = far("from node 1")
    assert got["uid"] == _uid(ssh_hosts[1])
    assert got["file"].startswith(got["home"] + "/.tether/code/")  # synced into node 1's own home
    assert "node says from node 1" in capfd.readouterr().out  # its output streams back through the head
    assert near("x")["uid"] == _uid(ssh_hosts[0])
    with pytest.raises(rh.NotFoundError, match="nope"):  # the node's 404, with its own message
        pair.client.call("where-far", "nope")
    objects = pair.status()["objects"]
    assert (objects["where-far"]["node"], objects["where-near"]["node"]) == (1, 0)
    assert {"where-far", "where-near"} <= set(pair.keys())
    assert [n["index"] for n in pair.client.request_json("GET", "/_tether/nodes")["nodes"]] == [1]


def _records(client, name: str) -> list[dict]:
    return client.request_json("GET", "/_tether/calls", params={"service": name})["calls"]


def test_after_the_first_call_calls_go_to_the_node_directly_and_follow_a_move(pair, ssh_hosts, placed_module,
                                                                             capfd):
    """The head names the node in its answer (``x-tether-route``); the client calls that node's
    daemon itself from then on, and asks the head again once the object is no longer there."""
    far = rh.function(placed_module.where).to(pair, env=ON_NODE_1, name="where-direct")
    assert far("through the head")["uid"] == _uid(ssh_hosts[1])
    assert pair.client.router.routes["where-direct"] == (1, "where-direct")
    for _ in range(2):
        assert far("direct")["uid"] == _uid(ssh_hosts[1])
    assert asyncio.run(far.aio("direct"))["uid"] == _uid(ssh_hosts[1])  # async calls too
    assert capfd.readouterr().out.splitlines()[-1].endswith(" node=1) node says direct")  # marked as before
    assert len(_records(pair.client, "where-direct")) == 1  # the head saw the first call only
    there = _records(pair.node_client(1), "where-direct")
    assert len(there) == 4 and there[0]["caller"]["pid"] == os.getpid()  # the caller, straight
    pair.client.alias("where-direct-alias", "where-direct")  # an alias: the node knows the object's name
    pair.client.call("where-direct-alias", "call", ("via alias",))
    assert pair.client.router.routes["where-direct-alias"] == (1, "where-direct")
    assert pair.client.call("where-direct-alias", "call", ("direct",))["uid"] == _uid(ssh_hosts[1])
    assert len(_records(pair.node_client(1), "where-direct")) == 6
    # moved to the head (by another process: this client's route is stale): node 1 answers 404,
    # nothing ran, and the head serves it
    rh.function(placed_module.where).to(pair, name="where-direct")
    pair.client.router.routes["where-direct"] = (1, "where-direct")
    assert far("moved")["uid"] == _uid(ssh_hosts[0])
    assert "where-direct" not in pair.client.router.routes
    assert len(_records(pair.node_client(1), "where-direct")) == 6


def test_an_instance_on_node_1_keeps_its_state_and_is_found_by_name(pair, placed_module):
    Counter = rh.module(placed_module.Counter).to(pair, env=ON_NODE_1)
    counter = Counter(start=10, name="far-counter")
    assert counter.bump() == 11
    again = pair.get("far-counter")
    assert again.bump() == 12
    assert counter.n == 12


def test_generators_on_node_1_stream_and_stop_when_closed(pair, ssh_hosts, placed_module):
    count = rh.function(placed_module.count).to(pair, env=ON_NODE_1)
    gen = count(3)
    assert list(gen) == [0, 1, 2]
    endless = rh.function(placed_module.endless).to(pair, env=ON_NODE_1)
    ssh_hosts[1].ssh("rm -f ~/endless-closed")
    items = endless("~/endless-closed")
    for i, _ in enumerate(items):
        if i == 3:
            break
    items.close()
    wait_until(lambda: ssh_hosts[1].ssh("test -f ~/endless-closed", check=False).returncode == 0,
               30, "the generator on node 1 to stop")


def test_remote_results_and_results_by_id_on_node_1(pair, placed_module):
    make = rh.function(placed_module.make).to(pair, env=ON_NODE_1)
    total = rh.function(placed_module.total).to(pair, env=ON_NODE_1)
    ref = make.remote(5)
    assert total(ref) == 10  # the list stayed on node 1 and went straight into the next call
    assert ref.fetch() == [0, 1, 2, 3, 4]
    near_total = rh.function(placed_module.total).to(pair, name="total-near")
    with pytest.raises(rh.ConfigError, match="do not move between nodes"):
        near_total(ref)
    handle = make.submit(3)
    assert handle.result(60) == [0, 1, 2]
    assert pair.result(handle.call_id) == [0, 1, 2]  # kept by the head


def test_cancel_and_delete_on_node_1(pair, ssh_hosts, placed_module):
    slow = rh.function(placed_module.slow).to(pair, env=ON_NODE_1, name="slow-far")
    ssh_hosts[1].ssh("rm -f ~/slow-far")
    handle = slow.submit(600, "~/slow-far")
    wait_until(lambda: ssh_hosts[1].ssh("test -f ~/slow-far", check=False).returncode == 0, 60,
               "the call to start on node 1")
    assert handle.cancel() is True
    with pytest.raises(rh.CallCancelledError):
        handle.result(60)
    pair.delete("slow-far")
    assert "slow-far" not in pair.keys()
    with pytest.raises(rh.NotFoundError):
        pair.client.call("slow-far", "call", (0.1, "~/x"))
    assert "slow-far" not in pair.node_client(1).request_json("GET", "/_tether/keys").__str__()


def test_a_node_whose_link_is_cut_gives_a_clear_error_and_the_head_serves_on(test_hosts, placed_module,
                                                                            monkeypatch):
    # the head gives up on a silent node after TETHER_NODE_LINK_TIMEOUT s (15 by default): 3 here
    monkeypatch.setenv("TETHER_SSH_ALIVE_INTERVAL", "1")  # this process's tunnels: ~3 s
    hosts = test_hosts.create(2, env={"TETHER_NODE_LINK_TIMEOUT": "3"})
    cluster = cluster_of(hosts, "cut")
    try:
        slow = rh.function(placed_module.slow).to(cluster, env=ON_NODE_1, name="slow")
        near = rh.function(placed_module.where).to(cluster, name="near")
        outcome: dict = {}

        def call():
            try:
                outcome["result"] = slow(600, "~/slow-started")
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                outcome["error"] = exc

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        wait_until(lambda: hosts[1].ssh("test -f ~/slow-started", check=False).returncode == 0, 60,
                   "the call to start on node 1")
        hosts[1].link_down()
        try:
            assert near("still here")["uid"] == _uid(hosts[0])  # the head serves its own objects
            thread.join(120)  # keepalive: the head gives up on node 1 after ~3 s (the knob above)
            assert not thread.is_alive(), "the call hung after node 1's link was cut"
        finally:
            hosts[1].link_up()
        error = outcome.get("error")
        assert isinstance(error, rh.ConnectionError), outcome
        assert "node 1" in str(error) and hosts[1].ip in str(error)
        assert near("after")["uid"] == _uid(hosts[0])
        assert slow(0.1, "~/again") == "done"  # the link is back: node 1 answers again
        # the head's answers named node 1: the next calls go to it directly, through this
        # process's own tunnel; a link cut under one fails it (it may have run: not sent again),
        # and the calls after it go through the head until the node is back
        seen = len(_records(cluster.client, "slow"))
        assert slow(0.1, "~/direct") == "done"
        assert cluster.client.router.routes["slow"] == (1, "slow")
        outcome.clear()
        hosts[1].ssh("rm -f ~/slow-started")
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        wait_until(lambda: hosts[1].ssh("test -f ~/slow-started", check=False).returncode == 0, 60,
                   "the direct call to start on node 1")
        assert len(_records(cluster.client, "slow")) == seen  # the head saw neither
        hosts[1].link_down()
        try:
            thread.join(120)  # the ssh keepalive ends this process's tunnel to node 1
            assert not thread.is_alive(), "the direct call hung after node 1's link was cut"
            assert isinstance(outcome.get("error"), rh.ConnectionError), outcome
            with pytest.raises(rh.ConnectionError, match="node 1"):  # through the head now
                slow(0.1, "~/cut")
        finally:
            hosts[1].link_up()
        assert slow(0.1, "~/back") == "done"  # through the head, while the node counts as down
        assert len(_records(cluster.client, "slow")) > seen  # "back" went through the head
    finally:
        cluster.teardown()
