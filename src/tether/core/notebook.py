"""Jupyter on a cluster: ``cluster.notebook()`` and ``fn.notebook()`` (Runhouse's API).

JupyterLab runs ON the cluster's node, with the interpreter of the cluster's default env (the
daemon's: ``~/.tether/venv`` on an SSH node), started through that node's daemon like
``cluster.run_python``. It listens on the node's loopback and is reached from here through an SSH
tunnel (a local port forwarded to it), or directly on the local cluster. Its token is made here
and given to it in its environment (never on a command line, where ``ps`` shows it).

Jupyter lives as long as the request that started it: Ctrl-C, ``Notebook.stop()``, or this
process dying ends it, with its kernels. ``stop()`` asks Jupyter to shut down (its REST API), then
kills whatever still carries this notebook's mark (an env var every kernel inherits). With
``persist=True`` it is started detached instead, and outlives this process (stop it with the
handle, or ``cluster.run([f"kill {nb.pid}"])``).

A node without JupyterLab gets it first: ``install_packages(NOTEBOOK_REQS)``, from this machine's
installed copies where the launcher ships wheels (SSH nodes: no package index needed there), else
by the node's own installer.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.errors import ConfigError, LaunchError

if TYPE_CHECKING:
    from tether.core.cluster import Cluster
    from tether.core.images import Env

#: what a node needs for ``notebook()`` (the ``notebook`` extra of tether)
NOTEBOOK_REQS = ["jupyterlab"]
MARK = "TETHER_NOTEBOOK"
START_TIMEOUT = 120.0

# run on the node: a free loopback port (from ``start`` on), whether JupyterLab is there, home
_PROBE = """
import importlib.util, json, os, socket
def free(port):
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
    except OSError:
        return None
port = next((p for p in range(START, START + 10) if free(p)), None) or free(0)
print(json.dumps({"port": port, "jupyter": importlib.util.find_spec("jupyterlab") is not None,
                  "home": os.path.expanduser("~")}))
"""

# run on the node: JupyterLab itself (in this process: it ends with the request that started it)
_SERVER = """
import os, runpy, sys
root = os.path.expanduser(ROOT)
os.chdir(root)
sys.argv = ["jupyter-lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", "--port=PORT", "--port-retries=0",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly", "--ServerApp.root_dir=" + root]
runpy.run_module("jupyterlab", run_name="__main__", alter_sys=True)
"""

# run on the node (persist=True): JupyterLab detached, its output in a log file; prints its pid
_DETACHED = """
import json, os, subprocess, sys, tempfile
log = os.path.join(tempfile.gettempdir(), "tether-notebook-" + os.environ[MARK] + ".log")
with open(log, "ab") as out:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.DEVNULL, stdout=out,
                            stderr=out, start_new_session=True)
print(json.dumps({"pid": proc.pid, "log": log}))
"""

# run on the node: every process carrying the notebook's mark (the server, its kernels) ended
_SWEEP = """
import os, signal, time
mark = (MARK + "=" + ID).encode()
def marked():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    if mark in f.read().split(b"\\0"):
                        found.append(int(pid))
            except OSError:
                pass
    return found
for sig in (signal.SIGTERM, signal.SIGKILL):
    left = marked()
    for pid in left:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = marked()
    if not left:
        break
