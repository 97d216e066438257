"""Token rotation (``cluster.rotate_token()``): the daemons switch to a new token at once, the
old one is refused with a 401 that says it was rotated, this process's handles carry on with the
new one, and another process that held the old one is told to reconnect and then works.

A local cluster, and an SSH cluster of two test hosts (the head rotates its node's token too).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest
import remote_code
from placed_code import cluster_of, importable

import tether as rh
from tether import state
from tether.client.daemon_client import DaemonClient

pytestmark = pytest.mark.timeout(300)

# Another process: it connects, waits for a line on stdin (the rotation happens meanwhile), then
# calls with the token it holds, reconnects, and calls again.
OTHER = textwrap.dedent("""
    import sys, tether as rh
    cluster = rh.cluster(name=sys.argv[1], launcher="local")
    add = cluster.get(sys.argv[2])
    print("before", add(1, 1, stream_logs=False), flush=True)
    sys.stdin.readline()
    try:
        add(2, 2, stream_logs=False)
        print("old token still accepted", flush=True)
    except rh.AuthenticationError as exc:
        print("refused:", exc, flush=True)
    cluster.up_if_not()
    print("after reconnect", add(3, 3, stream_logs=False), flush=True)
""")


def _refusal(host: str, port: int, token: str, cluster: str) -> str:
    client = DaemonClient(host, port, token, cluster)
    try:
        with pytest.raises(rh.AuthenticationError) as info:
            client.health()
    finally:
        client.close()
    return str(info.value)


def test_rotating_a_local_clusters_token(make_cluster):
    cluster = make_cluster()
    add = rh.function(remote_code.add).to(cluster, name="adder")
    folder = state.cluster_dir(cluster.name)
    old = state.read_token(folder)
    other = subprocess.Popen([sys.executable, "-c", OTHER, cluster.name, "adder"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "TETHER_HOME": str(state.tether_home())})
    try:
        assert other.stdout.readline().strip() == "before 2"

        cluster.rotate_token()

        new = state.read_token(folder)
        assert new and new != old
        assert stat.S_IMODE(os.stat(folder / "token").st_mode) == 0o600
        assert add(20, 22) == 42  # this process's handles picked the new token up
        assert cluster.get("adder")(1, 2) == 3
        endpoint = cluster.launcher.endpoint(cluster)
        message = _refusal(endpoint.host, endpoint.port, old, cluster.name)
        assert "rotated" in message and "up_if_not()" in message
        assert "missing or wrong" in _refusal(endpoint.host, endpoint.port, "never-a-token", cluster.name)

        out, err = other.communicate("go\n", timeout=60)
    finally:
        if other.poll() is None:
            other.kill()
    lines = out.splitlines()
    assert lines[0].startswith("refused:") and "was rotated" in lines[0] and "up_if_not()" in lines[0], (out, err)
    assert lines[1] == "after reconnect 6", (out, err)
    assert add(1, 1) == 2  # the daemon kept serving throughout


def test_rotating_a_local_cluster_that_is_down_writes_a_new_token(make_cluster):
    cluster = make_cluster()
    folder = state.cluster_dir(cluster.name)
    old = state.read_token(folder)
    cluster.teardown()
    cluster.rotate_token()
    assert state.read_token(folder) not in (None, old)
    add = rh.function(remote_code.add).to(cluster)  # the next daemon starts with the new token
    assert add(1, 1) == 2
    assert cluster.launcher.endpoint(cluster).token == state.read_token(folder)


# -- an SSH cluster: head and node -----------------------------------------------------------------

CODE = '''
def where(tag):
    import os
    return os.getuid(), tag
'''


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    with importable(tmp_path_factory.mktemp("rotate"), "rotateplaced", CODE) as module:
        yield module


def _records(cluster) -> list[dict]:
    return state.read_json(state.cluster_dir(cluster.name) / "nodes.json")["nodes"]


def _token_on(host, cluster) -> str:
    return host.ssh(f"cat ~/.tether/clusters/{cluster.name}/token").stdout.strip()


def test_rotating_an_ssh_clusters_tokens_rotates_every_node(ssh_hosts, placed):
    cluster = cluster_of(ssh_hosts, "rotate")
    try:
        far = rh.function(placed.where).to(cluster, env=rh.env(name="far", compute={"node_idx": 1}))
        near = rh.function(placed.where).to(cluster, name="near")
        assert far("a")[1] == "a" and near("b")[1] == "b"
        assert cluster.run_bash("echo node1", node=1)[0][1] == "node1\n"  # a tunnel to node 1 too
        before = _records(cluster)
        head_old, node_old = before[0]["token"], before[1]["token"]

        cluster.rotate_token()

        after = _records(cluster)
        assert after[0]["token"] not in (head_old, None) and after[1]["token"] not in (node_old, None)
        assert _token_on(ssh_hosts[0], cluster) == after[0]["token"]  # each daemon wrote its own
        assert _token_on(ssh_hosts[1], cluster) == after[1]["token"]
        assert far("forwarded with the node's new token")[1] == "forwarded with the node's new token"
        assert near("c")[1] == "c"
        assert cluster.run_bash("echo again", node=1)[0][1] == "again\n"
        head = cluster.launcher.endpoint(cluster)
        assert "rotated" in _refusal(head.host, head.port, head_old, cluster.name)
        node = cluster.launcher.node_endpoint(cluster, 1)
        assert "rotated" in _refusal(node.host, node.port, node_old, cluster.name)

        # the command line, in another process: this process's handle is told, then reconnects
        cluster.save()
        cli = subprocess.run([os.path.join(os.path.dirname(sys.executable), "tether"), "daemon",
                              "rotate-token", "--cluster", cluster.name], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "TETHER_HOME": str(state.tether_home())})
        assert cli.returncode == 0, cli.stderr
        assert "Rotated the token" in cli.stdout
        with pytest.raises(rh.AuthenticationError, match="rotated"):
            near("d")
        cluster.up_if_not()
        assert near("e")[1] == "e" and far("f")[1] == "f"
        assert _records(cluster)[1]["token"] == _token_on(ssh_hosts[1], cluster) != after[1]["token"]

        # a node that refuses (here: the head holds a wrong token for it) keeps its token; the
        # rest is rotated, and the error names the node
        node1 = _records(cluster)[1]
        table = {"index": 1, "host": node1["cluster_address"][0], "port": node1["cluster_address"][1],
                 "label": node1["ip"], "fingerprint": node1["fingerprint"]}
        cluster.client.request_json("POST", "/_tether/nodes", body={"nodes": [{**table, "token": "wrong"}]})
        head_before = _records(cluster)[0]["token"]
        with pytest.raises(rh.ConnectionError, match="did not rotate its token") as info:
            cluster.rotate_token()
        assert "node 1" in str(info.value) and ssh_hosts[1].ip in str(info.value)
        assert _records(cluster)[0]["token"] != head_before  # the head was rotated all the same
        assert _token_on(ssh_hosts[1], cluster) == node1["token"] == _records(cluster)[1]["token"]
        assert near("g")[1] == "g"
        cluster.client.request_json("POST", "/_tether/nodes", body={"nodes": [{**table, "token": node1["token"]}]})
        assert far("h")[1] == "h"
    finally:
        cluster.teardown()

