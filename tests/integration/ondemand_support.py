"""``testcloud``: a provisioner for the on-demand tests, whose "instances" are test hosts.

No cloud exists on a test machine, so this is the one faked part of the on-demand tests: the
*cloud*. Everything tether does on top of it is real: the on-demand launcher asks this provisioner
for machines through the same plugin interface (``tether_provisioners``) SkyPilot's uses, then
brings tether up on them over SSH (wheelhouse, bootstrap, code sync, a daemon per node).

An instance is a test host (``hosts.py``: a network namespace with its own sshd and user), and its
instance type is a real memory limit: a cgroup around that host's sshd, so every process it starts
(the daemon, its workers) shares the type's memory, and a worker that needs more is OOM-killed by
the kernel. Terminating an instance kills everything in its cgroup and deletes its namespace, user
and home: the host is gone.

Failures a test can inject (``BACKEND.fail``): ``{"capacity_at": i}`` (the cloud has no capacity
for the ``i``-th machine: ``create`` deletes the ones it made and raises), ``{"sshd_refuses": i}``
(the ``i``-th machine is made, but its sshd is dead: tether's bring-up fails on it).

Autostop (``set_autostop``): as SkyPilot's, it deletes the machines once the cluster is idle. Here
"idle" is what tether's own daemon decides: when the head's daemon stops itself by its autostop
(its log says so), the instances are terminated.
"""

from __future__ import annotations

import contextlib
import difflib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import hosts
from limits_support import require_cgroups

from tether.daemon.cgroups import ClusterGroup
from tether.launchers.ondemand.provisioner import (
    Machine,
    MachineRequest,
    Provisioner,
    ProvisionError,
    Say,
)
from tether.plugins import get_plugin_manager, hookimpl

#: instance type -> memory limit of the whole machine (bytes)
TYPES = {"small": 256 * 1024**2, "large": 2 * 1024**3}
PRICES = {"small": 0.01, "large": 0.08}  # dollars per hour, per machine


@dataclass
class Instance:
    id: str
    host: hosts.TestHost
    type: str
    group: ClusterGroup

    def machine(self) -> Machine:
        return Machine(id=self.id, host=self.host.ip, user=self.host.user, key_path=str(self.host.key),
                       internal_ip=self.host.ip, instance_type=self.type, price_per_hour=PRICES[self.type])


@dataclass
class Backend:
    """The "cloud": the hosts factory, the instances of each cluster, what was launched."""

    factory: hosts.HostFactory | None = None
    clusters: dict[str, list[Instance]] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    launches: dict[str, int] = field(default_factory=dict)  # create() calls that made machines
    #: the docker image each cluster's machines were asked to start from (``MachineRequest.image``):
    #: recorded, not run (a test host is no container); the image's other steps run for real
    images: dict[str, str | None] = field(default_factory=dict)
    terminated: list[str] = field(default_factory=list)  # instance ids, in order
    autostopped: list[str] = field(default_factory=list)  # clusters deleted by their autostop
    watchers: dict[str, threading.Event] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


BACKEND = Backend()


