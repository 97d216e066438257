"""TLS, pinned by whoever connects: a daemon reached over the network without a tunnel (its
caller pins it), and the link from a multi-node SSH cluster's head to its other nodes (the head
pins each node's certificate).

The direct daemon runs here on 127.0.0.2 with ``--tls on`` (``direct_launcher``); the SSH tests
use two test hosts (head and node) and look at what crosses the node's network interface.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import uuid

import direct_launcher
import pytest
import remote_code
from placed_code import cluster_of, importable
from tls_support import Capture, Impostor, plain_http_answer, presented_fingerprint

import tether as rh
from tether import state
from tether.client.daemon_client import DaemonClient

pytestmark = pytest.mark.timeout(300)


# -- a daemon reached directly ---------------------------------------------------------------------


@pytest.fixture
def direct(tmp_path):
    """Factory: ``direct(pin=None, folder=None)`` -> a cluster of the direct launcher (its daemon
    on 127.0.0.2, TLS on); every daemon started is stopped after the test."""
    direct_launcher.register()
    made: list[rh.Cluster] = []

    def make(pin: str | None = None, folder=None) -> rh.Cluster:
        spec = {"state_dir": str(folder or tmp_path / f"d-{len(made)}")}
        if pin:
            spec["pin"] = pin
        cluster = rh.cluster(name=f"direct-{uuid.uuid4().hex[:6]}", launcher=direct_launcher.NAME, **spec)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.teardown()


def test_a_daemon_reached_directly_speaks_tls_pinned_to_its_certificate(direct):
    cluster = direct().up_if_not()
    folder = cluster.launcher._folder(cluster)
    record = state.read_daemon_record(folder)
    assert record["tls"] is True and len(record["fingerprint"]) == 64
    for name in ("tls.crt", "tls.key", "token"):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600, name
    # what the listener presents is the certificate the record names; plain HTTP gets no answer
    assert presented_fingerprint(record["host"], record["port"]) == record["fingerprint"]
    assert not plain_http_answer(record["host"], record["port"]).startswith(b"HTTP/")
    assert cluster.client.url.startswith("https://")

    add = rh.function(remote_code.add).to(cluster)
    echo = rh.function(remote_code.echo).to(cluster)
    assert add(1, 2) == 3
    conn = cluster.client._local.conn
    assert add(2, 2) == 4 and cluster.client._local.conn is conn  # the idle TLS connection is reused
    big = os.urandom(3 << 20)  # bigger than the client's buffer: sent part by part
    assert echo(big) == ((big,), {})
    count = rh.function(remote_code.count_up).to(cluster)
    assert list(count(4)) == [0, 1, 2, 3]
    assert cluster.run_bash("echo over tls") == [(0, "over tls\n", "")]

    async def many():
        return await asyncio.gather(*(add.aio(i, 1) for i in range(16)))

    assert asyncio.run(many()) == [i + 1 for i in range(16)]

    # a client that keeps an idle TLS connection open (the head's pool does) does not hold up a stop
    idle = DaemonClient(record["host"], record["port"], state.read_token(folder), cluster.name,
                        record["fingerprint"])
    assert idle.health()["status"] == "ok"
    cluster.teardown()
    assert not state.pid_alive(record["pid"]) and state.read_daemon_record(folder) is None
    assert "graceful shutdown exceeded" not in (folder / "daemon.log").read_text()
    idle.close()


def test_a_wrong_pin_is_refused_before_anything_is_sent(direct, tmp_path):
    good = direct().up_if_not()
    add = rh.function(remote_code.add).to(good)
    folder = good.launcher._folder(good)
    record = state.read_daemon_record(folder)

    wrong = direct(pin="ab" * 32, folder=folder)  # the same daemon, pinned to another certificate
    with pytest.raises(rh.ConnectionError, match="presented a TLS certificate") as info:
        wrong.client  # noqa: B018 - connecting checks the pin
    assert wrong.name in str(info.value) and "nothing was sent" in str(info.value)
    client = DaemonClient(record["host"], record["port"], state.read_token(folder), "wrong", "ab" * 32)
    with pytest.raises(rh.ConnectionError, match="presented a TLS certificate"):
        asyncio.run(client.acall(add.name, "call", (1, 1)))

    # a machine in the middle: another server, another certificate, on the address we dial
    token = state.read_token(folder)
    with Impostor(direct_launcher.HOST, tmp_path / "impostor") as impostor:
        fooled = DaemonClient(direct_launcher.HOST, impostor.port, token, "fooled", record["fingerprint"])
        with pytest.raises(rh.ConnectionError, match="presented a TLS certificate"):
            fooled.health()
        with pytest.raises(rh.ConnectionError, match="presented a TLS certificate"):
            asyncio.run(fooled.acall(add.name, "call", (1, 1)))
    assert impostor.handshakes >= 2
    assert impostor.connections and all(got == b"" for got in impostor.connections)  # not a byte: no token
    assert add(40, 2) == 42  # the daemon serves its rightful callers


def test_a_loopback_daemon_stays_plain(session_cluster):
    record = state.read_daemon_record(state.cluster_dir(session_cluster.name))
    assert record["tls"] is False and "fingerprint" not in record
    assert not (state.cluster_dir(session_cluster.name) / "tls.key").exists()
    assert session_cluster.client.url.startswith("http://")


# -- the head's link to the other nodes --------------------------------------------------------------

CODE = '''
def where(tag):
    import os
    return os.getuid(), tag
'''
ON_NODE_1 = rh.env(name="tls-node-1", compute={"node_idx": 1})


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    with importable(tmp_path_factory.mktemp("tls"), "tlsplaced", CODE) as module:
        yield module


@pytest.fixture(scope="module")
def pair(ssh_hosts):
    cluster = cluster_of(ssh_hosts, "tls")
    cluster.up_if_not()
    cluster.client.router = None  # the head's link to its node is tested: every call through it
    yield cluster
    cluster.teardown()


def _node_record(cluster) -> dict:
    return state.read_json(state.cluster_dir(cluster.name) / "nodes.json")["nodes"][1]


def _table(record: dict, **changes) -> dict:
    """The head's node table (``POST /_tether/nodes``) for node 1, as the launcher sends it."""
    node = {"index": 1, "host": record["cluster_address"][0], "port": record["cluster_address"][1],
            "token": record["token"], "label": record["ip"], "fingerprint": record["fingerprint"]}
    return {"nodes": [{**node, **changes}]}


