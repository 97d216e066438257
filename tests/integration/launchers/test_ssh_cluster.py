"""SSH clusters on test hosts: real sshd, rsync, daemons; nothing reaches a node but SSH."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from hosts import PASSWORD, running_daemon
from process_helpers import wait_until

import tether as rh

pytestmark = pytest.mark.timeout(300)

WHERE = """
import os, sys

def where(tag):
    import tether
    print(f"hello from {{os.getuid()}} {{tag}}", flush=True)
    return {{"module": __file__, "tether": os.path.realpath(tether.__file__),
             "python": sys.executable, "uid": os.getuid(), "value": {value!r}}}

def size(data):
    return len(data), os.path.exists("/tmp/tether-caller-marker")

def slow(seconds, marker=None):
    import time
    if marker:
        open(os.path.expanduser(marker), "w").close()
    time.sleep(seconds)
    return "done"
"""


@pytest.fixture
def remote_pkg(project):
    """A package in a throwaway project: (package name, write(value)), imported from here."""
    pkg = project.module_name("sshpkg")
    project.write(f"{pkg}/__init__.py", "")
    project.write(f"{pkg}/helpers.py", "HELP = 1\n")

    def write(value: str) -> None:
        project.write(f"{pkg}/mod.py", WHERE.format(value=value))

    write("v1")
    return pkg, write


def _fn(pkg: str, name: str):
    module = importlib.import_module(f"{pkg}.mod")
    return getattr(importlib.reload(module), name)


def _stamp(host) -> dict:
    return json.loads(host.ssh("cat ~/.tether/venv/.tether-stamp").stdout)


def test_single_node_deploy_call_and_logs(ssh_hosts, ssh_cluster, remote_pkg, capfd):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host)
    pkg, _ = remote_pkg
    where = rh.function(_fn(pkg, "where")).to(cluster)
    got = where("first")
    assert f"hello from {got['uid']} first" in capfd.readouterr().out  # the node's print streamed back
    assert got["uid"] != os.getuid()  # it ran as the host's user, not as us
    # the code came by rsync into the node's ~/.tether, tether from the node's own venv:
    assert got["module"] == f"{host.home}/{cluster.last_sync[0].remote_dir}/{pkg}/mod.py"
    assert got["tether"].startswith(f"{host.home}/.tether/venv/")
    assert got["python"] == f"{host.home}/.tether/venv/bin/python"
    assert sorted(cluster.last_sync[0].files) == sorted(
        ["pyproject.toml", f"{pkg}/__init__.py", f"{pkg}/helpers.py", f"{pkg}/mod.py"])
    [(code, out, _)] = cluster.run_bash(["hostname -I; whoami"])
    assert code == 0 and out.split() == [host.ip, host.user]


def test_big_arguments_and_scratch_files_stay_apart(ssh_hosts, ssh_cluster, remote_pkg):
    """A 3 MB argument crosses the tunnel; the node sees its own /tmp, not the caller's."""
    open("/tmp/tether-caller-marker", "w").close()
    try:
        cluster = ssh_cluster(ssh_hosts[0])
        pkg, _ = remote_pkg
        size = rh.function(_fn(pkg, "size")).to(cluster)
        assert size(b"x" * 3_000_000) == (3_000_000, False)
    finally:
        os.unlink("/tmp/tether-caller-marker")


def test_redeploy_sends_only_the_changed_file(ssh_hosts, ssh_cluster, remote_pkg):
    cluster = ssh_cluster(ssh_hosts[0])
    pkg, write = remote_pkg
    assert rh.function(_fn(pkg, "where")).to(cluster)("a")["value"] == "v1"
    rh.function(_fn(pkg, "where")).to(cluster)  # unchanged: nothing sent
    assert cluster.last_sync[0].skipped or not cluster.last_sync[0].changed
    write("v2")  # same size, likely within the same second: rsync compares nanoseconds
    where = rh.function(_fn(pkg, "where")).to(cluster)
    assert cluster.last_sync[0].files == [f"{pkg}/mod.py"]
    assert where("b")["value"] == "v2"