class TestCloud(Provisioner):
    __test__ = False
    name = "testcloud"
    providers = frozenset({"testcloud"})

    def check(self, request: MachineRequest) -> None:
        kind = request.instance_type or "small"
        if kind not in TYPES:
            close = difflib.get_close_matches(kind, list(TYPES), n=3, cutoff=0.3)
            raise ProvisionError(f"testcloud has no instance type {kind!r}"
                                 + (f"; close matches: {', '.join(close)}" if close else "")
                                 + f" (it has: {', '.join(TYPES)})")
        if request.accelerators or request.cpus or request.memory:
            raise ProvisionError("testcloud sizes machines by instance_type only (small, large)")

    def create(self, cluster: str, request: MachineRequest, say: Say) -> list[Machine]:
        kind = request.instance_type or "small"
        with BACKEND.lock:
            found = BACKEND.clusters.get(cluster)
            if found and len(found) == request.num_nodes and all(i.type == kind for i in found):
                return [i.machine() for i in found]
            if found:
                raise ProvisionError(f"cluster {cluster!r} has other machines on testcloud "
                                     f"({len(found)} x {found[0].type}); tear it down first")
            assert BACKEND.factory is not None, "testcloud needs its hosts factory (the fixture)"
            made: list[Instance] = []
            BACKEND.clusters[cluster] = made
            try:
                for index in range(request.num_nodes):
                    if BACKEND.fail.get("capacity_at") == index:
                        raise ProvisionError(f"testcloud has no capacity for a {kind} instance")
                    made.append(_launch(kind))
                    say(f"testcloud: {made[-1].id} ({kind}, {_mib(TYPES[kind])}) up at {made[-1].host.ip}")
                    if BACKEND.fail.get("sshd_refuses") == index:
                        _kill_sshd(made[-1])
            except BaseException as exc:
                ids = [i.id for i in made]
                self.terminate(cluster)
                if isinstance(exc, ProvisionError):
                    raise ProvisionError(str(exc), cleaned_up=ids) from None
                raise
            BACKEND.launches[cluster] = BACKEND.launches.get(cluster, 0) + 1
            BACKEND.images[cluster] = request.image
            return [i.machine() for i in made]

    def machines(self, cluster: str) -> list[Machine]:
        with BACKEND.lock:
            return [i.machine() for i in BACKEND.clusters.get(cluster) or []]

    def terminate(self, cluster: str) -> None:
        with BACKEND.lock:
            stop = BACKEND.watchers.pop(cluster, None)
            if stop is not None:
                stop.set()
            for instance in BACKEND.clusters.pop(cluster, None) or []:
                _destroy(instance)
                BACKEND.terminated.append(instance.id)

    def set_autostop(self, cluster: str, minutes: float | None, down: bool = True) -> None:
        with BACKEND.lock:
            old = BACKEND.watchers.pop(cluster, None)
            if old is not None:
                old.set()
            instances = BACKEND.clusters.get(cluster)
            if minutes is None or minutes < 0 or not instances:
                return
            stop = threading.Event()
            BACKEND.watchers[cluster] = stop
            log = Path(instances[0].host.home, ".tether", "clusters", cluster, "daemon.log")
            offset = log.stat().st_size if log.exists() else 0
            threading.Thread(target=self._watch, args=(cluster, log, offset, stop), daemon=True,
                             name=f"testcloud-autostop-{cluster}").start()

    def _watch(self, cluster: str, log: Path, offset: int, stop: threading.Event) -> None:
        """Terminate the cluster once its head's daemon stopped itself for being idle."""
        while not stop.wait(0.5):
            try:
                with log.open("rb") as f:
                    f.seek(offset)
                    text = f.read().decode(errors="replace")
            except OSError:
                continue
            if "(autostop after" in text:
                with BACKEND.lock:
                    if stop.is_set():
                        return
                    self.terminate(cluster)
                    BACKEND.autostopped.append(cluster)
                return

    def price(self, request: MachineRequest) -> float | None:
        return PRICES.get(request.instance_type or "small", 0.0) * request.num_nodes


@hookimpl
def tether_provisioners() -> list[type[Provisioner]]:
    return [TestCloud]


def provide_testcloud(test_hosts: hosts.HostFactory):
    """The body of a test module's ``testcloud`` fixture: ``yield from provide_testcloud(...)``."""
    require_cgroups()
    with installed(test_hosts) as backend:
        yield backend


@contextlib.contextmanager
def installed(factory: hosts.HostFactory):
    """``provider="testcloud"`` for the duration (the plugin registered, the hosts factory set);
    every instance left is terminated at the end."""
    pm = get_plugin_manager()
    module = sys.modules[__name__]
    BACKEND.factory = factory
    _remove_leftovers(factory.slot)
    if not pm.is_registered(module):
        pm.register(module, name="testcloud")
    try:
        yield BACKEND
    finally:
        for cluster in list(BACKEND.clusters):
            TestCloud().terminate(cluster)
        pm.unregister(module)
        BACKEND.factory = None