print(len(marked()))
"""


class Notebook:
    """A Jupyter server running on a cluster's node, and how to reach it from here.

    ``url`` opens JupyterLab (with the token); ``base_url`` and ``token`` are for Jupyter's REST
    API (``Authorization: token <token>``). ``stop()`` ends it (idempotent); as a context manager it
    stops on exit. ``wait()`` blocks until it ends, stopping it on Ctrl-C.
    """

    def __init__(self, cluster: Cluster, node: int, *, port_forward: int = 8888, env: Env | None = None,
                 root_dir: str | None = None, persist: bool = False,
                 sync_package_on_close: str | None = None) -> None:
        self.cluster, self.node, self.persist = cluster, node, persist
        self.id = secrets.token_hex(8)
        self.token = secrets.token_hex(24)
        self._port_forward = port_forward
        self._env = env
        self._root_dir = root_dir
        self._sync = sync_package_on_close
        self._tunnel: Any = None
        self._runner: threading.Thread | None = None
        self._result: list | BaseException | None = None
        self._stopped = False
        self.local_port = self.remote_port = 0
        #: the server's pid on the node (persist=True only)
        self.pid: int | None = None
        #: the folder Jupyter serves, on the node ("~/..." is the node user's home)
        self.root_dir: str | None = None

    # -- reaching it ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/lab?token={self.token}"

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"at {self.base_url}"
        return f"<Notebook on {self.cluster.name!r} node {self.node} {state}>"

    def __enter__(self) -> Notebook:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> Notebook:
        cluster = self.cluster
        direct = _direct(cluster)
        env_vars, cwd = cluster._env_of(self._env, None, None)
        probe = self._python(_PROBE.replace("START", str(int(self._port_forward))))
        if not probe["jupyter"]:
            self._install()
        root = self._root_dir or cwd or (str(Path.cwd()) if direct else "~")
        if self._sync:
            root = self._push_package()
        self.root_dir, self.remote_port = root, probe["port"]
        server = _SERVER.replace("PORT", str(self.remote_port)).replace("ROOT", repr(root))  # the path last
        env_vars = {**env_vars, "JUPYTER_TOKEN": self.token, MARK: self.id}
        client = cluster.node_client(self.node)
        if self.persist:
            code = _DETACHED.replace("MARK", repr(MARK)).replace("SERVER", repr(server))
            (code_, out, err), = client.run([code], "python", stream_logs=False, env_vars=env_vars)
            if code_:
                raise LaunchError(f"Jupyter did not start on cluster {cluster.name!r}:\n{(err or out)[-2000:]}",
                                  cluster=cluster.name)
            self.pid = json.loads(out.strip().splitlines()[-1])["pid"]
        else:
            self._runner = threading.Thread(target=self._serve, args=(client, server, env_vars),
                                            name=f"tether-notebook-{self.id}", daemon=True)
            self._runner.start()
        try:
            if direct:
                self.local_port = self.remote_port
            else:
                self._tunnel = cluster.ssh_tunnel(_local_port(self._port_forward), self.remote_port, node=self.node)
                self.local_port = self._tunnel.local_port
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self, client: Any, server: str, env_vars: dict[str, str]) -> None:
        try:
            self._result = client.run([server], "python", stream_logs=False, env_vars=env_vars)
        except BaseException as exc:  # noqa: BLE001 -- handed to the thread that waits
            self._result = exc

    def running(self) -> bool:
        """Whether the server still runs (as far as this process knows)."""
        if self._stopped:
            return False
        if self._runner is not None:
            return self._runner.is_alive()
        try:  # detached (persist): as long as it answers
            self.api("GET", "/api/status", timeout=5)
            return True
        except (OSError, urllib.error.URLError):
            return False

    def _failure(self) -> str:
        result = self._result
        if isinstance(result, BaseException):
            return f"{type(result).__name__}: {result}"
        if result:
            code, out, err = result[0]
            return f"exit code {code}:\n{(err or out)[-3000:]}"
        return "it stopped"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._runner is not None and not self._runner.is_alive():
                raise LaunchError(f"Jupyter did not start on cluster {self.cluster.name!r}: {self._failure()}",
                                  cluster=self.cluster.name)
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise LaunchError(f"Jupyter did not answer on cluster {self.cluster.name!r} within "
                                      f"{START_TIMEOUT:.0f} s", cluster=self.cluster.name) from None
                time.sleep(0.1)

    def api(self, verb: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """One request to Jupyter's REST API (``/api/...``) with the token; the JSON it returns."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=verb,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def wait(self) -> None:
        """Block until the server ends; Ctrl-C stops it (unless ``persist``: then it stays)."""
        try:
            while self.running():
                if self._runner is not None:
                    self._runner.join(0.5)
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            if not self.persist:
                print(f"Stopping Jupyter on cluster {self.cluster.name!r}...", flush=True)
                self.stop()
            else:
                self._close_tunnel()
                print(f"Jupyter keeps running on cluster {self.cluster.name!r} (pid {self.pid}, port "
                      f"{self.remote_port}): cluster.ssh_tunnel(8888, {self.remote_port}) reaches it again; "
                      f"cluster.run(['kill {self.pid}']) stops it.", flush=True)
            return
        print(f"Jupyter on cluster {self.cluster.name!r} stopped.", flush=True)
        self.stop()

    def stop(self) -> None:
        """Stop the server and its kernels on the node, close the tunnel, and copy the package
        back (``sync_package_on_close``). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.local_port:
                try:
                    self.api("POST", "/api/shutdown", timeout=10)  # Jupyter ends its kernels, then itself
                except (OSError, urllib.error.URLError, ValueError):
                    pass
            if self._runner is not None:
                self._runner.join(15)
            self._python(_SWEEP.replace("MARK", repr(MARK)).replace("ID", repr(self.id)), parse=False)
        finally:
            self._close_tunnel()
            if self._sync:
                self._pull_package()

    def _close_tunnel(self) -> None:
        if self._tunnel is not None:
            self._tunnel.close()
            self._tunnel = None

    # -- on the node ----------------------------------------------------------------------------

    def _python(self, code: str, parse: bool = True) -> Any:
        (status, out, err), = self.cluster.node_client(self.node).run([code], "python", stream_logs=False)
        if status:
            raise LaunchError(f"notebook: a step on cluster {self.cluster.name!r} failed:\n{(err or out)[-2000:]}",
                              cluster=self.cluster.name)
        return json.loads(out.strip().splitlines()[-1]) if parse else out

    def _install(self) -> None:
        """JupyterLab into the node's default env: wheels from here where the launcher ships them."""
        cluster = self.cluster
        print(f"Installing {' '.join(NOTEBOOK_REQS)} on cluster {cluster.name!r}...", flush=True)
        ships = "install_local_packages" not in cluster.launcher.unsupported and \
            hasattr(cluster.launcher, "install_local_packages")
        cluster.install_packages(_pinned(NOTEBOOK_REQS) if ships else NOTEBOOK_REQS, node=self.node,
                                 from_local=ships)

    def _push_package(self) -> str:
        """The package to edit in the notebook: sent to the node; Jupyter opens in it there."""
        root = _package_root(self._sync)
        if _direct(self.cluster):
            return str(root)
        self.cluster.launcher.require("push_code")
        return self.cluster.launcher.push_code(self.cluster, root, self.node)

    def _pull_package(self) -> None:
        if _direct(self.cluster):
            return  # the local cluster edits this machine's files in place
        root = _package_root(self._sync)
        self.cluster.launcher.pull_code(self.cluster, root, self.node)
        print(f"Copied the notebook's changes of {root.name} back to {root}.", flush=True)