def test_git_project_honours_gitignore(ssh_hosts, ssh_cluster, remote_pkg, project):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host)
    pkg, _ = remote_pkg
    project.write(".gitignore", "secret.txt\nbuild/\n")
    project.write("secret.txt", "do not ship\n")
    project.write("build/big.bin", "x" * 1000)
    project.write("gone.py", "")
    git = ["git", "-C", str(project.root), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    rh.function(_fn(pkg, "where")).to(cluster)
    remote = f"~/{cluster.last_sync[0].remote_dir}"
    listing = host.ssh(f"cd {remote} && find . -type f | sort").stdout.split()
    assert "./secret.txt" not in listing and "./build/big.bin" not in listing
    assert {"./.gitignore", "./gone.py", f"./{pkg}/mod.py"} <= set(listing)
    (project.root / "gone.py").unlink()  # a deleted tracked file is deleted on the node too
    project.write("untracked.py", "")  # an untracked, unignored file is sent
    rh.function(_fn(pkg, "where")).to(cluster)
    assert cluster.last_sync[0].files == ["untracked.py"]
    assert cluster.last_sync[0].deleted == ["gone.py"]
    listing = host.ssh(f"cd {remote} && find . -type f | sort").stdout.split()
    assert "./gone.py" not in listing and "./untracked.py" in listing


def test_second_up_if_not_is_a_no_op(ssh_hosts, ssh_cluster):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host).up_if_not()
    stamp, pid = _stamp(host), running_daemon(host, cluster.name)
    assert pid is not None and stamp["tether"] == rh.__version__
    cluster.up_if_not()
    fresh = rh.Cluster(cluster.name, ips=cluster.spec["ips"], ssh_creds=host.ssh_creds())
    fresh.up_if_not()  # a new handle: finds the running daemon and reuses the tunnel
    assert fresh.client.port == cluster.client.port
    assert _stamp(host) == stamp  # not reinstalled ("installed" is the install's time)
    assert running_daemon(host, cluster.name) == pid
    assert fresh.status()["pid"] == pid


def test_reattach_by_name_from_a_new_process(ssh_hosts, ssh_cluster, remote_pkg, tether_home):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host)
    pkg, _ = remote_pkg
    rh.function(_fn(pkg, "where")).to(cluster, name="where_svc")
    cluster.save()
    pid = cluster.status()["pid"]
    tunnels = json.loads((tether_home / "clusters" / cluster.name / "tunnels.json").read_text())
    os.kill(tunnels[host.ip]["pid"], 15)  # the tunnel is gone: the new process must open one
    program = textwrap.dedent(f"""
        import json, tether as rh
        cluster = rh.cluster(name={cluster.name!r})
        print(json.dumps([cluster.get("where_svc")("again", stream_logs=False)["uid"],
                          cluster.status()["pid"]]))
    """)
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TETHER_HOME": str(tether_home)})
    assert proc.returncode == 0, proc.stderr
    uid, new_pid = json.loads(proc.stdout.strip().splitlines()[-1])
    assert new_pid == pid  # the same daemon: reattached, not restarted
    assert uid == int(host.ssh("id -u").stdout)


def test_two_fresh_nodes_bootstrap_and_answer_run_bash_all(test_hosts, ssh_cluster):
    fresh = test_hosts.create(2)  # nothing installed on either: both bootstrap, in parallel
    cluster = ssh_cluster(fresh)
    answers = cluster.run_bash(["hostname -I; whoami"], node="all")
    assert [out.split() for [(code, out, _)] in answers] == [[h.ip, h.user] for h in fresh]
    for host in fresh:
        assert running_daemon(host, cluster.name) is not None
        assert _stamp(host)["tether"] == rh.__version__
    [(_, out, _)] = cluster.run_bash("whoami", node=fresh[1].ip)
    assert out.strip() == fresh[1].user
    [(_, out, _)] = cluster.run_bash("whoami", node=1)
    assert out.strip() == fresh[1].user
    nodes = cluster.status()["nodes"]
    assert [(n["ip"], n["up"]) for n in nodes] == [(h.ip, True) for h in fresh]
    cluster.teardown()
    assert all(running_daemon(h, cluster.name) is None for h in fresh)


