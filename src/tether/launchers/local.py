"""The ``local`` launcher: the embedded default, a daemon on this machine reached over loopback.

The daemon is started on demand, detached (own session), with its state in
``$TETHER_HOME/clusters/<name>/`` (see ``tether.state``): the token, the daemon's record, its log,
worker logs and env venvs. A file lock makes concurrent ``up()`` calls from several processes start
one daemon.

A local cluster can emulate a machine size: ``tether.cluster(name="small", memory="512Mi",
cpus=1)``. The limits are recorded in the state dir before the daemon starts; the daemon
(``tether.daemon.limits``) puts its worker processes in a cgroup with that memory limit and CPU
quota (or watches their memory when it cannot), so that a "small" local cluster really runs out of
memory. The daemon itself stays outside: it survives its workers' OOM kills. A cluster whose size
changed while its daemon runs is restarted on the next ``up()`` (a new machine size is a new
machine; what was deployed comes back from the daemon's manifest, instances with fresh state).
One env can also be given a size of its own without touching the others (``env_limits``, the
daemon's ``POST /_tether/envs/{env}/limits``): that is how a ladder climbs on a local cluster.

A cluster shared through a team registry (docs/sharing.md) takes ``registry_key`` (the registry's
public key) and ``registry_path`` (the cluster's name there): written to the state dir before its
daemon starts, or sent to a running daemon (``PUT /_tether/registry``), which then accepts grants.

A daemon outlives the program that started it, and serves whoever comes next: a program in
another virtualenv would have its code run with the first program's interpreter and packages.
``check_daemon`` notices (``/health`` says which interpreter the daemon runs): a daemon that holds
nothing is restarted with the caller's interpreter, one whose interpreter is gone (its checkout
was deleted) is restarted anyway, saying so, and otherwise the caller is warned with both
interpreters and the fix. An explicit ``python=`` in the spec is the interpreter asked for.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether import compute, state
from tether.errors import ConfigError, LaunchError, TetherError, TetherWarning
from tether.launchers.base import Endpoint, Launcher
from tether.plugins import hookimpl

if TYPE_CHECKING:
    from tether.client.daemon_client import DaemonClient
    from tether.core.cluster import Cluster

log = logging.getLogger("tether")

START_TIMEOUT = 60.0
#: spec keys that size the machine the workers get
SIZE_KEYS = frozenset({"memory", "cpus"})


REGISTRY_KEYS = frozenset({"registry_key", "registry_path"})


def registry_of(spec: dict[str, Any]) -> tuple[str | None, str | None] | None:
    """(public key, cluster path) a spec asks its daemon to accept grants with; None when it says
    nothing (the daemon keeps its setting); a ConfigError for half a setting."""
    if not REGISTRY_KEYS & set(spec):
        return None
    key, path = spec.get("registry_key"), spec.get("registry_path")
    if bool(key) != bool(path) or not all(v is None or isinstance(v, str) for v in (key, path)):
        raise ConfigError("a shared cluster takes both registry_key= (the registry's public key: "
                          "GET /v1/grant-key) and registry_path= (its name there, e.g. '/alice/gpu')")
    if path and not path.startswith("/"):
        raise ConfigError(f"registry_path is the cluster's registry name, e.g. '/alice/gpu', not {path!r}")
    return key or None, path or None


def _daemon_env() -> dict[str, str]:
    """This process's env, without the registry settings of a daemon started by hand: a cluster is
    shared by its own ``registry_key=``/``registry_path=`` (state dir files), never by a shell's."""
    return {k: v for k, v in os.environ.items() if k not in ("TETHER_REGISTRY_KEY", "TETHER_CLUSTER_PATH")}


def set_registry(cluster: Cluster, endpoint: Endpoint, key: str | None, path: str | None) -> None:
    """Share (or stop sharing) a running daemon: it stores the setting and switches at once."""
    from tether.client.daemon_client import DaemonClient

    client = DaemonClient(endpoint.host, endpoint.port, endpoint.token, cluster=cluster.name,
                          fingerprint=endpoint.fingerprint)
    try:
        client.request_json("PUT", "/_tether/registry", body={"public_key": key, "cluster": path})
    finally:
        client.close()


def limits_of(spec: dict[str, Any]) -> dict[str, Any]:
    """``{"memory": bytes or None, "cpus": float or None}``; a ConfigError for a bad value."""
    memory, cpus = spec.get("memory"), spec.get("cpus")
    return {"memory": compute.parse_memory(memory) if memory is not None else None,
            "cpus": compute.parse_cpus(cpus) if cpus is not None else None}


