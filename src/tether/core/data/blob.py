"""Blob: one Python object kept in a file (this machine, a cluster, S3, GCS) or, on a cluster
without a path, in the cluster's object store (``cluster.put`` / ``cluster.get``).

Runhouse's ``rh.blob``: ``rh.blob(data, name=..., path=..., system=...)``, ``.write()``,
``.fetch()``, ``.data``, ``.to(system, path=...)``, ``.rm()``, ``.exists_in_system()``. The file
holds the object pickled, unless ``write(serialize=False)`` is given bytes.
"""

from __future__ import annotations

import os
import pickle
import uuid
from typing import Any

from tether.core.data import systems
from tether.core.data.folder import Folder, _load
from tether.core.resources import Resource
from tether.errors import NotFoundError
from tether.state import tether_home


class Blob(Resource):
    """One object at ``path`` on ``system``; build one with :func:`blob`."""

    RESOURCE_TYPE = "blob"

    def __init__(self, name: str | None = None, path: str | os.PathLike | None = None,
                 system: Any = None, data: Any = None, **_: Any) -> None:
        self.name = name or f"blob_{uuid.uuid4().hex[:12]}"
        self.data = data
        resolved = systems.resolve_system(system, path)
        #: set when the blob lives in a cluster's object store (a cluster and no path)
        self._cluster = resolved if path is None and not isinstance(resolved, str) else None
        self._folder: Folder | None = None
        self._filename = ""
        if self._cluster is None:
            if path is None:
                path = _default_path(resolved, self.name)
            full = systems.normalize_path(resolved, path)
            parent, _, self._filename = full.rstrip("/").rpartition("/")
            self._folder = Folder(path=parent or ("/" if full.startswith("/") else "."), system=resolved)

    @property
    def system(self) -> Any:
        return self._cluster if self._folder is None else self._folder.system

    @property
    def path(self) -> str | None:
        """The file's path, or None for a blob in a cluster's object store."""
        return None if self._folder is None else self._folder._child(self._filename)

    @property
    def fsspec_url(self) -> str:
        if self._folder is None:
            return f"{self._cluster.name}:object:{self.name}"
        return systems.url(self._folder.system, self.path)

    def __repr__(self) -> str:
        return f"<Blob {self.name!r} at {self.fsspec_url}>"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "path": self.path, "system": systems.system_config(self.system)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Blob:
        return cls(name=config.get("name"), path=config.get("path"),
                   system=systems.system_from_config(config.get("system")))

    # -- data ---------------------------------------------------------------------------------------

    def write(self, data: Any = None, serialize: bool = True, mode: str = "wb") -> Blob:
        """Store ``data`` (default: ``.data``): pickled into the file, or as given with
        ``serialize=False`` (bytes or text)."""
        if data is not None:
            self.data = data
        if self._folder is None:
            self._cluster.put(self.name, self.data)
            return self
        payload = pickle.dumps(self.data) if serialize else self.data
        self._folder.put({self._filename: payload}, overwrite=True, mode=mode)
        return self

    def fetch(self, deserialize: bool = True, mode: str = "rb") -> Any:
        """The stored object (also kept as ``.data``)."""
        if self._folder is None:
            marker = object()
            value = self._cluster.get(self.name, default=marker)
            if value is marker:
                raise NotFoundError(f"no blob {self.name!r} in cluster {self._cluster.name!r}'s object "
                                    "store", name=self.name)
        else:
            raw = self._folder.get(self._filename, mode=mode)
            value = pickle.loads(raw) if deserialize else raw
        self.data = value
        return value

    def exists_in_system(self) -> bool:
        if self._folder is None:
            return self.name in self._cluster.keys()
        try:
            return self._folder.contains(self._filename)
        except NotFoundError:
            return False

    def rm(self) -> None:
        """Delete the stored object."""
        if self._folder is None:
            if self.name in self._cluster.keys():
                self._cluster.delete(self.name)
        else:
            self._folder.rm(contents=[self._filename])
        self.data = None

    def to(self, system: Any, path: str | os.PathLike | None = None) -> Blob:
        """A copy on ``system`` (``"here"``, ``"file"``, ``"s3"``, ``"gs"``, a cluster) at ``path``;
        a cluster with no path keeps it in the cluster's object store."""
        if system == "here":
            system = systems.FILE
        data = self.data if self.data is not None else self.fetch()
        return Blob(name=self.name, path=path, system=system).write(data)


def _default_path(system: Any, name: str) -> str:
    leaf = name.rstrip("/").rsplit("/", 1)[-1]
    if system == systems.FILE:
        return str(tether_home() / "blobs" / leaf)
    return f"/tether-blob/{leaf}"


def blob(data: Any = None, name: str | None = None, path: str | os.PathLike | None = None,
         system: Any = None, dryrun: bool = False, **_: Any) -> Blob:
    """A blob holding ``data``, or the blob saved as ``name`` when only a name is given.

        rh.blob(data=[1, 2], name="nums", path="/my-bucket/nums.pkl", system="s3").save()
        rh.blob(name="nums").fetch()             # [1, 2]

    With ``data``, the blob is written at once (as Runhouse does); without a path on a cluster, it
    lives in that cluster's object store; without a path here, under ``$TETHER_HOME/blobs/``.
    """
    if name and data is None and path is None and system is None:
        loaded = _load(name, Blob)
        if loaded is not None:
            return loaded
    new = Blob(name=name, path=path, system=system, data=data)
    if data is not None:
        new.write()
    return new