def test_teardown_stops_daemons_and_keeps_the_machine(ssh_hosts, ssh_cluster):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host).up_if_not()
    assert cluster.is_up()
    cluster.teardown()
    assert not cluster.is_up()
    assert running_daemon(host, cluster.name) is None
    assert _stamp(host)["tether"] == rh.__version__  # the venv stays for the next up
    cluster.up_if_not()
    assert running_daemon(host, cluster.name) is not None


def test_password_login(ssh_hosts, ssh_cluster, tether_home):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host, creds={"ssh_user": host.user, "password": PASSWORD})
    [(code, out, _)] = cluster.run_bash("whoami")
    assert (code, out.strip()) == (0, host.user)
    cluster.save()
    assert PASSWORD not in (tether_home / "resources" / f"{cluster.name}.json").read_text()
    kept = tether_home / "clusters" / cluster.name / "ssh_password"
    assert kept.read_text() == PASSWORD and kept.stat().st_mode & 0o077 == 0
    # another process, whose tunnel must be opened anew: the kept password logs it in
    tunnels = json.loads((tether_home / "clusters" / cluster.name / "tunnels.json").read_text())
    os.kill(tunnels[host.ip]["pid"], 15)
    program = f"import tether as rh; print(rh.cluster(name={cluster.name!r}).run_bash('whoami', stream_logs=False))"
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TETHER_HOME": str(tether_home)})
    assert proc.returncode == 0 and host.user in proc.stdout, proc.stderr


def test_passphrase_key_through_ssh_agent(ssh_hosts, ssh_cluster, test_hosts, tmp_path, monkeypatch):
    host = ssh_hosts[0]
    key = test_hosts.make_key(f"pass_key_{tmp_path.name}", passphrase="s3cret phrase")
    host.ssh(f"echo '{key.with_suffix('.pub').read_text().strip()}' >> ~/.ssh/authorized_keys")
    without = ssh_cluster(host, creds={"ssh_user": host.user, "ssh_private_key": str(key)})
    with pytest.raises(rh.AuthenticationError, match=host.ip):
        without.up_if_not()  # no agent: the passphrase cannot be asked for
    sock = tmp_path / "agent.sock"
    agent = subprocess.run(["ssh-agent", "-a", str(sock), "-s"], capture_output=True, text=True, check=True)
    agent_pid = int(agent.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        askpass = tmp_path / "askpass.sh"
        askpass.write_text("#!/bin/sh\necho 's3cret phrase'\n")
        askpass.chmod(0o700)
        subprocess.run(["ssh-add", str(key)], check=True, capture_output=True, stdin=subprocess.DEVNULL,
                       env={**os.environ, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(askpass),
                            "SSH_ASKPASS_REQUIRE": "force"})
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        cluster = ssh_cluster(host, creds={"ssh_user": host.user, "ssh_private_key": str(key)})
        [(code, out, _)] = cluster.run_bash("whoami")
        assert (code, out.strip()) == (0, host.user)
        cluster.teardown()
    finally:
        os.kill(agent_pid, 15)


def test_rsync_up_and_down_ssh_and_a_tunnel(ssh_hosts, ssh_cluster, tmp_path):
    import httpx

    host = ssh_hosts[0]
    cluster = ssh_cluster(host).up_if_not()
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "data.txt").write_text("payload\n")
    cluster.rsync(str(tmp_path / "up"), "incoming", up=True, contents=True)
    [(_, out, _)] = cluster.run_bash("cat ~/incoming/data.txt")
    assert out == "payload\n"
    cluster.run_bash("echo back > ~/incoming/back.txt")
    cluster.rsync("incoming/back.txt", str(tmp_path / "back.txt"), up=False)
    assert (tmp_path / "back.txt").read_text() == "back\n"
    assert cluster.ssh(command="test -f ~/incoming/back.txt && exit 7") == 7  # the ssh binary, as a shell
    port = cluster.status()["nodes"][0]["port"]
    with cluster.ssh_tunnel(0, port) as tunnel:
        resp = httpx.get(f"http://127.0.0.1:{tunnel.local_port}/health",
                         headers={"Authorization": f"Bearer {cluster.client.token}"})
        assert resp.json()["pid"] == running_daemon(host, cluster.name)


