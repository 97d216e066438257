"""Installed distributions back into wheels, for nodes that install with ``pip --no-index``.

``repack(dist)``: the files an installed distribution put under site-packages, its data files
(under the environment's prefix, e.g. Jupyter's ``share/jupyter/...``: back into the wheel's
``<name>.data/data/``), and its metadata, with a fresh RECORD (scripts are left out: nodes run
``python -m``), and the modules' bytecode this interpreter compiled, as *checked-hash* pycs (valid
for the same source whatever its mtime on the node, which the installer sets): a node with the same
Python minor imports them without compiling (a fresh node's first daemon start compiled FastAPI,
pydantic, uvicorn... for seconds), another one ignores them (their file names carry the tag).
``repack_editable(dist, package)``: the same for an editable install, whose
installed files are the source tree itself: the package folder, and the metadata pip wrote when
it installed it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

_SKIP_IN_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def wheel_tags(dist: md.Distribution) -> frozenset:
    """The tags of the wheel ``dist`` was installed from (its WHEEL file)."""
    from packaging.tags import parse_tag

    text = dist.read_text("WHEEL") or ""
    found: set = set()
    for line in text.splitlines():
        if line.startswith("Tag:"):
            found |= parse_tag(line.split(":", 1)[1].strip())
    return frozenset(found)


def editable_root(dist: md.Distribution) -> Path | None:
    """The folder an editable install points at (its ``direct_url.json``), else None."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return None
    url = info.get("url", "")
    if not info.get("dir_info", {}).get("editable") or not url.startswith("file://"):
        return None
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(url).path))


def _wheel_name(dist: md.Distribution) -> str | None:
    tags = sorted(wheel_tags(dist), key=str)
    if not tags:
        return None
    interpreters = ".".join(sorted({t.interpreter for t in tags}))
    abis = ".".join(sorted({t.abi for t in tags}))
    platforms = ".".join(sorted({t.platform for t in tags}))
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    return f"{name}-{dist.version}-{interpreters}-{abis}-{platforms}.whl"


def _metadata_files(dist: md.Distribution) -> Iterable[tuple[str, Path]]:
    for entry in dist.files or ():
        parts = entry.parts
        if parts and parts[0].endswith(".dist-info") and ".." not in parts:
            if len(parts) == 2 and parts[1] in _SKIP_IN_DIST_INFO:
                continue
            yield "/".join(parts), Path(dist.locate_file(entry))


def repack(dist: md.Distribution, folder: Path, bytecode: bool = True) -> Path | None:
    """An installed distribution back into a wheel in ``folder`` (None: it cannot be: no RECORD,
    no WHEEL tags); ``bytecode``: with the checked-hash pycs of its modules."""
    if not dist.files:
        return None
    filename = _wheel_name(dist)
    if filename is None:
        return None
    files: list[tuple[str, Path | bytes]] = []
    info_dir = next((e.parts[0] for e in dist.files if e.parts and e.parts[0].endswith(".dist-info")), "")
    data = f"{info_dir.removesuffix('.dist-info')}.data/data"  # the wheel's data folder, by its metadata's name
    for entry in dist.files:
        parts = entry.parts
        if "__pycache__" in parts or entry.suffix == ".pyc" or parts[0].endswith(".dist-info"):
            continue
        if ".." in parts:
            outside = _data_file(Path(dist.locate_file(entry)))
            if outside is not None:
                files.append((f"{data}/{outside}", Path(dist.locate_file(entry))))
            continue
        arcname, path = "/".join(parts), Path(dist.locate_file(entry))
        files.append((arcname, path))
        if bytecode and entry.suffix == ".py":
            compiled = checked_bytecode(path)
            if compiled is not None:
                files.append((f"{arcname.rpartition('/')[0]}/__pycache__/{compiled[0]}".lstrip("/"), compiled[1]))
    return _write(folder / filename, files, list(_metadata_files(dist)))


def _data_file(path: Path) -> str | None:
    """Where a file installed outside site-packages goes under the node's prefix (its path
    relative to this environment's prefix), or None: a script (``bin/``: its first line names
    this machine's interpreter), or a file outside the prefix."""
    try:
        rel = Path(os.path.normpath(path)).relative_to(os.path.normpath(sys.prefix))
    except ValueError:
        return None
    if not rel.parts or rel.parts[0] in ("bin", "Scripts") or ".." in rel.parts:
        return None
    return rel.as_posix()


def checked_bytecode(source: Path) -> tuple[str, bytes] | None:
    """``source``'s pyc from its ``__pycache__`` (file name, bytes) as a checked-hash pyc (PEP 552:
    Python hashes the source it finds and uses the code when the hash matches), or None when this
    interpreter has no current pyc of it."""
    import importlib.util

    try:
        pyc = Path(importlib.util.cache_from_source(str(source)))
        data = pyc.read_bytes()
        src = source.read_bytes()
        stat = source.stat()
    except (OSError, ValueError, NotImplementedError):
        return None
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
        return None
    flags = int.from_bytes(data[4:8], "little")
    digest = importlib.util.source_hash(src)
    if flags & 1:  # hash-based already: current when its hash is the source's
        current = data[8:16] == digest
    else:  # timestamp-based: current when it names the source's mtime and size
        current = (data[8:12] == (int(stat.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
                   and data[12:16] == (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    if not current:
        return None
    return pyc.name, data[:4] + (0b11).to_bytes(4, "little") + digest + data[16:]


def repack_editable(dist: md.Distribution, package: Path, folder: Path) -> Path | None:
    """A wheel of an editable install: the files of ``package`` (a folder of the source tree the
    install points at) and the metadata the install wrote. None when it has no metadata."""
    filename = _wheel_name(dist)
    if filename is None:
        return None
    files = [(f"{package.name}/{path.relative_to(package).as_posix()}", path)
             for path in sorted(package.rglob("*"))
             if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"]
    return _write(folder / filename, files, list(_metadata_files(dist)))


def _write(target: Path, files: list[tuple[str, Path | bytes]], metadata: list[tuple[str, Path]]) -> Path | None:
    """A wheel of ``files`` and ``metadata`` (arcname, path or the bytes themselves) with its
    RECORD, written whole."""
    if target.exists():
        return target
    info_dirs = {arcname.split("/", 1)[0] for arcname, _ in metadata}
    if len(info_dirs) != 1:
        return None
    info_dir = info_dirs.pop()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    record_rows = []
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for arcname, path in [*files, *metadata]:
            if isinstance(path, bytes):
                data = path
            elif path.is_file():
                data = path.read_bytes()
            else:
                continue
            zf.writestr(zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0)), data,
                        compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record_rows.append((arcname, f"sha256={digest}", str(len(data))))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(record_rows)
        writer.writerow((f"{info_dir}/RECORD", "", ""))
        zf.writestr(f"{info_dir}/RECORD", out.getvalue())
    os.replace(tmp, target)
    return target
