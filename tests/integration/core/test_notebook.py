"""``cluster.notebook()`` / ``fn.notebook()`` (JupyterLab on the cluster, reached through the
tunnel), checked through Jupyter's REST API and a kernel; Ctrl-C stops it and its kernels on the
node; ``cluster.ssh()`` and ``tether ssh`` fed a shell session through a terminal. On the local
cluster and on an SSH test host (one cluster of each for the module)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
from cli_support import TETHER, cli_env
from runhouse_code import add3

import tether as rh
from tether import state

pytest.importorskip("jupyterlab", reason="cluster.notebook() needs tether[notebook] (JupyterLab) here")
websocket = pytest.importorskip("websocket", reason="the kernel check speaks to Jupyter over websocket-client")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=["local", "ssh"])
def cluster(request):
    """One cluster per kind for the module: a local one, and one on an SSH test host."""
    name = f"nb-{request.param}-{uuid.uuid4().hex[:6]}"
    if request.param == "local":
        made = rh.cluster(name=name, launcher="local")
    else:
        host = request.getfixturevalue("ssh_hosts")[0]
        made = rh.cluster(name=name, ips=[host.ip], ssh_creds=host.ssh_creds())
    made.up_if_not().save()  # saved: the child processes and the CLI find it by name
    yield made
    made.teardown()


def _marked(cluster: rh.Cluster, mark: str) -> list[int]:
    """Processes on the cluster's node whose environment holds ``mark`` (e.g. ``KEY=value``)."""
    code = ("import os\nfound = []\nfor p in os.listdir('/proc'):\n"
            "    try:\n"
            f"        if p.isdigit() and {mark.encode()!r} in open('/proc/%s/environ' % p, 'rb').read().split(b'\\0'):\n"
            "            found.append(int(p))\n"
            "    except OSError:\n        pass\nprint(found)")
    (code_, out, err), = cluster.run_python([code], stream_logs=False)
    assert code_ == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _get(nb, path: str) -> bytes:
    request = urllib.request.Request(nb.base_url + path, headers={"Authorization": f"token {nb.token}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        return resp.read()


def _execute(nb, kernel_id: str, code: str) -> str:
    """Run ``code`` in a kernel over Jupyter's websocket channel; what it printed."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{nb.local_port}/api/kernels/{kernel_id}/channels",
                                     header=[f"Authorization: token {nb.token}"], timeout=60)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False}}))
        printed, status = [], None
        while status != "idle":
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                printed.append(msg["content"]["text"])
            elif kind == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif kind == "status":
                status = msg["content"]["execution_state"]
        return "".join(printed)
    finally:
        ws.close()


def test_fn_notebook_rest_api_and_a_kernel(cluster, tmp_path):
    env = rh.env(name=f"nb-env-{uuid.uuid4().hex[:6]}", env_vars={"NB_CHECK": "from-the-env"})
    remote_add = rh.function(add3).to(cluster, env=env)
    package = tmp_path / "pkg"  # sent to the node, edited in the notebook, copied back at the end
    package.mkdir()
    (package / "keep.py").write_text("kept = True\n")
    # persist=True (detached on the node, stopped by the handle) on the local cluster; on the SSH
    # host, Jupyter lives as long as the request that started it (as in the Ctrl-C test)
    persist = cluster.launcher_name == "local"
    with remote_add.notebook(block=False, port_forward=18888, persist=persist,  # Runhouse's fn.notebook()
                             sync_package_on_close=str(package)) as nb:
        assert nb.url == f"http://127.0.0.1:{nb.local_port}/lab?token={nb.token}"
        if cluster.launcher_name == "ssh":  # a local port forwarded to the node's
            assert nb._tunnel is not None and nb._tunnel.remote_port == nb.remote_port
        assert 18888 <= nb.local_port < 18898  # port_forward, or one of the next free ones
        assert "started" in nb.api("GET", "/api/status")
        # the UI: the page and its script (data files of JupyterLab's wheel, under the env's share/)
        page = _get(nb, "/lab").decode()
        script = re.search(r'src="(/static/lab/[^"]+)"', page).group(1)
        assert len(_get(nb, script)) > 10_000
        with pytest.raises(urllib.error.HTTPError) as refused:  # the token is required
            urllib.request.urlopen(f"{nb.base_url}/api/status", timeout=10)
        assert refused.value.code == 403

        # a file written through the contents API is on the node
        name = f"nb-{uuid.uuid4().hex[:6]}.py"
        nb.api("PUT", f"/api/contents/{name}", {"type": "file", "format": "text", "content": "x = 1\n"})
        listing = {f["name"] for f in nb.api("GET", "/api/contents")["content"]}
        assert {"keep.py", name} <= listing  # Jupyter serves the package's copy on the node
        (code, out, _), = cluster.run_bash([f"cat {nb.root_dir}/{name}"], stream_logs=False)
        assert (code, out) == (0, "x = 1\n")

        # a kernel runs on the node, in the cluster's default env, with the fn's env vars
        kernel = nb.api("POST", "/api/kernels", {"name": "python3"})
        printed = _execute(nb, kernel["id"], "import os, sys; print(os.environ['NB_CHECK'], sys.executable)")
        word, exe = printed.split()
        (_, daemon_python, _), = cluster.run_python(["import sys; print(sys.executable)"], stream_logs=False)
        assert (word, exe) == ("from-the-env", daemon_python.strip())
        assert len(_marked(cluster, f"TETHER_NOTEBOOK={nb.id}")) >= 2  # the server and its kernel
    # stopped: the package's change is here, no process of it is left on the node, the tunnel is closed
    assert (package / name).read_text() == "x = 1\n"
    assert _marked(cluster, f"TETHER_NOTEBOOK={nb.id}") == []
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{nb.base_url}/api/status", timeout=5)


CHILD = """
import sys
import tether as rh
rh.cluster(name=sys.argv[1]).notebook()
"""


def test_ctrl_c_stops_the_notebook_on_the_cluster(cluster):
    # `cluster.notebook()` in a Python process on the local cluster; `tether notebook NAME` (the
    # same call) on the SSH host, whose tunnel closes with it
    argv = ([sys.executable, "-c", CHILD, cluster.name] if cluster.launcher_name == "local"
            else [str(TETHER), "notebook", cluster.name, "--port", "19888"])
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())
    try:
        url = None
        deadline = time.monotonic() + 120
        seen = []
        while url is None and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.strip().startswith("http://127.0.0.1:"):
                url = line.strip()
        assert url, "".join(seen)
        token = url.split("token=")[1]
        base = url.split("/lab?")[0]
        request = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
        assert _marked(cluster, f"JUPYTER_TOKEN={token}")  # Jupyter runs on the node

        child.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, "".join(seen) + rest
    assert "Stopping Jupyter" in rest
    assert _marked(cluster, f"JUPYTER_TOKEN={token}") == []  # gone from the node
    with pytest.raises(OSError):  # and the tunnel (or the local server) with it
        urllib.request.urlopen(f"{base}/api/status", timeout=5)


# -- cluster.ssh() and `tether ssh` ------------------------------------------------------------------


def _in_a_terminal(argv: list[str], typed: bytes, timeout: float = 60) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its stdin/stdout, type ``typed``; (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.execve(argv[0], argv, cli_env())
    os.write(fd, typed)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            output += data
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


SSH_CHILD = "import sys, tether as rh; sys.exit(rh.cluster(name=sys.argv[1]).ssh())"


def test_cluster_ssh_and_tether_ssh_open_a_shell(cluster):
    marker = uuid.uuid4().hex[:8]
    typed = f"echo hi-{marker}-$((6 * 7)); exit 3\n".encode()
    for argv in ([sys.executable, "-c", SSH_CHILD, cluster.name], [str(TETHER), "ssh", cluster.name]):
        code, output = _in_a_terminal(argv, typed)
        assert f"hi-{marker}-42" in output, output  # the shell ran what was typed...
        assert code == 3, output  # ...and its exit code is the command's
    if cluster.launcher_name == "local":  # this machine: a shell here, in the cluster's state dir
        assert cluster.ssh(command=f'test "$PWD" = "{state.cluster_dir(cluster.name)}"') == 0
    else:
        assert cluster.ssh(command="test -d ~/.tether/venv") == 0
