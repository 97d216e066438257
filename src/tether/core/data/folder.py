"""Folder: a path on a system (this machine, a cluster, S3, GCS) and what you do with it there.

Runhouse's ``rh.folder``: ``.ls()``, ``.get(name)``, ``.put({name: bytes})``, ``.rm()``,
``.exists_in_system()``, and ``.to(system, path=...)`` / ``.mv(...)`` between any two systems.
A folder is a resource: ``.save()`` keeps its config, ``tether.folder(name=...)`` loads it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tether.core.data import systems
from tether.core.resources import Resource
from tether.errors import ConfigError, NotFoundError


class Folder(Resource):
    """A folder at ``path`` on ``system``; build one with :func:`folder`."""

    RESOURCE_TYPE = "folder"
    DEFAULT_FS = systems.FILE

    def __init__(self, name: str | None = None, path: str | os.PathLike | None = None,
                 system: Any = None, **_: Any) -> None:
        self.name = name
        self._system = systems.resolve_system(system, path)
        leaf = (name or "").rstrip("/").rsplit("/", 1)[-1] or uuid.uuid4().hex
        self._path = (systems.normalize_path(self._system, path) if path is not None
                      else systems.default_path(self._system, leaf))
        self._store: systems.Store | None = None

    # -- where --------------------------------------------------------------------------------------

    @property
    def system(self) -> Any:
        """``"file"``, ``"s3"``, ``"gs"`` or the cluster the folder is on."""
        return self._system

    @system.setter
    def system(self, value: Any) -> None:
        self._system = systems.resolve_system(value, self._path)
        self._store = None

    @property
    def path(self) -> str:
        return self._path

    @path.setter
    def path(self, value: str | os.PathLike) -> None:
        self._path = systems.normalize_path(self._system, value)

    @property
    def fsspec_url(self) -> str:
        """The folder as a URL: ``file:///...``, ``s3://bucket/key``, ``cluster:path``."""
        return systems.url(self._system, self._path)

    @property
    def local_path(self) -> str | None:
        """The path on this machine, when the folder is on this machine."""
        return self._path if systems.on_this_machine(self._system) else None

    def is_local(self) -> bool:
        return self.local_path is not None and os.path.exists(self._path)

    @property
    def store(self) -> systems.Store:
        if self._store is None:
            self._store = systems.store(self._system)
        return self._store

    def _child(self, name: str) -> str:
        return f"{self._path.rstrip('/')}/{name.lstrip('/')}"

    def __repr__(self) -> str:
        return f"<Folder {self.fsspec_url}>"

    # -- config ---------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {**super().config(), "path": self._path, "system": systems.system_config(self._system)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Folder:
        new = cls.__new__(cls)
        new.name = config.get("name")
        new._system = systems.system_from_config(config.get("system"))
        new._path = config["path"]
        new._store = None
        return new

    def _copy(self, system: Any, path: str) -> Folder:
        """This folder's config on another system and path (not saved)."""
        return type(self).from_config({**self.config(), "system": system, "path": path})

    # -- contents -------------------------------------------------------------------------------------

    def ls(self, full_paths: bool = True, sort: bool = False) -> list[str]:
        """What is in the folder: full paths (URLs on object stores), or names with
        ``full_paths=False``; ``sort=True``: newest first. NotFoundError if the folder is missing."""
        entries = self.store.listing(self._path)
        entries.sort(key=(lambda e: -e[1]) if sort else (lambda e: e[0]))
        if not full_paths:
            return [name for name, _ in entries]
        if isinstance(self._system, str) and self._system in systems.STORES:
            return [systems.url(self._system, self._child(name)) for name, _ in entries]
        return [self._child(name) for name, _ in entries]

    def exists_in_system(self) -> bool:
        """Whether the folder exists on its system."""
        return self.store.isdir(self._path)

    def contains(self, name: str) -> bool:
        return name in self.ls(full_paths=False)

    def mkdir(self) -> Folder:
        """Create the folder if it is missing (on S3/GCS: its bucket)."""
        self.store.makedirs(self._path)
        return self

    def get(self, name: str, mode: str = "rb", encoding: str | None = None) -> bytes | str:
        """The contents of the file ``name`` in the folder: bytes, or text when ``mode`` has no ``b``."""
        data = self.store.read(self._child(name))
        return data if "b" in mode else data.decode(encoding or "utf-8")

    def open(self, name: str, mode: str = "rb", encoding: str | None = None) -> Any:
        """A file object for ``name`` (on this machine, S3 or GCS; use it in a ``with``)."""
        store = self.store
        if not isinstance(store, systems.FsspecStore):
            raise ConfigError(f"open() works on this machine and on object stores; on a cluster use "
                              f"get()/put(), or .to('here') first ({self.fsspec_url})")
        if store.local:
            if "r" not in mode:
                Path(self._path).mkdir(parents=True, exist_ok=True)
            return open(self._child(name), mode, encoding=encoding)  # noqa: SIM115 - the caller closes it
        return store.fs.open(store._p(self._child(name)), mode, encoding=encoding)

    def put(self, contents: dict[str, Any], overwrite: bool = False, mode: str = "wb") -> None:
        """Write files into the folder: ``{"name.txt": data}``. Bytes are written as they are, text
        as UTF-8, anything else pickled. Existing files raise FileExistsError unless ``overwrite``."""
        if not isinstance(contents, dict):
            raise TypeError("put() takes a dict of file names to contents, e.g. {'a.txt': b'...'}")
        self.mkdir()
        if not overwrite:
            existing = set(self.ls(full_paths=False)) & set(contents)
            if existing:
                raise FileExistsError(f"{', '.join(sorted(existing))} already in {self.fsspec_url}; "
                                      "pass overwrite=True to replace")
        for filename, value in contents.items():
            self.store.write(self._child(filename), _as_bytes(value))

    def rm(self, contents: list[str] | None = None, recursive: bool = True) -> None:
        """Delete the folder, or only the names in ``contents``."""
        if contents:
            for name in contents:
                self.store.rm(self._child(name), recursive=recursive)
        else:
            self.store.rm(self._path, recursive=recursive)

    # -- moving -----------------------------------------------------------------------------------------

    def to(self, system: Any, path: str | os.PathLike | None = None) -> Folder:
        """A copy of the folder on ``system`` (``"here"``, ``"file"``, ``"s3"``, ``"gs"``, a cluster)
        at ``path`` (default: ``./<folder name>`` here, ``~/.cache/tether/<name>`` on a cluster,
        ``/tether-folder/<name>`` on an object store). Returns the new folder."""
        leaf = Path(self._path.rstrip("/")).name
        if system == "here":
            system = systems.FILE
            path = path if path is not None else Path.cwd() / leaf
        dest_system = systems.resolve_system(system, path)
        dest_path = (systems.normalize_path(dest_system, path) if path is not None
                     else systems.default_path(dest_system, (self.name or leaf).rsplit("/", 1)[-1]))
        dest = self._copy(systems.system_config(dest_system), dest_path)
        dest._system = dest_system
        _copy_tree(self, dest)
        return dest

    def mv(self, system: Any, path: str | os.PathLike | None = None, overwrite: bool = True) -> None:
        """Move the folder to ``path`` on ``system``; this folder then points there."""
        if path is None:
            raise ConfigError("mv() needs a destination path, e.g. folder.mv('s3', '/bucket/key')")
        dest_system = systems.resolve_system("file" if system == "here" else system, path)
        dest_path = systems.normalize_path(dest_system, path)
        if systems.on_this_machine(self._system) and systems.on_this_machine(dest_system):
            if os.path.exists(dest_path) and not overwrite:
                raise FileExistsError(f"{dest_path} exists; pass overwrite=True to replace it")
            if not os.path.isdir(self._path):
                raise NotFoundError(f"no folder at {self._path} to move", path=self._path)
            Path(dest_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(self._path, dest_path)
        else:
            moved = self.to(dest_system, dest_path)
            self.rm()
            dest_system, dest_path = moved.system, moved.path
        self._system, self._path, self._store = dest_system, dest_path, None


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return pickle.dumps(value)


def _copy_tree(src: Folder, dest: Folder) -> None:
    """Copy the contents of ``src`` into ``dest``: directly when one side is this machine, through
    a temporary folder here otherwise (cluster to S3, cluster to cluster)."""
    if not src.exists_in_system():
        raise NotFoundError(f"no folder at {src.fsspec_url} to copy", path=src.path)
    if src.fsspec_url == dest.fsspec_url:
        return  # already there (Runhouse's .to("here") of a folder in the current directory)
    if src.store.local:
        dest.store.upload(src.path, dest.path)
    elif dest.store.local:
        src.store.download(src.path, dest.path)
    else:
        with tempfile.TemporaryDirectory(prefix="tether-folder-") as tmp:
            src.store.download(src.path, tmp)
            dest.store.upload(tmp, dest.path)


def folder(name: str | None = None, path: str | os.PathLike | None = None, system: Any = None,
           dryrun: bool = False) -> Folder:
    """A folder at ``path`` on ``system`` (``"file"`` by default, ``"s3"``, ``"gs"``, or a cluster),
    or the folder saved as ``name`` when only a name is given.

        rh.folder(name="training_imgs", path="/bucket/images", system="s3").save()
        rh.folder(name="training_imgs")          # loads it
    """
    if name and path is None and system is None:
        loaded = _load(name, Folder)
        if loaded is not None:
            return loaded
    return Folder(name=name, path=path, system=system)


def _load(name: str, cls: type[Resource]) -> Any:
    """The resource saved as ``name`` if it is a ``cls``; None if nothing is saved there (Runhouse
    then makes a new one with that name)."""
    from tether.core.resources import load

    try:
        found = load(name)
    except NotFoundError:
        return None
    if not isinstance(found, cls):
        raise ConfigError(f"{name!r} is saved as a {found.RESOURCE_TYPE}, not a {cls.RESOURCE_TYPE}")
    return found
