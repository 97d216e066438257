"""Table: tabular data (a pandas DataFrame or a pyarrow Table) kept as parquet on any system.

Runhouse's ``rh.table``: ``rh.table(data, name=..., path=..., system=...)``, ``.write()``,
``.fetch()`` (a pyarrow Table), ``.to_pandas()``, ``.stream(batch_size)``, iteration over rows,
``len()``, ``.to(system, path=...)``, ``.rm()``, ``.exists_in_system()``. A path ending in
``.parquet`` is the file itself; any other path is a folder holding ``table.parquet``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

from tether.core.data import systems
from tether.core.data.folder import Folder, _load
from tether.core.resources import Resource
from tether.errors import ConfigError, NotFoundError, install_hint

DEFAULT_FILE = "table.parquet"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ConfigError(f"tables need pyarrow, which is not installed: {install_hint('data')}") from exc
    return pyarrow


class Table(Resource):
    """Parquet at ``path`` on ``system``; build one with :func:`table`."""

    RESOURCE_TYPE = "table"
    DEFAULT_BATCH_SIZE = 256

    def __init__(self, name: str | None = None, path: str | os.PathLike | None = None,
                 system: Any = None, data: Any = None, **_: Any) -> None:
        self.name = name
        self._cached_data = data
        self._unwritten = data is not None
        resolved = systems.resolve_system(system, path)
        text = str(path) if path is not None else None
        if text is not None and text.endswith(".parquet"):
            folder_path, _, self.file_name = text.rstrip("/").rpartition("/")
            folder_path = folder_path or "."
        else:
            self.file_name = DEFAULT_FILE
            folder_path = text
        if folder_path is None:
            leaf = (name or "").rstrip("/").rsplit("/", 1)[-1] or uuid.uuid4().hex
            folder_path = systems.default_path(resolved, f"tables/{leaf}")
        self._folder = Folder(path=folder_path, system=resolved)

    @property
    def system(self) -> Any:
        return self._folder.system

    @property
    def path(self) -> str:
        """The parquet file's path."""
        return self._folder._child(self.file_name)

    @property
    def fsspec_url(self) -> str:
        return systems.url(self.system, self.path)

    @property
    def data(self) -> Any:
        """The table's data: what it was given, else what ``fetch()`` reads."""
        if self._cached_data is None:
            self.fetch()
        return self._cached_data

    @data.setter
    def data(self, value: Any) -> None:
        self._cached_data = value
        self._unwritten = value is not None

    def __repr__(self) -> str:
        return f"<Table {self.name or ''} at {self.fsspec_url}>"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "path": self.path, "system": systems.system_config(self.system)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Table:
        return cls(name=config.get("name"), path=config["path"],
                   system=systems.system_from_config(config.get("system")))

    # -- data ---------------------------------------------------------------------------------------

    def write(self) -> Table:
        """Write the table's data as parquet to its path."""
        pa = _pyarrow()
        if self._cached_data is None:
            raise ConfigError(f"table {self.name or self.fsspec_url!r} has no data to write: pass "
                              "rh.table(data=...) or set .data")
        arrow = _as_arrow(self._cached_data)
        sink = pa.BufferOutputStream()
        pa.parquet.write_table(arrow, sink)
        self._folder.put({self.file_name: sink.getvalue().to_pybytes()}, overwrite=True)
        self._unwritten = False
        return self

    def save(self, name: str | None = None, **kwargs: Any) -> Table:
        """Save the table's config by name, writing its data first if it was not written yet
        (as Runhouse's ``rh.table(data=..., name=...).save()`` does)."""
        if self._unwritten:
            self.write()
        return super().save(name, **kwargs)

    def fetch(self, columns: list[str] | None = None) -> Any:
        """The whole table as a ``pyarrow.Table`` (only ``columns`` if given)."""
        pa = _pyarrow()
        raw = self._folder.get(self.file_name)
        arrow = pa.parquet.read_table(pa.BufferReader(raw), columns=columns)
        if columns is None:
            self._cached_data = arrow
        return arrow

    def to_pandas(self) -> Any:
        return _as_arrow(self.data).to_pandas()

    def stream(self, batch_size: int = DEFAULT_BATCH_SIZE, as_pandas: bool = False) -> Iterator[Any]:
        """The table in batches of ``batch_size`` rows (pyarrow RecordBatches, or DataFrames)."""
        for batch in _as_arrow(self.data).to_batches(max_chunksize=batch_size):
            yield batch.to_pandas() if as_pandas else batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The rows, each a dict of column -> value."""
        for batch in self.stream():
            yield from batch.to_pylist()

    def __len__(self) -> int:
        return _as_arrow(self.data).num_rows

    def exists_in_system(self) -> bool:
        try:
            return self._folder.contains(self.file_name)
        except NotFoundError:
            return False

    def rm(self, recursive: bool = True) -> None:
        """Delete the parquet file (and its folder when nothing else is in it)."""
        self._folder.rm(contents=[self.file_name])
        if recursive and self._folder.exists_in_system() and not self._folder.ls():
            self._folder.rm()

    def to(self, system: Any, path: str | os.PathLike | None = None) -> Table:
        """A copy of the table on ``system`` (``"here"``, ``"file"``, ``"s3"``, ``"gs"``, a cluster)."""
        if system == "here":
            system = systems.FILE
        return Table(name=self.name, path=path, system=system, data=self.data).write()


def _as_arrow(data: Any) -> Any:
    pa = _pyarrow()
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, dict):
        return pa.table(data)
    raise ConfigError(f"a table holds a pandas DataFrame, a pyarrow Table or a dict of columns, not "
                      f"{type(data).__name__}")


def table(data: Any = None, name: str | None = None, path: str | os.PathLike | None = None,
          system: Any = None, dryrun: bool = False, **_: Any) -> Table:
    """A table holding ``data``, or the table saved as ``name`` when only a name is given.

        rh.table(data=df, name="sales", path="/my-bucket/sales.parquet", system="s3").write().save()
        rh.table(name="sales").to_pandas()
    """
    if name and data is None and path is None and system is None:
        loaded = _load(name, Table)
        if loaded is not None:
            return loaded
    return Table(name=name, path=path, system=system, data=data)
