"""Where data lives: a *system* (``"file"``, ``"s3"``, ``"gs"`` or a cluster) and a *store* that
reads and writes paths on it.

Object stores go through fsspec and its own plugins (s3fs, gcsfs: the ``data`` extra), imported
only when first used. The local cluster is this machine, so its store is the local filesystem; any
other cluster is reached with rsync over its SSH connection (``cluster.rsync``) for file contents,
and through its daemon (``cluster.run_python``) for listings and deletes.

Paths: on this machine, relative paths are relative to the current directory; on a cluster, to the
node user's home (as rsync and Runhouse have it); on an object store, ``/bucket/key``,
``bucket/key`` and ``s3://bucket/key`` are the same place.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.errors import ConfigError, NotFoundError, TetherError, install_hint

if TYPE_CHECKING:
    from tether.core.cluster import Cluster

FILE = "file"
#: fsspec protocol -> (the plugin module it needs, the extra that installs it)
STORES: dict[str, str] = {"s3": "s3fs", "gs": "gcsfs"}
_ALIASES = {"gcs": "gs", "local_file": FILE, "here": FILE}

System = Any  # "file" | "s3" | "gs" | Cluster


def resolve_system(system: Any, path: str | os.PathLike | None = None) -> System:
    """``system=`` as a folder keeps it: ``"file"``, ``"s3"``, ``"gs"``, or a Cluster.

    None means this machine, unless ``path`` is a URL (``s3://...``). Another string names a
    cluster (``"local"`` is the local cluster).
    """
    from tether.core.cluster import Cluster, cluster

    if system is None:
        scheme = _scheme(path)
        return scheme or FILE
    if isinstance(system, Cluster):
        return system
    if isinstance(system, str):
        system = _ALIASES.get(system, system)
        if system == FILE or system in STORES:
            return system
        return cluster(system)
    raise ConfigError(f"system= takes 'file', 's3', 'gs', a cluster or a cluster's name, not "
                      f"{type(system).__name__}")


def _scheme(path: Any) -> str | None:
    text = str(path) if path is not None else ""
    for protocol in (*STORES, "gcs"):
        if text.startswith(f"{protocol}://"):
            return _ALIASES.get(protocol, protocol)
    return None


def system_config(system: System) -> Any:
    """What a saved config holds for ``system``: the string, or the cluster's own config."""
    return system if isinstance(system, str) else system.config()


def system_from_config(value: Any) -> System:
    if isinstance(value, dict):
        from tether.core.resources import from_config

        return from_config(value)
    return resolve_system(value)


def system_label(system: System) -> str:
    return system if isinstance(system, str) else f"cluster {system.name!r}"


def on_this_machine(system: System) -> bool:
    """Whether paths on ``system`` are paths of this machine's filesystem (the local cluster)."""
    if system == FILE:
        return True
    if isinstance(system, str):
        return False
    launcher = system.launcher
    return "rsync" in launcher.unsupported or not hasattr(launcher, "rsync")


def normalize_path(system: System, path: str | os.PathLike) -> str:
    """The path as a folder keeps it on ``system`` (see the module's docstring)."""
    text = str(path)
    if system == FILE:
        return str(Path(text).expanduser().absolute())
    if isinstance(system, str):  # an object store: "/bucket/key"
        scheme = _scheme(text)
        if scheme:
            text = text.split("://", 1)[1]
        return "/" + text.strip("/")
    if on_this_machine(system):  # the local cluster: relative to the home folder, as on any node
        return str(Path.home() / Path(text).expanduser()) if not text.startswith("/") else text
    return text[2:] if text.startswith("~/") else text  # rsync's remote paths start at home


def default_path(system: System, name: str) -> str:
    """Where a folder with no ``path=`` goes (Runhouse's places, with tether's names)."""
    if system == FILE:
        return str(Path.cwd() / name)
    if isinstance(system, str):
        return f"/tether-folder/{name}"
    return normalize_path(system, f".cache/tether/{name}")


def url(system: System, path: str) -> str:
    if system == FILE:
        return f"file://{path}"
    if isinstance(system, str):
        return f"{system}://{path.lstrip('/')}"
    return f"{system.name}:{path}"


def store(system: System) -> Store:
    """The store that reads and writes paths on ``system``."""
    if on_this_machine(system):
        return FsspecStore(FILE)
    if isinstance(system, str):
        return FsspecStore(system)
    return NodeStore(system)


class Store:
    """Reads and writes paths on one system. Paths are as :func:`normalize_path` keeps them."""

    #: paths of this store are paths on this machine
    local = False

    def listing(self, path: str) -> list[tuple[str, float]]:
        """(name, modified time) of each entry of the folder ``path``; NotFoundError if none."""
        raise NotImplementedError

    def isdir(self, path: str) -> bool:
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        raise NotImplementedError

    def write(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def rm(self, path: str, recursive: bool = True) -> None:
        raise NotImplementedError

    def makedirs(self, path: str) -> None:
        raise NotImplementedError

    def download(self, path: str, local_dir: str) -> None:
        """Copy what is inside the folder ``path`` into ``local_dir`` on this machine."""
        raise NotImplementedError

    def upload(self, local_dir: str, path: str) -> None:
        """Copy what is inside ``local_dir`` on this machine into the folder ``path``."""
        raise NotImplementedError


def fsspec_filesystem(protocol: str) -> Any:
    """fsspec's filesystem for ``protocol``, naming the install line when its plugin is missing.

    S3 honours the usual AWS settings (``AWS_ENDPOINT_URL`` for an S3-compatible server).
    """
    plugin = STORES.get(protocol)
    try:
        if plugin:
            importlib.import_module(plugin)
        import fsspec
    except ImportError as exc:
        needs = f"{plugin} (fsspec's {protocol}:// plugin)" if plugin else "fsspec"
        raise ConfigError(f"{protocol}:// paths need {needs}, which is not installed: "
                          f"{install_hint('data')}") from exc
    return fsspec.filesystem(protocol)


class FsspecStore(Store):
    """This machine's filesystem, S3 or GCS, through fsspec."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.local = protocol == FILE
        self._fs: Any = None

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = fsspec_filesystem(self.protocol)
        return self._fs

    def _p(self, path: str) -> str:
        return path if self.local else path.lstrip("/")

    def listing(self, path: str) -> list[tuple[str, float]]:
        if self.local:  # plain os calls: no fsspec import for local folders
            if not os.path.isdir(path):
                raise NotFoundError(f"no folder at {path}", path=path)
            return [(e.name, e.stat().st_mtime) for e in os.scandir(path)]
        try:
            entries = self.fs.ls(self._p(path), detail=True, refresh=True)
        except FileNotFoundError:
            raise NotFoundError(f"no folder at {self.protocol}://{self._p(path)}", path=path) from None
        out = []
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            modified = entry.get("LastModified") or entry.get("updated") or 0
            out.append((name, modified.timestamp() if hasattr(modified, "timestamp") else 0.0))
        return out

    def isdir(self, path: str) -> bool:
        if self.local:
            return os.path.isdir(path)
        self.fs.invalidate_cache(self._p(path))  # another process may have written there
        return bool(self.fs.isdir(self._p(path)))

    def read(self, path: str) -> bytes:
        try:
            if self.local:
                return Path(path).read_bytes()
            return self.fs.cat_file(self._p(path))
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(f"no file at {url(self.protocol, path)}", path=path) from None

    def write(self, path: str, data: bytes) -> None:
        if self.local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
        else:
            self.fs.pipe_file(self._p(path), data)

    def rm(self, path: str, recursive: bool = True) -> None:
        if self.local:
            if os.path.isdir(path):
                shutil.rmtree(path) if recursive else os.rmdir(path)
            elif os.path.lexists(path):
                os.remove(path)
            return
        if self.fs.exists(self._p(path)):
            self.fs.rm(self._p(path), recursive=recursive)

    def makedirs(self, path: str) -> None:
        if self.local:
            Path(path).mkdir(parents=True, exist_ok=True)
        else:  # S3 has no folders; this makes the bucket when it is missing
            bucket = self._p(path).split("/", 1)[0]
            if not self.fs.exists(bucket):
                self.fs.mkdir(bucket)

    def download(self, path: str, local_dir: str) -> None:
        if self.local:
            shutil.copytree(path, local_dir, dirs_exist_ok=True)
            return
        root = self._p(path).rstrip("/")
        self.fs.invalidate_cache(root)
        files = self.fs.find(root)
        if not files and not self.fs.isdir(root):
            raise NotFoundError(f"no folder at {self.protocol}://{root}", path=path)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for remote in files:
            target = Path(local_dir) / remote[len(root):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(remote, str(target))

    def upload(self, local_dir: str, path: str) -> None:
        if self.local:
            shutil.copytree(local_dir, path, dirs_exist_ok=True)
            return
        self.makedirs(path)
        root = self._p(path).rstrip("/")
        for file in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            self.fs.put_file(str(file), f"{root}/{file.relative_to(local_dir).as_posix()}")


# One program for the listings and deletes a remote node does through its daemon: the operation
# and its arguments travel as JSON, the answer comes back as one JSON line on stdout.
_NODE_PROGRAM = """
import json, os, shutil
op, path, arg = json.loads({args!r})
path = os.path.join(os.path.expanduser("~"), os.path.expanduser(path))
if op == "listing":
    out = [[e.name, e.stat().st_mtime] for e in os.scandir(path)] if os.path.isdir(path) else None
elif op == "isdir":
    out = os.path.isdir(path)
elif op == "makedirs":
    os.makedirs(path, exist_ok=True); out = True
elif op == "rm":
    if os.path.isdir(path) and arg:
        shutil.rmtree(path)
    elif os.path.isdir(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.remove(path)
    out = True
print("TETHER-DATA " + json.dumps(out))
"""


class NodeStore(Store):
    """The head node of a remote cluster: rsync over SSH for contents, its daemon for the rest."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def _op(self, op: str, path: str, arg: Any = None) -> Any:
        program = _NODE_PROGRAM.format(args=json.dumps([op, path, arg]))
        ((code, out, err),) = self.cluster.run_python(program, stream_logs=False)
        for line in reversed(str(out).splitlines()):
            if line.startswith("TETHER-DATA "):
                return json.loads(line[len("TETHER-DATA "):])
        raise TetherError(f"{op} {path!r} on cluster {self.cluster.name!r} failed (exit {code}): "
                          f"{str(err).strip()[-2000:]}")

    def listing(self, path: str) -> list[tuple[str, float]]:
        found = self._op("listing", path)
        if found is None:
            raise NotFoundError(f"no folder at {path} on cluster {self.cluster.name!r}", path=path)
        return [(name, mtime) for name, mtime in found]

    def isdir(self, path: str) -> bool:
        return bool(self._op("isdir", path))

    def makedirs(self, path: str) -> None:
        self._op("makedirs", path)

    def rm(self, path: str, recursive: bool = True) -> None:
        self._op("rm", path, recursive)

    def read(self, path: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="tether-data-") as tmp:
            target = Path(tmp) / "file"
            try:
                self.cluster.rsync(path, str(target), up=False)
            except TetherError:
                if not self._op("isdir", str(Path(path).parent)) or not target.exists():
                    raise NotFoundError(f"no file at {path} on cluster {self.cluster.name!r}",
                                        path=path) from None
                raise
            return target.read_bytes()

    def write(self, path: str, data: bytes) -> None:
        self.makedirs(str(Path(path).parent))
        with tempfile.TemporaryDirectory(prefix="tether-data-") as tmp:
            source = Path(tmp) / Path(path).name
            source.write_bytes(data)
            self.cluster.rsync(str(source), path, up=True)

    def download(self, path: str, local_dir: str) -> None:
        if not self.isdir(path):
            raise NotFoundError(f"no folder at {path} on cluster {self.cluster.name!r}", path=path)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        self.cluster.rsync(path, local_dir, up=False, contents=True)

    def upload(self, local_dir: str, path: str) -> None:
        self.makedirs(path)
        self.cluster.rsync(local_dir, path, up=True, contents=True)