def notebook(cluster: Cluster, persist: bool = False, sync_package_on_close: str | None = None,
             port_forward: int = 8888, env: Env | str | list[str] | None = None, node: Any = None,
             block: bool = True, root_dir: str | None = None) -> Notebook:
    """``cluster.notebook(...)``; see there."""
    env_obj = cluster.resolve_env(env)
    if node is None:
        node = (env_obj.compute or {}).get("node_idx", 0)
    (index,) = cluster.launcher.select(cluster, node)
    cluster.up_if_not()
    nb = Notebook(cluster, index, port_forward=port_forward, env=env_obj, root_dir=root_dir,
                  persist=persist, sync_package_on_close=sync_package_on_close).start()
    where = "" if _direct(cluster) else f" (node {index}, through an SSH tunnel to its port {nb.remote_port})"
    print(f"Jupyter is running on cluster {cluster.name!r}{where}:\n    {nb.url}", flush=True)
    if block:
        print("Press Ctrl-C to stop it.", flush=True)
        nb.wait()
    return nb


def _direct(cluster: Cluster) -> bool:
    """The node is this machine (the local cluster): no tunnel; else one is required."""
    if cluster.launcher_name == "local":
        return True
    cluster.launcher.require("ssh_tunnel")
    return False


def _local_port(wanted: int) -> int:
    """``wanted`` or one of the next 9 ports when free here, else any free port (0)."""
    for port in range(wanted, wanted + 10):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    return 0


def _pinned(reqs: list[str]) -> list[str]:
    """``reqs`` at the versions installed here (the wheels shipped are those), when they are."""
    import importlib.metadata as md

    pinned = []
    for req in reqs:
        try:
            pinned.append(f"{req}=={md.version(req)}")
        except md.PackageNotFoundError:
            pinned.append(req)
    return pinned


def _package_root(path: str) -> Path:
    """The folder ``sync_package_on_close`` names ("./": the project of the working directory)."""
    if path in ("./", "."):
        from tether.core.packaging import find_project_root

        return find_project_root(Path.cwd()) or Path.cwd()
    found = Path(path).expanduser().resolve()
    if not found.is_dir():
        raise ConfigError(f"sync_package_on_close={path!r} is not a folder here")
    return found
