"""Test hosts: machines that tests reach only through SSH, made from network namespaces.

Each host is a network namespace (``ip netns``) joined by a veth pair to a bridge in the root
namespace, with an address in ``10.231.<slot>.0/24`` that the tests own, its own ``sshd`` (own
config, host key, pid file and log, listening on port 22 inside the namespace only) and its own
Unix user with its own home and an ``authorized_keys`` holding a key generated for this session.
A daemon started there listens on the namespace's own loopback, so the caller reaches it only
through an SSH tunnel, exactly as on a real remote machine.

The hosts share this machine's filesystem (except ``/tmp`` and ``/dev/shm``: each host's sshd
runs in its own mount namespace with fresh ones), so a host's Python is the machine's ``/usr/bin/python3``
(the pyenv interpreters live under ``/root``, which a test user cannot enter). A host made with
``python=PREFIX`` gets another interpreter instead: ``PREFIX`` is bind-mounted (in the mount
namespace of that host's sshd only) under the slot's folder and put first on the user's PATH.
``hide_python=True`` bind-mounts ``/dev/null`` over the machine's python3 binaries, again only for
that host's sshd and its sessions: a host without python3.

Several test sessions can run at once: each takes a free *slot* (a ``flock`` held for the whole
session), and every name it creates carries the slot number. Whatever a killed session left in
its slot (namespaces, processes, links, users, homes) is removed when a later session takes the
slot, and everything is removed again when the session ends.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

STATE_ROOT = Path("/run/tether-testhosts")
SLOTS = 8
SSHD = "/usr/sbin/sshd"
HOST_PYTHON = "/usr/bin/python3"
MIN_PYTHON = (3, 11)
PASSWORD = "tether-test-" + os.urandom(4).hex()  # the password of hosts made with password=PASSWORD
_BINARIES = ("ip", "ssh", "ssh-keygen", "rsync", "useradd", "userdel", "mount")


def missing_requirements() -> str | None:
    """Why test hosts cannot be made here, or None."""
    if sys.platform != "linux":
        return "test hosts need Linux network namespaces"
    if os.geteuid() != 0:
        return "test hosts need root (network namespaces, users, sshd): run the tests as root"
    missing = [b for b in _BINARIES if shutil.which(b) is None]
    if not os.access(SSHD, os.X_OK):
        missing.append(SSHD)
    if missing:
        return (f"test hosts need {', '.join(missing)}, not found on PATH (apt-get install -y "
                "openssh-server rsync iproute2; .ci/run installs them in CI)")
    probe = f"tether-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"cannot make network namespaces here ({made.stderr.strip()})"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    try:
        out = subprocess.run([HOST_PYTHON, "-c", "import sys, venv; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return f"test hosts run {HOST_PYTHON} (a test user cannot enter /root/.pyenv), which is missing"
    if tuple(int(x) for x in out) < MIN_PYTHON:
        return f"{HOST_PYTHON} is Python {'.'.join(out)}; the test hosts need >= 3.11"
    return None


def _run(*cmd: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60, **kwargs)


@dataclass
class TestHost:
    """One host: reach it with ``ip`` + ``ssh_creds()``; ``ssh(cmd)`` runs a command there."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    index: int
    ip: str
    user: str
    home: str
    key: Path
    netns: str
    veth: str
    state: Path
    password: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def ssh_creds(self, **extra) -> dict:
        creds = {"ssh_user": self.user, "ssh_private_key": str(self.key)}
        creds.update(extra)
        return {k: v for k, v in creds.items() if v is not None}

    def ssh(self, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``command`` on the host over plain SSH (for tests that check what is on a node)."""
        argv = ["ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                f"{self.user}@{self.ip}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check,
                              stdin=subprocess.DEVNULL)

    def link_down(self) -> None:
        """Cut the host off the network (its veth goes down), as if its cable were pulled."""
        _run("ip", "link", "set", self.veth, "down")

    def link_up(self) -> None:
        _run("ip", "link", "set", self.veth, "up")

    @property
    def sshd_log(self) -> str:
        try:
            return (self.state / "sshd.log").read_text(errors="replace")
        except OSError:
            return ""


class HostFactory:
    """Makes test hosts in one slot; ``close()`` removes every trace of them."""

    def __init__(self) -> None:
        STATE_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(STATE_ROOT, 0o755)
        self.slot, self._lock = self._take_slot()
        self.prefix = f"tth{self.slot}"
        self.subnet = f"10.231.{self.slot}"
        self.bridge = f"{self.prefix}br"
        self.dir = STATE_ROOT / f"slot{self.slot}"
        self.hosts: list[TestHost] = []
        self._closed = False
        cleanup_slot(self.slot)
        self.dir.mkdir(mode=0o755)
        self.key = self.make_key("client_key")
        self.bad_key = self.make_key("unknown_key")
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    @staticmethod
    def _take_slot():
        for slot in range(SLOTS):
            fd = os.open(STATE_ROOT / f"slot{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return slot, fd
        raise RuntimeError(f"all {SLOTS} test host slots are taken by other test sessions")

    def make_key(self, name: str, passphrase: str = "") -> Path:
        path = self.dir / name
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", f"tether-tests-{name}",
             "-f", str(path))
        return path

    @property
    def unused_ip(self) -> str:
        """An address on the test subnet where no host answers."""
        return f"{self.subnet}.250"

    def create(self, count: int = 1, *, python: str | None = None, hide_python: bool = False,
               password: str | None = None, env: dict[str, str] | None = None) -> list[TestHost]:
        """``count`` new hosts (see the module docstring for ``python`` and ``hide_python``);
        ``env``: variables every SSH session there gets (so the daemons started there too)."""
        made = [self._create_one(python=python, hide_python=hide_python or python is not None,
                                 password=password, env=env or {}) for _ in range(count)]
        for host in made:
            _wait_for_port(host)
        return made

    def _create_one(self, python: str | None, hide_python: bool, password: str | None,
                    env: dict[str, str]) -> TestHost:
        index = len(self.hosts)
        netns, veth, peer = f"{self.prefix}n{index}", f"{self.prefix}v{index}", f"{self.prefix}p{index}"
        user = f"{self.prefix}u{index}"
        ip = f"{self.subnet}.{10 + index}"
        state = self.dir / f"host{index}"
        state.mkdir(mode=0o755)
        host = TestHost(index, ip, user, f"/home/{user}", self.key, netns, veth, state, password)
        self.hosts.append(host)  # registered first: a failure below is still cleaned up

        _run("ip", "netns", "add", netns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", netns)
        _run("ip", "-n", netns, "link", "set", peer, "name", "eth0")
        _run("ip", "-n", netns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _run("ip", "-n", netns, "link", "set", "eth0", "up")
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        _run("ip", "link", "set", veth, "master", self.bridge)
        _run("ip", "link", "set", veth, "up")

        _run("useradd", "--create-home", "--home-dir", host.home, "--shell", "/bin/bash",
             "--user-group", user)
        if password:
            _run("chpasswd", input=f"{user}:{password}\n")
        else:  # "!" (useradd's default) is a locked account, which sshd refuses even with a key
            _run("usermod", "-p", "*", user)
        ssh_dir = Path(host.home, ".ssh")
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        os.chmod(ssh_dir / "authorized_keys", 0o600)
        _run("chown", "-R", f"{user}:{user}", str(ssh_dir))

        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(state / "host_key"))
        setenv = dict(env)
        # Its own /tmp and /dev/shm: a "remote" node shares no scratch files (sockets, shared
        # memory segments) with the caller or the other hosts.
        prelude = ["mount -t tmpfs -o mode=1777 tmpfs /tmp", "mount -t tmpfs -o mode=1777 tmpfs /dev/shm"]
        if python:
            mountpoint = state / "python"
            mountpoint.mkdir(mode=0o755)
            prelude.append(f"mount --bind {python} {mountpoint}")
            setenv.update(PATH=f"{mountpoint}/bin:/usr/local/bin:/usr/bin:/bin",
                          LD_LIBRARY_PATH=f"{mountpoint}/lib")
        if hide_python:
            for exe in _system_pythons():
                prelude.append(f"mount --bind /dev/null {exe}")
        (state / "sshd_config").write_text(_SSHD_CONFIG.format(
            ip=ip, state=state, user=user,
            setenv="SetEnv " + " ".join(f"{k}={v}" for k, v in setenv.items()) if setenv else "",
            password="yes" if password else "no"))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        sshd = f"exec {SSHD} -D -f {state}/sshd_config -E {state}/sshd.log"
        script = "set -e; " + "; ".join([*prelude, sshd])
        host.proc = subprocess.Popen(["ip", "netns", "exec", netns, "sh", "-c", script],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(state / "start.log", "wb"), start_new_session=True)
        return host

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self.hosts:
            if host.proc is not None and host.proc.poll() is None:
                host.proc.terminate()  # sshd closes its connections: the callers' ssh exit
        for host in self.hosts:
            if host.proc is not None:
                try:
                    host.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    host.proc.kill()
        cleanup_slot(self.slot)
        os.close(self._lock)


_SSHD_CONFIG = """\
Port 22
ListenAddress {ip}
HostKey {state}/host_key
PidFile {state}/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication {password}
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers {user}
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
MaxSessions 100
MaxStartups 100:30:200
LogLevel VERBOSE
Subsystem sftp internal-sftp
{setenv}
"""


def _system_pythons() -> list[str]:
    found = set()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for path in glob.glob(f"{folder}/python*"):
            real = os.path.realpath(path)
            if os.path.isfile(real) and os.access(real, os.X_OK) and not real.endswith("-config"):
                found.add(real)
    return sorted(found)


def _wait_for_port(host: TestHost, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.ip, 22), timeout=1):
                return
        except OSError:
            if host.proc is not None and host.proc.poll() is not None:
                raise RuntimeError(f"sshd of test host {host.ip} exited: "
                                   f"{(host.state / 'start.log').read_text(errors='replace')}"
                                   f"{host.sshd_log}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd of test host {host.ip} does not answer: {host.sshd_log}") from None
            time.sleep(0.05)


def cleanup_slot(slot: int) -> None:
    """Remove everything a session made in ``slot`` (idempotent: nothing there is fine)."""
    prefix = f"tth{slot}"
    netns = _run("ip", "netns", "list", check=False).stdout.split("\n")
    for line in netns:
        name = line.split(" ")[0]
        if not name.startswith(prefix + "n"):
            continue
        pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            _kill(int(pid))
        _run("ip", "netns", "del", name, check=False)
    links = _run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(prefix):
            _run("ip", "link", "del", name, check=False)
    for user, uid in _slot_users(prefix):
        for pid in _pids_of(uid):
            _kill(pid)
        _run("userdel", "--force", user, check=False)  # one at a time: it locks /etc/passwd
    homes = glob.glob(f"/home/{prefix}u*")  # each holds a venv: thousands of files, removed in parallel
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda home: shutil.rmtree(home, ignore_errors=True), homes))
    slot_dir = STATE_ROOT / f"slot{slot}"
    for mount in _mounts_under(slot_dir):  # bind mounts live in the hosts' own mount namespaces,
        _run("umount", "-l", mount, check=False)  # but one could leak into ours: never rm through it
    shutil.rmtree(slot_dir, ignore_errors=True)


def _slot_users(prefix: str) -> list[tuple[str, int]]:
    users = []
    with open("/etc/passwd") as f:
        for line in f:
            parts = line.split(":")
            if len(parts) > 2 and parts[0].startswith(prefix + "u"):
                users.append((parts[0], int(parts[2])))
    return users


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


def _mounts_under(folder: Path) -> list[str]:
    try:
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f]
    except OSError:
        return []
    return [p for p in points if p.startswith(str(folder) + "/")]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def running_daemon(host: TestHost, cluster: str) -> int | None:
    """The pid of ``cluster``'s daemon on ``host`` if it runs (checked over SSH), else None."""
    proc = host.ssh(f"f=~/.tether/clusters/{cluster}/daemon.json; test -f $f && "
                    "sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' $f", check=False)
    pid = proc.stdout.strip()
    if not pid or host.ssh(f"kill -0 {pid}", check=False).returncode:
        return None
    return int(pid)