class LocalLauncher(Launcher):
    """This machine. ``python`` (the default env's interpreter), ``port``, ``autostop_mins``,
    ``memory``/``cpus`` (the size the workers get), ``cluster_host`` (also listen on this
    address, in TLS: a node of an SSH cluster that its head reaches, or a shared cluster's users),
    ``registry_key``/``registry_path`` (a shared cluster's grants: see the module's docstring)."""

    name = "local"
    spec_keys = frozenset({"python", "port", "autostop_mins", "cluster_host"}) | SIZE_KEYS | REGISTRY_KEYS
    unsupported = {
        "rsync": "the local cluster is this machine: its files are already here",
        "ssh_tunnel": "the local cluster is this machine: its daemon is on loopback already",
        "install_local_packages": "the local cluster is this machine: install_packages() without "
                                  "from_local uses this machine's own package index",
    }

    def validate(self, spec: dict[str, Any]) -> None:
        super().validate(spec)
        limits_of(spec)
        registry_of(spec)

    def shared_endpoint(self, cluster: Cluster) -> dict[str, Any]:
        """The TLS listener on ``cluster_host`` when it has one (reachable from other machines),
        else the loopback one (this machine's users only)."""
        found = super().shared_endpoint(cluster)
        record = state.read_daemon_record(state.cluster_dir(cluster.name)) or {}
        if record.get("cluster_address") and record.get("cluster_tls"):
            host, port = record["cluster_address"]
            found = {**found, "host": host, "port": port, "fingerprint": record.get("fingerprint")}
        return found

    def _up(self, cluster: Cluster) -> Endpoint:
        folder = state.cluster_dir(cluster.name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with state.locked(folder / "launch.lock"):
            endpoint = self._endpoint(cluster)
            if state.read_limits(folder) != limits_of(cluster.spec):
                if endpoint is not None:
                    self._down(cluster)  # another machine size is another machine
                    endpoint = None
                state.remove_env_limits(folder)  # ...whose envs all start at its size
            wanted = registry_of(cluster.spec)
            if endpoint is not None:
                if wanted is not None and state.read_registry(folder) != wanted:
                    set_registry(cluster, endpoint, *wanted)
                return endpoint
            if wanted is not None:
                state.write_registry(folder, *wanted)
            return self._start(cluster, folder)

    def _start(self, cluster: Cluster, folder: Path) -> Endpoint:
        token = state.ensure_token(folder)
        state.remove_daemon_record(folder)
        state.write_limits(folder, **limits_of(cluster.spec))
        python = cluster.spec.get("python") or sys.executable
        cmd = [python, "-m", "tether.daemon", "--state-dir", str(folder), "--cluster", cluster.name,
               "--python", python, "--port", str(cluster.spec.get("port", 0))]
        if cluster.spec.get("autostop_mins") is not None:
            cmd += ["--autostop-mins", str(float(cluster.spec["autostop_mins"]))]
        if cluster.spec.get("cluster_host"):
            cmd += ["--cluster-host", str(cluster.spec["cluster_host"])]
        log_path = folder / "daemon.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=str(folder), env=_daemon_env())
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            record = state.read_daemon_record(folder)
            if record and record.get("pid") == proc.pid:
                return Endpoint(record["host"], record["port"], token)
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
        raise LaunchError(
            f"the local daemon for cluster {cluster.name!r} did not start "
            f"({'exit code ' + str(proc.returncode) if proc.returncode is not None else 'timed out'}). "
            f"Last lines of {log_path}:\n{state.tail(log_path)}",
            cluster=cluster.name)

    def _endpoint(self, cluster: Cluster) -> Endpoint | None:
        folder = state.cluster_dir(cluster.name)
        record = state.read_daemon_record(folder)
        if not record or not _is_daemon(record.get("pid"), folder):
            return None
        token = state.read_token(folder)
        return Endpoint(record["host"], record["port"], token) if token else None

    def _down(self, cluster: Cluster) -> None:
        folder = state.cluster_dir(cluster.name)
        pid = (state.read_daemon_record(folder) or {}).get("pid")
        if _is_daemon(pid, folder):  # never signal a process that merely reused the pid
            os.kill(pid, signal.SIGTERM)  # the daemon stops its workers on the way out
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and state.pid_alive(pid):
                time.sleep(0.02)
            if state.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        state.remove_daemon_record(folder)

    def rotate_token(self, cluster: Cluster) -> None:
        """A new token: the running daemon makes it, writes it to the state dir (0600) and
        switches to it; with no daemon running, the next one starts with a new token file."""
        folder = state.cluster_dir(cluster.name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with state.locked(folder / "launch.lock"):  # no daemon starts meanwhile with the old one
            endpoint = self._endpoint(cluster)
            if endpoint is None:
                state.write_token(folder, secrets.token_urlsafe(32))
                return
            from tether.client.daemon_client import DaemonClient

            client = DaemonClient(endpoint.host, endpoint.port, endpoint.token, cluster=cluster.name,
                                  fingerprint=endpoint.fingerprint)
            try:
                client.request_json("POST", "/_tether/token")
            finally:
                client.close()

    def forget(self, cluster: Cluster) -> None:
        """After ``down``: forget what was deployed (``teardown()``), so the next daemon starts
        empty, with every env at the cluster's size."""
        state.remove_manifest(state.cluster_dir(cluster.name))
        state.remove_env_limits(state.cluster_dir(cluster.name))
        state.remove_secrets(state.cluster_dir(cluster.name))

    def env_limits(self, cluster: Cluster) -> dict[str, dict[str, Any]]:
        """Envs given limits of their own (``POST /_tether/envs/{env}/limits``: a ladder grows the
        env that ran out of memory, not the whole cluster), as their daemon keeps them: ``{env:
        {"memory": bytes or None, "cpus": float or None}}`` (None: the cluster's). A file read: no
        daemon needed."""
        return state.read_env_limits(state.cluster_dir(cluster.name))

    def check_daemon(self, cluster: Cluster, client: DaemonClient, health: dict[str, Any]) -> bool:
        """Whether to restart a running daemon before using it: True when it runs another
        interpreter than the one asked for (``python=``, else this process's) and either holds
        nothing or runs an interpreter that no longer exists. When it holds objects, it is left
        running and the caller is warned (both interpreters, and the fix)."""
        wanted, running = cluster.spec.get("python") or sys.executable, health.get("python")
        pid = health.get("pid")
        if not isinstance(running, str) or _same_interpreter(running, wanted) or os.getppid() == pid:
            return False  # (a worker of that daemon calling its cluster runs its env's interpreter)
        if not os.path.exists(running):
            warnings.warn(TetherWarning(
                f"the daemon of cluster {cluster.name!r} (pid {pid}) runs interpreter {running}, "
                f"which no longer exists (its virtualenv or checkout was removed): restarting it "
                f"with {wanted}. What it held comes back from its manifest; instances start "
                "with fresh state."), stacklevel=_caller_level())
            return True
        try:
            status = client.request_json("GET", "/_tether/status")
        except TetherError:
            return False
        objects = status.get("objects") or {}
        calls = sum((env.get("worker") or {}).get("in_flight", 0) for env in (status.get("envs") or {}).values())
        commands = status.get("commands_running", 0)
        if not objects and not calls and not commands:
            log.info("the daemon of cluster %r (pid %s) runs interpreter %s and holds nothing: "
                     "restarting it with %s", cluster.name, pid, running, wanted)
            return True
        asked = "asked for with python=" if cluster.spec.get("python") else "this process runs"
        warnings.warn(TetherWarning(
            f"cluster {cluster.name!r} is served by a daemon (pid {pid}) started with interpreter "
            f"{running}, and {asked} {wanted}: your code runs with {running} and its packages "
            f"(a package installed here only fails with ModuleNotFoundError there). It was left "
            f"running because it holds {len(objects)} object(s) and {calls + commands} running "
            f"call(s) or command(s). To use {wanted}: cluster.restart_server() or `tether daemon "
            f"restart --cluster {cluster.name}` (what it holds comes back; instances with fresh "
            f"state). To keep {running} and silence this: tether.cluster(name={cluster.name!r}, "
            f"launcher='local', python={running!r})."), stacklevel=_caller_level())
        return False

    def ssh(self, cluster: Cluster, node: Any = None, command: str | None = None) -> int:
        """The local cluster is this machine: ``$SHELL`` here (or ``command`` run by it), in the
        cluster's state dir (its logs, records and token), saying so on stderr."""
        self.select(cluster, node)
        folder = state.cluster_dir(cluster.name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        shell = os.environ.get("SHELL") or "/bin/sh"
        if command is None:
            print(f"Cluster {cluster.name!r} is this machine: opening {shell} in its state dir {folder} "
                  "(exit to come back).", file=sys.stderr, flush=True)
        return subprocess.call([shell, *(["-c", command] if command else [])], cwd=folder)

    def set_autostop(self, cluster: Cluster, minutes: float | None) -> None:
        folder = state.cluster_dir(cluster.name)
        if state.read_daemon_record(folder) is not None:
            state.write_autostop(folder, minutes)

    def status(self, cluster: Cluster) -> dict[str, Any]:
        folder = state.cluster_dir(cluster.name)
        record = state.read_daemon_record(folder) or {}
        return {"up": _is_daemon(record.get("pid"), folder), "state_dir": str(folder), **record}


def _same_interpreter(a: str, b: str) -> bool:
    """Whether two interpreter paths are the same environment: the same ``bin`` folder (two
    virtualenvs' pythons are links to one base interpreter, so the files themselves are compared
    unresolved; ``python`` and ``python3`` of one folder are one env)."""
    a, b = os.path.abspath(a), os.path.abspath(b)
    return a == b or os.path.realpath(os.path.dirname(a)) == os.path.realpath(os.path.dirname(b))


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside tether."""
    root = str(Path(__file__).parents[1]) + os.sep
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(root):
        frame, level = frame.f_back, level + 1
    return level


def _is_daemon(pid: Any, folder: Path) -> bool:
    """Alive, and really this cluster's daemon: a stale daemon.json may name a reused pid."""
    if not state.pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return True  # no /proc (not Linux): trust the pid
    return b"tether.daemon" in argv and str(folder).encode() in argv


@hookimpl
def tether_launchers() -> list[type[Launcher]]:
    return [LocalLauncher]
