"""Shared memory (``/dev/shm``) when things go wrong (issue 10): a full file system, a caller
killed before it maps its result, a message naming a file tether did not make, and a caller and
daemon of different users. Each leaves nothing behind and the daemon serves on; nothing outside
the cluster's own folder is ever deleted.

These need root (a small tmpfs, a throwaway user); they skip with the reason otherwise.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import flow_code as fc
import numpy as np
import pytest
import remote_code as rc
from process_helpers import wait_until

import tether as rh
from tether import state
from tether.client.daemon_client import DaemonClient
from tether.protocol import wire

MiB = 1 << 20
ROOT = os.geteuid() == 0


def deploy(cluster, fn):
    return rh.function(fn).to(cluster, name=f"{fn.__name__}-{uuid.uuid4().hex[:6]}")


def others(folder: Path) -> list[str]:
    """Files of the folder besides the daemon's probe."""
    return sorted(p for p in os.listdir(folder) if p != "probe")


def assert_serving(cluster) -> None:
    echo = deploy(cluster, rc.echo)
    (back,), _ = echo(np.arange(MiB, dtype=np.uint8))
    assert back[-1] == (MiB - 1) % 256


@pytest.fixture
def tiny_shm(monkeypatch):
    """An 8 MiB tmpfs as the shared-memory root of the clusters made after it."""
    if not ROOT or not shutil.which("mount"):
        pytest.skip("needs root and mount(8) to make a small tmpfs")
    where = tempfile.mkdtemp(prefix="tether-tinyshm-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=1777", "tmpfs", where], check=True)
    monkeypatch.setenv("TETHER_SHM_ROOT", where)
    yield Path(where)
    subprocess.run(["umount", where], check=False)
    if os.path.ismount(where):
        subprocess.run(["umount", "-l", where], check=False)
    os.rmdir(where)


@pytest.fixture
def shm_cluster(tiny_shm, make_cluster):
    """A cluster whose shared memory is the tiny tmpfs (torn down before it is unmounted)."""
    cluster = make_cluster()
    assert cluster.client.shm is not None and Path(cluster.client.shm).parent == tiny_shm
    return cluster


def test_a_full_dev_shm_keeps_no_partial_file(shm_cluster, tiny_shm):
    """An argument and a result bigger than the free space: each write fails, removes its file,
    and the bytes go through the socket. Before, the partly written file stayed and the tmpfs
    stayed full."""
    folder = Path(shm_cluster.client.shm)
    echo = deploy(shm_cluster, rc.echo)
    big = np.arange(12 * MiB, dtype=np.uint8)
    (back,), _ = echo(big)  # the caller's write fails, then the worker's (its result)
    assert np.array_equal(back, big)
    del back
    assert others(folder) == []
    free = os.statvfs(tiny_shm)
    assert free.f_bavail * free.f_frsize > 7 * MiB
    owner = deploy(shm_cluster, rc.buffer_owner)
    assert owner(np.zeros(MiB, dtype=np.uint8)) == "mmap"  # shared memory still works
    assert_serving(shm_cluster)