def test_install_packages_from_a_wheel(ssh_hosts, ssh_cluster, tmp_path):
    import importlib.metadata as md

    from tether.launchers.ssh import wheelhouse

    host = ssh_hosts[0]
    cluster = ssh_cluster(host).up_if_not()
    wheel = wheelhouse._repack(md.distribution("iniconfig"), tmp_path)  # no index in a test host
    cluster.rsync(str(wheel), wheel.name)
    cluster.install_packages([f"{host.home}/{wheel.name}"])
    [(code, out, err)] = cluster.run_python(["import iniconfig; print(iniconfig.__file__)"])
    assert code == 0, err
    assert out.startswith(f"{host.home}/.tether/venv/")
    host.ssh(f"~/.tether/venv/bin/python -m pip uninstall -y -q iniconfig; rm {wheel.name}")


def test_autostop_stops_an_idle_daemon(ssh_hosts, ssh_cluster, remote_pkg):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host, autostop_mins=0.05)  # 3 s
    pkg, _ = remote_pkg
    slow = rh.function(_fn(pkg, "slow")).to(cluster)
    assert slow(5) == "done"  # in flight for longer than the autostop: not idle
    wait_until(lambda: running_daemon(host, cluster.name) is None, timeout=60, what="autostop")
    wait_until(lambda: not cluster.is_up(), timeout=30, what="the tunnel to end with its daemon")
    cluster.up_if_not()  # up again: a fresh daemon, no reinstall
    assert running_daemon(host, cluster.name) is not None


def test_autostop_set_on_a_running_cluster(ssh_hosts, ssh_cluster):
    host = ssh_hosts[0]
    cluster = ssh_cluster(host).up_if_not()
    pid = running_daemon(host, cluster.name)
    assert cluster.status()["autostop_mins"] == -1
    cluster.autostop_mins = 0.02  # rewritten on the node; the daemon re-reads it
    wait_until(lambda: running_daemon(host, cluster.name) is None, timeout=60, what="the new autostop")
    assert pid is not None


def test_another_release_serves_and_another_protocol_is_a_mismatch_fixed_by_restart(ssh_hosts, ssh_cluster):
    host = ssh_hosts[1]
    cluster = ssh_cluster(host).up_if_not()
    cluster.teardown()
    # An older tether on the node, as another caller would have left it: its version file, its
    # stamp, and its daemon running. It speaks this protocol, so it serves this caller as it is.
    site = host.ssh("~/.tether/venv/bin/python -c 'import tether, os; print(os.path.dirname(tether.__file__))'").stdout.strip()
    host.ssh(f"sed -i 's/^__version__ = .*/__version__ = \"0.0.1\"/' {site}/_version.py && "
             "sed -i 's/\"tether\": \"[^\"]*\"/\"tether\": \"0.0.1\"/' ~/.tether/venv/.tether-stamp && "
             f"~/.tether/venv/bin/python -m tether.launchers.ssh.on_node up --cluster {cluster.name}")
    old = rh.Cluster(cluster.name, ips=cluster.spec["ips"], ssh_creds=host.ssh_creds())
    assert old.up_if_not().status()["tether"] == "0.0.1"
    assert old.run_bash(["echo served"])[0][1].strip() == "served"
    old.teardown()

    # ... and one that speaks another protocol is refused, with the fix
    host.ssh(f"sed -i 's/^PROTOCOL_VERSION = .*/PROTOCOL_VERSION = 1/' {site}/protocol/wire.py && "
             f"~/.tether/venv/bin/python -m tether.launchers.ssh.on_node up --cluster {cluster.name}")
    older = rh.Cluster(cluster.name, ips=cluster.spec["ips"], ssh_creds=host.ssh_creds())
    with pytest.raises(rh.VersionMismatchError, match=rf"{host.ip}.*0\.0\.1.*protocol 1.*restart_server") as info:
        older.up_if_not()
    assert info.value.node == host.ip and info.value.daemon_protocol == 1
    older.restart_server()
    assert older.status()["tether"] == rh.__version__
    assert _stamp(host)["tether"] == rh.__version__