def test_the_head_reaches_its_node_over_tls_and_nothing_crosses_in_clear(pair, ssh_hosts, placed):
    record = _node_record(pair)
    host, port = record["cluster_address"]
    assert record["cluster_tls"] is True and len(record["fingerprint"]) == 64
    assert pair.client.request_json("GET", "/_tether/nodes")["nodes"][0]["tls"] is True
    assert presented_fingerprint(host, port) == record["fingerprint"]
    assert not plain_http_answer(host, port).startswith(b"HTTP/")

    far = rh.function(placed.where).to(pair, env=ON_NODE_1, name="where-far")
    marker = f"secret-argument-{uuid.uuid4().hex}"
    with Capture(ssh_hosts[1].veth) as wire:
        for _ in range(3):
            assert far(marker)[1] == marker
    node_uid = int(ssh_hosts[1].ssh("id -u").stdout)
    assert far("x")[0] == node_uid
    assert wire.frames > 0 and b"\x17\x03\x03" in wire.data  # TLS application data went by
    assert record["token"].encode() not in wire.data  # the node's bearer token never in clear
    assert marker.encode() not in wire.data  # nor the call's arguments and results
    assert b"HTTP/1.1" not in wire.data


def _connections(host, port: int) -> int:
    """Sockets (any state) on ``host``'s side of its cluster port: one per connection made."""
    out = subprocess.run(["ip", "netns", "exec", host.netns, "ss", "-Htan", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return len([line for line in out.splitlines() if line.strip() and not line.startswith("LISTEN")])


def test_forwarded_calls_reuse_the_heads_connection_to_the_node(pair, ssh_hosts, placed):
    far = rh.function(placed.where).to(pair, env=ON_NODE_1, name="where-reuse")
    port = _node_record(pair)["cluster_address"][1]
    far("warm")
    before = _connections(ssh_hosts[1], port)
    for i in range(30):
        assert far(i)[1] == i
    assert _connections(ssh_hosts[1], port) - before <= 2  # not one TLS handshake per call


def test_a_wrong_pin_for_a_node_is_refused_naming_it_and_no_token_leaves(pair, ssh_hosts, test_hosts,
                                                                        placed, tmp_path):
    far = rh.function(placed.where).to(pair, env=ON_NODE_1, name="where-pinned")
    near = rh.function(placed.where).to(pair, name="where-near")
    record = _node_record(pair)
    try:
        # the node itself, pinned to another certificate
        pair.client.request_json("POST", "/_tether/nodes", body=_table(record, fingerprint="cd" * 32))
        with pytest.raises(rh.ConnectionError) as info:
            far("x")
        message = str(info.value)
        assert "node 1" in message and ssh_hosts[1].ip in message and "TLS" in message, message
        assert near("still here")[1] == "still here"  # the head serves its own objects

        # a machine in the middle answering on the node's behalf, with its own certificate
        bridge = f"{test_hosts.subnet}.1"
        with Impostor(bridge, tmp_path / "impostor") as impostor:
            pair.client.request_json("POST", "/_tether/nodes", body=_table(record, host=bridge,
                                                                          port=impostor.port))
            with pytest.raises(rh.ConnectionError, match="node 1"):
                far("x")
        assert impostor.handshakes >= 1
        assert impostor.connections and all(got == b"" for got in impostor.connections)  # no token

        with pytest.raises(rh.ConfigError, match="64 hex digits"):  # a malformed pin: a 400
            pair.client.request_json("POST", "/_tether/nodes", body=_table(record, fingerprint="nope"))
    finally:
        pair.client.request_json("POST", "/_tether/nodes", body=_table(record))
    assert far("back")[1] == "back"
