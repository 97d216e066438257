"""Cluster: a handle on compute (a name, a launcher, a spec) and the daemon that serves it.

``tether.cluster("local")`` / ``tether.here`` is the embedded default: a daemon on this machine,
started on demand. ``tether.cluster(name="rack", ips=[...], ssh_creds={...})`` is the ``ssh``
launcher (your own machines). Other launchers (sky, kubernetes) plug in through
``tether.plugins``.

Methods that act on machines take ``node=``: None (the head), a node index, an address, or
``"all"``.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tether.client import routes
from tether.client.daemon_client import DaemonClient, TokenSource
from tether.core.image import Image, resolve_image
from tether.core.image_apply import apply_image, check_docker, forget_image, image_status
from tether.core.images import Env, resolve_env
from tether.core.registry import remote, store, usage
from tether.core.resources import Resource
from tether.core.stubs import stub_for
from tether.errors import ConfigError, LaunchError, NotFoundError, TetherError
from tether.plugins import launchers
from tether.protocol import wire
from tether.state import home_id

if TYPE_CHECKING:
    from tether.core.notebook import Notebook
    from tether.core.packaging import ImportSpec
    from tether.launchers.base import Endpoint, Launcher

DEFAULT_CLUSTER = "local"
_MISSING: Any = object()
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


class Cluster(Resource):
    """A named cluster. Methods bring it up on demand (``up_if_not``) before talking to it."""

    RESOURCE_TYPE = "cluster"

    def __init__(self, name: str = DEFAULT_CLUSTER, launcher: str | None = None,
                 image: Image | str | dict | None = None,
                 default_env: Env | str | list[str] | dict | None = None, **spec: Any) -> None:
        if not name or not all(_NAME_RE.match(part) for part in name.split("/")):
            raise ConfigError(
                f"bad cluster name {name!r}: use letters, digits, '_', '-', '.' (starting with a letter "
                "or digit), and '/' between folder parts")
        self.name = name
        self.launcher_name = launcher or _infer_launcher(spec)
        self.spec = spec
        self._client: DaemonClient | None = None
        #: where a shared cluster's grants come from (``shared_cluster``); None: the owner's token
        self.token_source: TokenSource | None = None
        self._node_clients: dict[int, DaemonClient] = {}
        self._lock = threading.Lock()
        self._last_up_seconds: float | None = None
        self._launcher = None
        #: what the last code sync of a deploy sent, one ``SyncResult`` per node (remote launchers)
        self.last_sync: list[Any] = []
        self.launcher.validate(spec)
        #: the machines' setup (``tether.Image``): its steps run once per node at bring-up
        self.image: Image | None = resolve_image(image)
        #: the env of what is deployed, and of commands run, without an ``env=`` (Runhouse's
        #: ``default_env``); None: tether's default env
        self.default_env: Env | None = _default_env(default_env)
        self._image_lock = threading.RLock()
        self._image_done = self._image_busy = False
        check_docker(self)

    # -- definition --------------------------------------------------------------------------------

    @property
    def launcher(self) -> Launcher:
        """The launcher plugin named by ``launcher=`` (found through ``tether.plugins``)."""
        if self._launcher is not None:
            return self._launcher
        found = launchers()
        try:
            self._launcher = found[self.launcher_name]()
            return self._launcher
        except KeyError:
            raise ConfigError(
                f"no launcher named {self.launcher_name!r} (installed: {', '.join(sorted(found))}); "
                "launchers register through the 'tether' entry-point group") from None

    def config(self, endpoint: bool = False) -> dict[str, Any]:
        """The cluster's definition. ``endpoint=True`` adds how other users reach its running
        daemon without the owner's token (``endpoint``: ``host``, ``port``, TLS ``fingerprint``;
        for an SSH cluster ``ssh`` and ``daemon_port``), for a shared cluster's registry entry
        (``shared_cluster``, docs/sharing.md). A token is never in a config."""
        config = {"type": self.RESOURCE_TYPE, "name": self.name, "launcher": self.launcher_name,
                  "spec": self.launcher.config_spec(self.spec)}
        if self.image is not None:
            config["image"] = self.image.config()
        if self.default_env is not None:
            config["default_env"] = self.default_env.config()
        if endpoint:
            config["endpoint"] = self.launcher.shared_endpoint(self)
        return config

    def _config_to_save(self, address: Any) -> dict[str, Any]:
        """In a team registry, a cluster its users can call: a launcher that takes grants (local,
        ssh) is given the registry's public key and this path (its daemon accepts the grants the
        registry signs for it from then on, a running one at once), and the entry says how to reach
        the daemon while it is up (never the owner's token). Elsewhere, the plain config."""
        if address.local or not GRANT_KEYS <= getattr(self.launcher, "spec_keys", frozenset()):
            return self.config()
        key = store.registry_client().grant_key(doing=f"saving {address.path}")["public_key"]
        if (self.spec.get("registry_key"), self.spec.get("registry_path")) != (key, address.path):
            self.spec.update(registry_key=key, registry_path=address.path)
            if self.is_up():
                self.launcher.up(self)  # sends the new registry settings to the running daemon
        return self.config(endpoint=self.is_up())

    @property
    def ips(self) -> list[str]:
        """The cluster's machines, head first."""
        return self.launcher.node_names(self)

    @property
    def head_ip(self) -> str:
        return self.ips[0]

    @property
    def autostop_mins(self) -> float | None:
        """Minutes idle before the daemons stop themselves (-1 or None: never)."""
        return self.spec.get("autostop_mins")

    @autostop_mins.setter
    def autostop_mins(self, minutes: float | None) -> None:
        self.launcher.require("set_autostop")
        self.spec["autostop_mins"] = minutes
        self.launcher.validate(self.spec)
        if self.is_up():
            self.launcher.set_autostop(self, minutes)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Cluster:
        """The cluster a config describes, shared with this process's other handles of that name
        (one connection per cluster and process)."""
        return cluster(config["name"], config.get("launcher") or "local", image=config.get("image"),
                       default_env=config.get("default_env"), **(config.get("spec") or {}))

    def __repr__(self) -> str:
        return f"<Cluster {self.name!r} launcher={self.launcher_name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cluster) and other.config() == self.config()

    def __hash__(self) -> int:
        return hash((self.name, self.launcher_name))

    # -- lifecycle ---------------------------------------------------------------------------------

    def up(self) -> Cluster:
        """Bring the cluster up (a no-op if it is up already)."""
        return self.up_if_not()

    def up_if_not(self) -> Cluster:
        """Bring the cluster up unless it is up; a handle whose daemon went away connects anew."""
        client = self._client
        if client is not None:
            endpoint = self.launcher.endpoint(self)
            token = client.token if self.token_source is not None else endpoint and endpoint.token
            if endpoint is None or (endpoint.host, endpoint.port, token, endpoint.fingerprint) != (
                    client.host, client.port, client.token, client.fingerprint):
                with self._lock:
                    if self._client is client:
                        self._close_clients()
        self.client  # noqa: B018 - connecting brings it up
        return self

    def is_up(self) -> bool:
        return self.launcher.endpoint(self) is not None

    def teardown(self) -> None:
        """Stop the cluster's daemons and their workers; what was deployed is forgotten (the
        next daemon starts empty).

        Machines that the cluster did not create (the ``local`` one, your own over SSH) stay;
        machines made on demand are deleted.
        """
        with self._lock:
            self._forget_deployed()
            self._close_clients()
            try:
                self.launcher.down(self)
            finally:  # machines the launcher made (on demand) go even when a daemon would not stop
                terminate = getattr(self.launcher, "terminate", None)
                if terminate is not None:
                    terminate(self)
            forget = getattr(self.launcher, "forget", None)
            if forget is not None:  # a daemon that was not running cannot forget by itself
                forget(self)
        usage.release(self)  # the team registry's quotas (core/registry/usage.py)

    def _forget_deployed(self) -> None:
        """Ask a running head daemon to forget its manifest (and its nodes theirs), so that the
        next daemon starts empty. Best effort: an unreachable or older daemon is left as it is."""
        endpoint = self.launcher.endpoint(self)
        if endpoint is not None:
            client = self._client_to(endpoint)
            with contextlib.suppress(TetherError):
                client.request_json("POST", "/_tether/forget")
            client.close()

    def _close_clients(self) -> None:
        if self._client is not None and self._client.router is not None:
            self._client.router.close()
        for client in [self._client, *self._node_clients.values()]:
            if client is not None:
                client.close()
        self._client = None
        self._node_clients.clear()
        self._image_done = False  # a new daemon (or machine) is checked again

    def rotate_token(self) -> Cluster:
        """Give the cluster's daemons new bearer tokens, at once.

        Every node's daemon writes its new token (0600) and refuses the old one from then on,
        with a 401 that says it was rotated; this process's handles reconnect with the new one.
        Other processes holding the old token reconnect with ``cluster.up_if_not()``, which reads
        it from this machine's records.
        """
        self.launcher.require("rotate_token")
        with self._lock:
            self._close_clients()
            self.launcher.rotate_token(self)
        return self

    def restart_server(self) -> Cluster:
        """Restart the daemon (with this process's tether version and interpreter).

        What was deployed comes back (the daemon keeps a manifest of it): functions and classes
        as they were, values put with ``put()``, and instances made again from their constructor
        arguments, with fresh state (their next caller gets a ``tether.StateResetWarning``).
        """
        with self._lock:
            self._close_clients()
            self.launcher.down(self)
        return self.up_if_not()

    def restart_grpc_server(self, **_runhouse_options: Any) -> Cluster:
        """Runhouse's older name of :meth:`restart_server` (its options, such as ``resync_rh``
        or ``restart_ray``, have nothing to do here and are ignored)."""
        return self.restart_server()

    def keep_warm(self, autostop_mins: float | None = -1, autostop: float | None = None) -> Cluster:
        """Keep the cluster up: stop after ``autostop_mins`` idle minutes, -1 (the default) or
        None for never (Runhouse's ``keep_warm``; ``autostop=`` is the same)."""
        minutes = autostop if autostop is not None else autostop_mins
        self.autostop_mins = -1 if minutes is None else minutes
        return self

    @property
    def client(self) -> DaemonClient:
        """The client of the head daemon; brings the cluster up on first use and checks versions."""
        client = self._client
        if client is not None:
            if self.image is not None and not self._image_done:
                self._ensure_image()
            return client
        with self._lock:
            if self._client is None:
                client = self._connect()
                health = client.check_version()
                check = getattr(self.launcher, "check_daemon", None)  # e.g. its interpreter
                if check is not None and check(self, client, health):
                    client.close()  # the launcher said why: restart it (what it held comes back)
                    self.launcher.down(self)
                    client = self._connect()
                    client.check_version()
                self._client = client
            client = self._client
        if self.image is not None and not self._image_done:
            self._ensure_image()
        return client

    def _ensure_image(self) -> None:
        """Run the image's steps not yet done on the nodes (once per connection of this handle;
        ``tether.core.image_apply``). Other threads wait; this thread's own calls go through."""
        with self._image_lock:
            if self._image_done or self._image_busy:
                return
            self._image_busy = True
            try:
                apply_image(self, self.image)
                self._image_done = True
            finally:
                self._image_busy = False

    def reset_image(self, node: Any = "all") -> Cluster:
        """Forget the image steps recorded on the nodes (and its env vars), so that the next
        ``up_if_not()`` runs every step again: what to do when a step's effect was undone by hand,
        or to re-run a step that reads something that changed (a ``git pull``, a moving tag)."""
        indices = self.launcher.select(self, node)
        with self._image_lock:
            self._image_busy = True  # connecting here must not run the steps it is to forget
            try:
                forget_image([self.node_client(i) for i in indices])
            finally:
                self._image_busy = self._image_done = False
        return self

    def _connect(self) -> DaemonClient:
        client = self._client_to(self.launcher.up(self), resolve=self._address, gone=self._gone)
        if self.token_source is None and routes.enabled():  # a grant is the head's only
            client.router = routes.Router(self._direct_client, lambda: client.request_json("GET", "/health"))
        return client

    def _direct_client(self, index: int) -> DaemonClient:
        """A client of node ``index``'s daemon for the calls that go to it directly (its own,
        apart from ``node_client``'s: ``client/routes.py`` closes it when the node fails)."""
        client = self._client_to(self.launcher.node_endpoint(self, index))
        try:
            client.check_version()
        except TetherError:
            client.close()
            raise
        client.mark = f"node={index}"  # the lines its calls print are marked as through the head
        return client

    def _client_to(self, endpoint: Endpoint, **options: Any) -> DaemonClient:
        """A client of the daemon at ``endpoint``: with its token, or with grants from
        ``token_source`` (a shared cluster)."""
        return DaemonClient(endpoint.host, endpoint.port, endpoint.token, cluster=self.name,
                            fingerprint=endpoint.fingerprint, token_source=self.token_source, **options)

    def _gone(self) -> str | None:
        """Why the daemon cannot be reached, when the launcher knows (its machines were deleted:
        ``OnDemandLauncher.gone``), for the error of a call that could not reach it."""
        gone = getattr(self.launcher, "gone", None)
        return gone(self) if gone is not None else None

    def _address(self) -> tuple[str, int, str, str | None] | None:
        """Where the head daemon is now (after a restart, a stub's client follows it there)."""
        endpoint = self.launcher.endpoint(self)
        return None if endpoint is None else (endpoint.host, endpoint.port, endpoint.token,
                                              endpoint.fingerprint)

    def status(self) -> dict[str, Any]:
        """The head daemon's view: versions, envs and their worker processes, objects; with
        several machines also ``nodes``: each one's address and daemon. ``"up"`` says whether it
        runs: a cluster that is down is reported ``{"up": False, "status": "down", ...}`` and
        left down (as ``tether daemon status`` does: status never starts or restarts anything)."""
        endpoint = self.launcher.endpoint(self)
        if endpoint is None:
            down: dict[str, Any] = {"up": False, "status": "down", "cluster": self.name,
                                    "launcher": self.launcher_name, "spec": dict(self.spec)}
            known = getattr(self.launcher, "status", None)  # the local one: its state dir, a stale pid
            record = known(self) if known is not None else {}
            if record.get("state_dir"):
                down["state_dir"] = record["state_dir"]
            if record.get("pid"):
                down["stale_pid"] = record["pid"]  # a record left by a daemon that is gone
            down.update(self._machine_status())
            return down
        client, temporary = self._client, False
        if client is None:  # not `self.client`: connecting may restart a daemon of another size
            client, temporary = self._client_to(endpoint), True
        try:
            status = client.request_json("GET", "/_tether/status")
        finally:
            if temporary:
                client.close()
        status.update({"up": True, "status": "up"})
        if hasattr(self.launcher, "node_status"):
            status["nodes"] = self.launcher.node_status(self)
        if self.image is not None:
            status["image"] = self._image_status(client)
        status.update(self._machine_status())
        return status

    def _image_status(self, head: DaemonClient) -> dict[str, Any]:
        """Which of the image's steps each node has done (``image_apply.image_status``)."""
        try:
            names = self.ips
        except TetherError:
            names = []
        clients: list[tuple[str, DaemonClient | Exception]] = []
        for index in self.launcher.select(self, "all"):
            name = f"node {index} ({names[index]})" if index < len(names) else f"node {index}"
            if index == 0:
                clients.append((name, head))
                continue
            try:
                client = self._node_clients.get(index)
                if client is None:
                    client = self._node_clients[index] = self._client_to(self.launcher.node_endpoint(self, index))
                clients.append((name, client))
            except TetherError as exc:
                clients.append((name, exc))
        return image_status(self.image, clients)

    def _machine_status(self) -> dict[str, Any]:
        """The machines a launcher made (on demand): ids, type, price; {} for other launchers."""
        machines = getattr(self.launcher, "machine_status", None)
        return machines(self) if machines is not None else {}

    def node_client(self, node: Any = None) -> DaemonClient:
        """The client of one node's daemon (``node``: index or address; None is the head)."""
        if node == "all":
            raise ConfigError("node_client() takes one node, not 'all'")
        (index,) = self.launcher.select(self, node)
        if index == 0:
            return self.client
        client = self._node_clients.get(index)
        if client is None:
            client = self._client_to(self.launcher.node_endpoint(self, index))
            client.check_version()
            self._node_clients[index] = client
        return client

    # -- code -----------------------------------------------------------------------------------------

    def prepare_deploy(self, spec: ImportSpec | None, env: Env) -> ImportSpec | None:
        """Before a deploy by import path: check where the env goes, sync the code there, and
        return the import spec as the cluster sees it (paths on the node)."""
        node_idx = (env.compute or {}).get("node_idx", 0)
        if node_idx:
            names = self.ips
            if node_idx >= len(names):
                raise ConfigError(f"env {env.env_name!r} asks for node_idx={node_idx}, and cluster "
                                  f"{self.name!r} has {len(names)} node(s) (0 is the head)", cluster=self.name)
        self.client  # noqa: B018 - the cluster must be up to know where the code goes
        if env.secrets:  # before the deploy: its worker starts with them
            self.sync_secrets(env.secrets, env=env)
        if spec is None:
            return None
        return self.launcher.sync_code(self, spec)

    def sync_secrets(self, providers: Sequence[Any] | None = None, env: Env | str | None = None) -> dict[str, Any]:
        """Give secrets (``tether.secret(...)``, saved names, provider names such as ``"aws"``;
        default: every provider configured on this machine) to ``env``'s worker, a running one
        at once. Values reach the worker only (env vars, 0600 files): docs/secrets.md."""
        from tether.core.secrets import sync

        return sync(self, providers, env)

    def resolve_env(self, env: Env | str | list[str] | None) -> Env:
        """The env that ``env=`` names; without one, the cluster's ``default_env`` (if any)."""
        if env is None and self.default_env is not None:
            return self.default_env
        return resolve_env(env)

    # -- machines -------------------------------------------------------------------------------------

    def rsync(self, source: str, dest: str, up: bool = True, node: Any = None, contents: bool = False,
              filter_options: str | None = None) -> None:
        """Copy files to (``up=True``) or from a node with rsync over SSH.

        A relative remote path is relative to the node user's home. ``contents=True`` copies what
        is inside ``source`` rather than the folder itself. ``node="all"`` copies up to every node.
        """
        self.launcher.require("rsync")
        self.launcher.rsync(self, source, dest, up=up, node=node, contents=contents,
                            filter_options=filter_options)

    def ssh(self, node: Any = None, command: str | None = None) -> int:
        """An interactive shell on a node (the ssh binary, attached to this terminal), or
        ``command`` run there; its exit code. The local cluster is this machine: ``$SHELL`` opens
        here, in the cluster's state dir (its logs, records and token)."""
        self.launcher.require("ssh")
        return self.launcher.ssh(self, node=node, command=command)

    def notebook(self, persist: bool = False, sync_package_on_close: str | None = None,
                 port_forward: int = 8888, env: Env | str | list[str] | None = None, node: Any = None,
                 block: bool = True, root_dir: str | None = None) -> Notebook:
        """JupyterLab on the cluster, reached from here; its URL (with the token) is printed.

        It runs on a node (the env's ``compute`` node, else the head) with the cluster's default
        env interpreter, with ``env``'s env vars and working dir; a node without JupyterLab gets it
        first (SSH nodes: wheels of this machine's copy, ``pip install 'tether[notebook]'``).

        Args:
            persist: leave Jupyter running on the cluster after Ctrl-C / this process.
            sync_package_on_close: a folder here ("./": this project) sent to the node, where
                Jupyter opens, and copied back when it stops.
            port_forward: the local port (the next free one of the 10 from it).
            node: a node index or address (default: the env's, else the head).
            block: True (Runhouse's form): wait until Ctrl-C, then stop it. False: return the
                running ``Notebook`` at once (``.url``, ``.api()``, ``.stop()``; a context manager).
            root_dir: the folder Jupyter shows (default: the env's working dir, else the home
                folder on a remote node, the working directory on the local cluster).
        """
        from tether.core.notebook import notebook

        return notebook(self, persist=persist, sync_package_on_close=sync_package_on_close,
                        port_forward=port_forward, env=env, node=node, block=block, root_dir=root_dir)

    def ssh_tunnel(self, local_port: int, remote_port: int, node: Any = None):
        """Forward ``127.0.0.1:local_port`` here to ``remote_port`` on a node's loopback; returns a
        tunnel with ``.close()`` (also a context manager). ``local_port=0`` picks a free one."""
        self.launcher.require("ssh_tunnel")
        return self.launcher.ssh_tunnel(self, local_port, remote_port, node=node)

    def install_packages(self, reqs: Sequence[str], node: Any = None, from_local: bool = False) -> None:
        """Install ``reqs`` into the cluster's default env (the daemon's interpreter), with uv
        where the node has it, else pip.

        Args:
            node: an index or address, "all", or None (the head).
            from_local: fetch the wheels (and their dependencies') on this machine and send them:
                for nodes without a package index (on-prem boxes, the test hosts).
        """
        reqs = [reqs] if isinstance(reqs, str) else list(reqs)
        if from_local:
            self.launcher.require("install_local_packages")
            self.up_if_not()
            self.launcher.install_local_packages(self, reqs, self.launcher.select(self, node))
            return
        for index in self.launcher.select(self, node):  # by the node's installer: uv, else pip
            (code, out, err), = self.node_client(index).run(reqs, "install", stream_logs=True)
            if code:
                raise LaunchError(f"installing {' '.join(reqs)} failed on node {index} of "
                                  f"{self.name!r}:\n{(err or out)[-2000:]}", cluster=self.name)

    # -- objects -------------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Names of the objects living on the cluster, and their other names (``save(name=...)``)."""
        got = self.client.request_json("GET", "/_tether/keys", params={"names": "1"})
        # (a daemon from before ``?names`` answers with the objects themselves)
        return [n for o in got for n in ((o,) if type(o) is str else (o["name"], *o.get("aliases", ())))]

    def put(self, key: str, obj: Any, env: Env | str | None = None) -> None:
        """Store a Python value on the cluster under ``key`` (it lives in the env's worker)."""
        spec = self.resolve_env(env).wire_spec()
        meta = {"op": "deploy", "kind": "value", "name": key, "env": spec}
        self.client.deploy(meta, wire.dumps(obj, f"the value for {key!r}"))

    def get(self, key: str | None = None, default: Any = _MISSING, remote: bool = False, *,
            name: str | None = None) -> Any:
        """The value stored under ``key``, or a stub for a service (a function or an instance).

        Args:
            key: the object's name (``name=`` is the same).
            default: returned when nothing is named ``key``; without one, a ``NotFoundError``
                naming what the cluster holds (``default=KeyError``: a KeyError, as Runhouse).
            remote: return a stub even for a stored value.
        """
        key = key if key is not None else name
        if not key:
            raise ConfigError("cluster.get() needs the object's name: get('model') or get(name='model')")
        info = self._info(key)
        if info is None:
            if default is KeyError:
                raise KeyError(key)
            if default is _MISSING:
                held = sorted(self.keys())
                raise NotFoundError(f"nothing named {key!r} on cluster {self.name!r} (it holds: "
                                    f"{', '.join(held) if held else 'nothing'}); pass default= to get "
                                    "a value instead of this error", cluster=self.name, service=key)
            return default
        if info["kind"] == "value" and not remote:
            return self.client.call(key, "__value__")
        return stub_for(self, {**info, "name": key})  # asked by an alias: the handle has that name

    def _info(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.request_json("GET", f"/_tether/objects/{key}")
        except NotFoundError:
            return None

    def delete(self, name: str) -> None:
        """Free an object, or stop an env's worker process (and free all its objects)."""
        self.client.request_json("DELETE", f"/_tether/objects/{name}")

    # -- calls by id --------------------------------------------------------------------------------

    def result(self, call_id: str, timeout: float | None = None) -> Any:
        """The result of a call by id (e.g. after the caller lost its connection); waits while it
        runs. The daemon keeps results within bounds of count and age: past them,
        ``tether.ResultExpiredError``."""
        return self.client.result(call_id, timeout=timeout)

    def cancel(self, call_id: str, force: bool = False) -> bool:
        """Stop a running call; ``force=True`` restarts its worker (objects are re-created)."""
        return bool(self.client.cancel(call_id, force=force).get("cancelled"))

    # -- commands ------------------------------------------------------------------------------------

    def run_bash(self, commands: str | Sequence[str], stream_logs: bool = True,
                 stop_on_error: bool = False, cwd: str | None = None,
                 env_vars: dict[str, str] | None = None, node: Any = None,
                 env: Env | str | list[str] | None = None) -> list:
        """Run shell commands on a node (default: the head), through its daemon.

        Returns ``[(exit_code, stdout, stderr), ...]``; with ``node="all"``, one such list per
        node, in node order. ``env``: run them in that env (see :meth:`run`).
        """
        if isinstance(commands, str):
            commands = [commands]
        options = self._run_options(env, env_vars, cwd, use_default=False)

        def on(index: int) -> list[tuple[int, str, str]]:
            result = self.node_client(index).run(list(commands), "bash", stream_logs=stream_logs,
                                                 stop_on_error=stop_on_error, **options)
            return [tuple(r) for r in result]

        if node == "all":
            return [on(i) for i in self.launcher.select(self, "all")]
        (index,) = self.launcher.select(self, node)
        return on(index)

    def run(self, commands: str | Sequence[str], env: Env | str | list[str] | None = None,
            stream_logs: bool = True, port_forward: Any = None, require_outputs: bool = True,
            node: Any = None, **options: Any) -> list:
        """Runhouse's form of :meth:`run_bash`: ``[(exit_code, stdout, stderr)]`` per command
        (``require_outputs=False``: the exit codes only). ``env`` (default: the cluster's
        ``default_env``) runs them in that env: its interpreter first on ``PATH`` (``python``,
        ``pip`` and the tools of its ``reqs`` are the env's; its venv is built first if need be,
        as for a deploy), its env vars and working dir. ``port_forward`` is ignored (use
        ``ssh_tunnel``); other options are ``run_bash``'s."""
        results = self.run_bash(commands, stream_logs=stream_logs, node=node,
                                env=env if env is not None else self.default_env, **options)
        if require_outputs:
            return results
        if node == "all":
            return [[r[0] for r in per_node] for per_node in results]
        return [r[0] for r in results]

    def run_setup(self, commands: str | Sequence[str]) -> Cluster:
        """Run setup commands on every node once: the nodes remember it, so calling it again
        (this process or a later one, after a restart) skips them, and a changed list runs
        again. The cluster's Image's recorder does it (``reset_image()`` forgets it)."""
        commands = [commands] if isinstance(commands, str) else list(commands)
        apply_image(self, Image(name="run_setup").run_bash(commands))
        return self

    def run_python(self, commands: str | Sequence[str], env: Env | str | list[str] | None = None,
                   stream_logs: bool = True, cwd: str | None = None,
                   env_vars: dict[str, str] | None = None, node: Any = None,
                   **_runhouse_options: Any) -> list[tuple[int, str, str]]:
        """Run Python statements (joined into one program) with the default env's interpreter;
        ``[(exit_code, stdout, stderr)]``. ``env`` as for :meth:`run`."""
        if isinstance(commands, str):
            commands = [commands]
        options = self._run_options(env, env_vars, cwd)
        (index,) = self.launcher.select(self, node)
        result = self.node_client(index).run(["\n".join(commands)], "python", stream_logs=stream_logs, **options)
        return [tuple(r) for r in result]

    def _run_options(self, env: Env | str | list[str] | None, env_vars: dict[str, str] | None,
                     cwd: str | None, use_default: bool = True) -> dict[str, Any]:
        """A command's env vars, working dir and env: ``env``'s (or ``default_env``'s), then the
        caller's own; no env given, none by default: the daemon's interpreter and environment."""
        if env is None and (not use_default or self.default_env is None):
            return {"env_vars": env_vars or {}, "cwd": cwd}
        found = self.resolve_env(env)
        self.client.require("run_env", "run commands in an env (run(..., env=...))")
        env_vars, cwd = self._env_of(found, env_vars, cwd)
        return {"env_vars": env_vars, "cwd": cwd, "env": found.wire_spec()}

    def _env_of(self, env: Env | str | list[str] | None, env_vars: dict[str, str] | None,
                cwd: str | None) -> tuple[dict[str, str], str | None]:
        """A command's env vars and working dir: the env's (or ``default_env``'s), then the
        caller's own."""
        found = self.resolve_env(env)
        return {**found.env_vars, **(env_vars or {})}, cwd if cwd is not None else found.working_dir


_clusters: dict[str, Cluster] = {}
_clusters_lock = threading.Lock()


def cluster(name: str = DEFAULT_CLUSTER, launcher: str | None = None, **spec: Any) -> Cluster:
    """A cluster by name: the saved one, the local default, or a new one from ``launcher``/``spec``.

    ``tether.cluster("local")`` is the embedded default. ``tether.cluster(name="gpu")`` loads a
    cluster saved with ``.save()`` (``default_env=`` alone sets its default env here, as Runhouse's
    ``rh.cluster(name, default_env=...)``). ``tether.cluster(name="small", launcher="local", ...)``
    defines one. Handles are cached per name in this process, so they share one connection.
    """
    if launcher is None and set(spec) == {"default_env"}:
        return _with_default_env(name, cluster(name), spec["default_env"])
    with _clusters_lock:
        if launcher is None and not spec:
            if name in _clusters:
                return _clusters[name]
            try:
                saved = store.find(name)
            except remote.RegistryUnavailableError:
                if name != DEFAULT_CLUSTER:
                    raise
                saved = None  # the local default needs no registry
            if saved is not None:
                config, address = saved
                if config.get("type") != "cluster":
                    raise ConfigError(f"{name!r} is saved as a {config.get('type')}, not a cluster")
                if _shared_with_me(config, address):
                    client = store.registry_client()
                    found = shared_cluster(address.path, config["endpoint"],
                                           lambda: client.grant_token(address.path))
                else:
                    found = Cluster(config["name"], config.get("launcher"), image=config.get("image"),
                                    default_env=config.get("default_env"), **(config.get("spec") or {}))
                found.rns_address = address.rns_address
            elif name == DEFAULT_CLUSTER:
                found = Cluster(DEFAULT_CLUSTER, "local")
            else:
                raise NotFoundError(
                    f"no cluster named {name!r}: none is saved under that name. Define it, e.g. "
                    f"tether.cluster(name={name!r}, launcher='local'), and .save() it to reuse it by name.",
                    cluster=name)
        else:
            found = Cluster(name, launcher, **spec)
            cached = _clusters.get(name)
            if cached is not None and cached.config() == found.config():
                return cached
        _clusters[name] = found
        return found


def _with_default_env(name: str, found: Cluster, default_env: Env | str | list[str] | dict | None) -> Cluster:
    """A handle on the same cluster (and connection) with another ``default_env``, cached as
    this process's handle of ``name`` from now on."""
    env = _default_env(default_env)
    if env == found.default_env:
        return found
    handle = copy.copy(found)
    handle.default_env = env
    with _clusters_lock:
        _clusters[name] = handle
    return handle


def _default_env(value: Env | str | list[str] | dict | None) -> Env | None:
    if value is None:
        return None
    return Env.from_config(value) if isinstance(value, dict) else resolve_env(value)


#: what a launcher takes to accept a team registry's grants (``_config_to_save``)
GRANT_KEYS = frozenset({"registry_key", "registry_path"})


def _shared_with_me(config: dict[str, Any], address: Any) -> bool:
    """A team registry's cluster saved while up that this process calls with grants: another
    user's, or the user's own brought up from another machine (or TETHER_HOME: its records are
    there, so this one reaches it by its endpoint rather than starting one of its own)."""
    endpoint = config.get("endpoint")
    if address.local or not endpoint:
        return False
    owner = address.path.split("/")[1]
    elsewhere = endpoint.get("home") not in (None, home_id()) and "ssh" not in endpoint
    return elsewhere or owner != store.registry_client().whoami()["user"]


#: keywords that ask for machines made on demand (``tether.cluster(name, instance_type=...)``);
#: ``memory``/``cpus`` alone size a local cluster
ONDEMAND_KEYS = frozenset({"instance_type", "accelerators", "provider", "region", "zone", "use_spot",
                           "disk_size", "num_nodes", "open_ports", "context", "namespace",
                           "kube_config_path"})


def _infer_launcher(spec: dict[str, Any]) -> str:
    """Runhouse's forms: ``ips=[...]`` means your own machines over SSH; ``instance_type=``,
    ``provider=``... machines made on demand."""
    if spec.get("ips"):
        return "ssh"
    if any(spec.get(key) is not None for key in ONDEMAND_KEYS):
        return "ondemand"
    return "local"


def ondemand_cluster(name: str, **spec: Any) -> Cluster:
    """A cluster whose machines are made for it (Runhouse's ``rh.ondemand_cluster``).

    Takes ``instance_type``, ``accelerators`` ("A10G:1"), ``cpus``/``memory`` ("4+", "32+"),
    ``disk_size``, ``provider`` ("aws", "gcp", "azure", "lambda", "kubernetes"...), ``region``,
    ``zone``, ``use_spot``, ``num_nodes``, ``image`` (a docker image id), ``autostop_mins`` (default:
    60, -1: never), ``open_ports``; Kubernetes: ``context``, ``namespace``, ``kube_config_path``.
    Nothing is launched until it is used (``up_if_not()``, a deploy).
    """
    return cluster(name, launcher=spec.pop("launcher", None) or "ondemand", **spec)


def shared_cluster(name: str, endpoint: dict[str, Any], token_source: TokenSource) -> Cluster:
    """A handle on a cluster another user owns and shares through the team registry (the
    ``shared`` launcher): its daemon reached at ``endpoint`` (the ``endpoint`` part of the owner's
    ``cluster.config(endpoint=True)``: host, port, TLS fingerprint) with grants from
    ``token_source`` (the registry client's ``POST /v1/grants``), renewed before they expire.
    ``name``: the registry name (``/alice/gpu``; its leading '/' is dropped for the handle)."""
    if "ssh" in endpoint:
        raise ConfigError(f"cluster {name!r} is reached over SSH ({endpoint['ssh'].get('host')}): open a "
                          f"tunnel to its daemon's port {endpoint.get('daemon_port')} with your own SSH login "
                          "(ssh -L) and give that address: shared_cluster(name, {'host': '127.0.0.1', "
                          "'port': <local port>}, token_source)")
    spec = {k: v for k, v in endpoint.items() if k in ("host", "port", "fingerprint") and v is not None}
    found = Cluster(name.lstrip("/"), "shared", path=name, **spec)
    found.token_source = token_source
    return found


def here() -> Cluster:
    """The local cluster (``tether.here``)."""
    return cluster(DEFAULT_CLUSTER)


def resolve_cluster(value: Cluster | str | None) -> Cluster:
    if value is None:
        return here()
    if isinstance(value, Cluster):
        return value
    if isinstance(value, str):
        return cluster(value)
    raise ConfigError(f"expected a tether.cluster(...) or a cluster name, not {type(value).__name__}")