def test_result_files_nobody_took_are_swept(make_cluster, monkeypatch, tmp_path):
    """A caller killed while its call runs never maps the result the daemon hands it: that link
    is removed after TETHER_SHM_HANDOUT_TTL seconds and counted in /_tether/status. The result
    the daemon keeps for fetching by id stays."""
    monkeypatch.setenv("TETHER_SHM_HANDOUT_TTL", "1")
    cluster = make_cluster()
    folder = Path(cluster.client.shm)
    slow = deploy(cluster, fc.slow_zeros)
    call_id = uuid.uuid4().hex
    c = cluster.client
    caller = textwrap.dedent(f"""
        import sys
        sys.path[:0] = {sys.path!r}
        from tether.client.daemon_client import DaemonClient
        client = DaemonClient({c.host!r}, {c.port}, {c.token!r})
        client.check_version()
        assert client.shm is not None
        print("calling", flush=True)
        client.call({slow.name!r}, "call", ({4 * MiB}, 1.5), call_id={call_id!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", caller], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "calling"
    time.sleep(0.5)
    proc.kill()  # mid-call: it will never map its result
    proc.wait()
    wait_until(lambda: any(n.endswith(".out") for n in os.listdir(folder)), 30, "the daemon to hand out the result")
    files = cluster.status()["shm_files"]
    assert files["handed_out"] + files["swept"] == 1  # (swept already, on a slow machine)
    wait_until(lambda: not any(n.endswith(".out") for n in os.listdir(folder)), 15, "the untaken result to be swept")
    files = cluster.status()["shm_files"]
    assert (files["handed_out"], files["swept"], files["swept_bytes"]) == (0, 1, 4 * MiB)
    assert cluster.result(call_id).nbytes == 4 * MiB  # the daemon's own copy, fetched by id
    zeros = deploy(cluster, rc.zeros)
    assert zeros(4 * MiB).nbytes == 4 * MiB  # a caller that maps in time is not swept
    time.sleep(1.5)
    assert cluster.status()["shm_files"]["swept"] == 1
    assert_serving(cluster)


BAD_NAMES = ["probe", "../decoy-{tag}", "{decoy}", ".probe", "decoy-{tag}", "0123456789ABCDEF01234567.buf",
             "0123456789abcdef01234567.probe", "0123456789abcdef01234567.buf/../../decoy-{tag}"]


def test_a_frame_name_must_be_one_tether_made(make_cluster, tmp_path):
    """A call naming the daemon's probe file (or any other file) as a shared frame is a 400 that
    names it; before, the worker deleted the probe and every later caller silently stopped using
    shared memory. Decoys outside the folder survive every try."""
    cluster = make_cluster()
    folder = Path(cluster.client.shm)
    tag = uuid.uuid4().hex[:8]
    decoys = [folder.parent / f"decoy-{tag}", tmp_path / "decoy"]
    for decoy in decoys:
        decoy.write_text("keep me")
    probe = (folder / "probe").read_text()
    echo = deploy(cluster, rc.echo)
    head = wire.dumps(((b"x",), {}))[0]
    for bad in BAD_NAMES:
        name = bad.format(tag=tag, decoy=decoys[1])
        listing = wire.json_frame([[1, name, 7]])
        body = wire.encode(wire.CALL, [head, b"", listing], 0, wire.SHARED | wire.OWNED)
        with pytest.raises(rh.ConfigError, match="bad shared frame name"):
            cluster.client.stream("POST", f"/{echo.name}/call", body,
                                  headers={wire.CALL_ID_HEADER: uuid.uuid4().hex})
    assert (folder / "probe").read_text() == probe
    assert all(decoy.read_text() == "keep me" for decoy in decoys)
    later = DaemonClient(cluster.client.host, cluster.client.port, cluster.client.token)
    later.check_version()
    assert later.shm == folder  # a later caller still uses shared memory
    assert_serving(cluster)
    decoys[0].unlink()


# -- a caller and a daemon of different users -----------------------------------------------------


@pytest.fixture
def other_user():
    """A throwaway Unix user, removed after the test."""
    if not ROOT or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("needs root, useradd(8) and setpriv(1) to run a daemon as another user")
    name = f"tt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _as(user) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


def _python_for(user) -> tuple[str, dict[str, str]]:
    """An interpreter the user can run, with tether and its dependencies importable (this venv's
    python may live in root's home; then the system's python of the same version)."""
    src = str(Path(rh.__file__).parents[1])
    site = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join([src, *site])}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    check = ("import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', "  # as a worker starts
             "'import tether.daemon.app, numpy']))")
    for python in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        done = subprocess.run([*_as(user), python, "-c", check], env=env, capture_output=True, cwd="/")
        if done.returncode == 0:
            return python, env
    pytest.skip(f"no python {version} with tether's dependencies that another user can run")


def test_a_caller_of_another_user_uses_the_socket(other_user, monkeypatch):
    """The daemon runs as another user; this caller (root) can read the daemon's files but the
    daemon's workers cannot read this caller's. Before, the caller chose shared memory and a
    big argument failed with PermissionError; the probe now goes both ways, and says no."""
    python, env = _python_for(other_user)
    base = Path(tempfile.mkdtemp(prefix="tether-other-user-"))
    try:
        base.chmod(0o755)
        name = f"ou-{uuid.uuid4().hex[:6]}"
        home = base / "home"
        folder = home / "clusters" / name
        folder.mkdir(parents=True)
        state.ensure_token(folder)
        state.write_limits(folder, None, None)  # as the local launcher records them
        for path in (home, home / "clusters", folder, *folder.iterdir()):
            os.chown(path, other_user.pw_uid, other_user.pw_gid)
        log = open(base / "daemon.log", "wb")
        daemon = subprocess.Popen(
            [*_as(other_user), python, "-m", "tether.daemon", "--state-dir", str(folder), "--cluster", name,
             "--python", python], env={**env, "TETHER_HOME": str(home), "HOME": str(base)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(base))
        try:
            wait_until(lambda: (state.read_daemon_record(folder) or {}).get("pid") == daemon.pid
                       or daemon.poll() is not None, 60, "the other user's daemon to start")
            assert daemon.poll() is None, (base / "daemon.log").read_text()
            monkeypatch.setenv("TETHER_HOME", str(home))
            # python=: that daemon's interpreter is asked for (else this process, which runs
            # another interpreter, would restart an empty daemon with its own: launchers/local)
            cluster = rh.cluster(name=name, launcher="local", python=python).up_if_not()
            assert cluster.status()["pid"] == daemon.pid  # the other user's daemon, not a new one
            shared = Path(cluster.status()["shm"]["dir"])
            assert (shared / "probe").exists()  # this caller can see and read the daemon's folder...
            assert cluster.client.shm is None  # ...and still goes through the socket
            nbytes = deploy(cluster, rc.nbytes)
            assert nbytes(np.ones(4 * MiB, dtype=np.uint8)) == 4 * MiB
            assert deploy(cluster, rc.zeros)(4 * MiB).nbytes == 4 * MiB
            assert not [p for p in os.listdir(shared) if p.endswith(".probe")]  # no probe left
            cluster.teardown()
            daemon.wait(30)
        finally:
            if daemon.poll() is None:
                os.kill(daemon.pid, signal.SIGKILL)
                daemon.wait()
            log.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