def test_link_cut_mid_call_is_a_connection_error(ssh_hosts, ssh_cluster, remote_pkg, monkeypatch):
    host = ssh_hosts[1]
    monkeypatch.setenv("TETHER_SSH_ALIVE_INTERVAL", "2")  # the tunnel gives up after ~6 s, not ~15
    cluster = ssh_cluster(host)
    pkg, _ = remote_pkg
    slow = rh.function(_fn(pkg, "slow")).to(cluster)
    outcome: dict = {}

    def call():
        try:
            outcome["result"] = slow(600, marker="~/slow-started")
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    host.ssh("rm -f ~/slow-started")
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    wait_until(lambda: host.ssh("test -f ~/slow-started", check=False).returncode == 0,
               timeout=60, what="the call to start on the node")
    host.link_down()
    try:
        thread.join(120)  # keepalives: the tunnel gives up after ~6 s, the read fails
        assert not thread.is_alive(), "the call hung after the link was cut"
    finally:
        host.link_up()
    assert isinstance(outcome.get("error"), rh.ConnectionError), outcome
    assert cluster.name in str(outcome["error"])
    cluster.up_if_not()  # the link is back: a new tunnel to the same daemon
    [(code, out, _)] = cluster.run_bash("whoami")
    assert (code, out.strip()) == (0, host.user)


def test_env_node_idx_past_the_last_node_is_refused(ssh_hosts, ssh_cluster, remote_pkg):
    env = rh.env(name="placed", compute={"node_idx": 1})
    assert rh.Env.from_config(env.config()).compute == {"node_idx": 1}
    cluster = ssh_cluster(ssh_hosts)
    pkg, _ = remote_pkg
    with pytest.raises(rh.ConfigError, match="has 2 node"):
        rh.function(_fn(pkg, "where")).to(cluster, env=rh.env(name="far", compute={"node_idx": 5}))
    assert rh.function(_fn(pkg, "where")).to(cluster, env=rh.env(name="head", compute={"node_idx": 0}))("x")


def test_install_from_the_nodes_own_index(test_hosts, ssh_cluster, tmp_path):
    """install_from='index': only tether's (and pip's, and uv's) wheels are sent; the dependencies come from
    the index the node's pip is configured with (here a mirror served on the test network)."""
    from tether.launchers.ssh import wheelhouse

    [host] = test_hosts.create(1)
    node = wheelhouse.NodePython("/usr/bin/python3", (3, 11, 2), "x86_64", ("glibc", "2.36"))
    wheels, _ = wheelhouse.collect(node, host.ip)
    for wheel in wheels:
        name = wheelhouse._canonical(wheel.name.split("-")[0])
        (tmp_path / "simple" / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "simple" / name / wheel.name).write_bytes(wheel.read_bytes())
    mirror = f"{test_hosts.subnet}.1"
    port = rh_free_port(mirror)
    log = tmp_path / "mirror.log"
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", mirror, str(port)],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    try:
        host.ssh(f"mkdir -p ~/.config/pip && printf '[global]\\nindex-url = http://{mirror}:{port}/simple\\n"
                 f"trusted-host = {mirror}\\n' > ~/.config/pip/pip.conf")
        cluster = ssh_cluster(host, install_from="index")
        [(code, out, _)] = cluster.run_bash("whoami")
        assert (code, out.strip()) == (0, host.user)
        shipped = host.ssh("ls ~/.tether/wheels").stdout.split()
        uv = ["uv"] if wheelhouse._installed("uv") else []  # shipped with them when installed here
        assert sorted(w.split("-")[0] for w in shipped if w.endswith(".whl")) == ["pip", "tether", *uv]
        served = log.read_text()
        assert "GET /simple/cloudpickle/" in served and "GET /simple/fastapi/" in served
    finally:
        server.terminate()
        server.wait(10)


def rh_free_port(address: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]