def host_gone(host: hosts.TestHost) -> bool:
    """Whether a terminated instance's host is really gone: no namespace, no user, no sshd."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    users = Path("/etc/passwd").read_text()
    return host.netns not in namespaces and f"\n{host.user}:" not in f"\n{users}" and not Path(host.home).exists()


# -- instances ------------------------------------------------------------------------------------


def _launch(kind: str) -> Instance:
    (host,) = BACKEND.factory.create(1)
    group = ClusterGroup(f"testcloud-{BACKEND.factory.slot}-{host.index}", TYPES[kind], None)
    pids = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True).stdout.split()
    for pid in pids:  # the sshd: everything it starts from now on is in the machine's memory
        with contextlib.suppress(ProcessLookupError):  # a connection probe's child, gone since
            (group.group / "cgroup.procs").write_text(pid)
    if host.proc is not None and str(host.proc.pid) not in (group.group / "cgroup.procs").read_text().split():
        raise RuntimeError(f"the sshd of {host.ip} is not in its instance's cgroup")
    _show_cgroups(host, group)
    return Instance(f"tc-{BACKEND.factory.slot}-{host.index}", host, kind, group)


def _show_cgroups(host: hosts.TestHost, group: ClusterGroup) -> None:
    """Mount the memory hierarchy in the host's own mount namespace (``ip netns exec`` gave it a
    fresh /sys without one), as a machine has it: the daemon there reads its own group's OOM kills
    to tell a worker the kernel killed for lack of memory from one killed otherwise."""
    if host.proc is None:
        return
    if group.version == "v2":
        script = "mount -t cgroup2 cgroup2 /sys/fs/cgroup"
    else:
        script = ("mount -t tmpfs -o mode=755 cgroups /sys/fs/cgroup && mkdir /sys/fs/cgroup/memory && "
                  "mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory")
    subprocess.run(["nsenter", "-t", str(host.proc.pid), "-m", "sh", "-c", script], check=True,
                   capture_output=True, timeout=30)


def _remove_leftovers(slot: int) -> None:
    """The cgroups of instances a killed session left in this slot (their hosts are gone with
    the slot's cleanup)."""
    base = ClusterGroup(f"testcloud-{slot}-probe", None, None)
    for group in base.group.parent.glob(f"{base.group.name.rsplit('-', 1)[0]}-*"):
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                hosts._kill(int(pid))
        with contextlib.suppress(OSError):
            group.rmdir()
    base.remove()


def _kill_sshd(instance: Instance) -> None:
    if instance.host.proc is not None:
        instance.host.proc.kill()
        instance.host.proc.wait(timeout=10)


def _destroy(instance: Instance) -> None:
    """Everything of the instance goes: its processes, namespace, link, user and home."""
    host = instance.host
    instance.group.remove()  # kills every process in the machine's cgroup
    if host.proc is not None and host.proc.poll() is None:
        host.proc.kill()
    if host.proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            host.proc.wait(timeout=10)
    for pid in subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True).stdout.split():
        hosts._kill(int(pid))
    subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
    subprocess.run(["ip", "link", "del", host.veth], capture_output=True)
    uid = subprocess.run(["id", "-u", host.user], capture_output=True, text=True).stdout.strip()
    if uid.isdigit():
        for pid in hosts._pids_of(int(uid)):
            hosts._kill(pid)
        deadline = time.monotonic() + 10
        while hosts._pids_of(int(uid)) and time.monotonic() < deadline:
            time.sleep(0.05)
    subprocess.run(["userdel", "--force", "--remove", host.user], capture_output=True)
    subprocess.run(["rm", "-rf", host.home], capture_output=True)
    deadline = time.monotonic() + 10
    while instance.group.group.exists() and time.monotonic() < deadline:  # its last tasks left
        instance.group.remove()
        time.sleep(0.05)


def _mib(size: int) -> str:
    return f"{size // 1024**2} MiB"
