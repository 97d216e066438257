"""The manifest: what was deployed on this daemon, on disk, so that the next daemon of the same
state dir (after a crash, a kill -9, ``restart_server()``) makes it again.

Layout, under ``<state dir>/manifest/`` (mode 0700; every file written whole and private through
``tether.state.write_private``, so a daemon killed mid-write leaves the old file or the new one)::

    objects/<name>.json       one object: its deploy meta (import path, env, kind...), interface,
                              creation time, node, and the name of its payload file; or, for an
                              object too big to keep, why it was not kept (``kept: false``)
    payloads/<name>.<r>.bin   the payload frames exactly as the deployer sent them (pickled
                              constructor arguments, a pickled value or function), as one wire message
    envs/<name>.json          an env's spec (reqs, env vars, working dir, interpreter)
    aliases.json              other names of objects (``fn.save(name=...)``): {alias: object's name}
    owner.json                the daemon that keeps the manifest now (pid, start time)
    exit.json                 written when that daemon stops cleanly: its absence at the next start
                              means it was killed or crashed

One file per object, not an append-only log: a deploy writes only its own object (a 10,000th
object costs what the first did), a delete is an unlink, a torn write can only lose the write in
progress, and there is nothing to compact. The payload is written first and its record second
(the record is the commit point); a payload that no record names is removed at the next start.

Bounds (read when the daemon starts): ``TETHER_MANIFEST_MAX_OBJECT_BYTES`` (default 16 MiB) per
object and ``TETHER_MANIFEST_MAX_BYTES`` (default 256 MiB) in all. An object over either is not
kept: its deployer is told so at once, and after a restart the name is listed under ``lost`` in
``/_tether/status`` and a call to it answers 404 saying why (so nothing is lost silently).
Results kept by ``.remote()`` live only in their worker's memory and are never kept.

Writes run on one thread of their own, in the order they were asked for, so that the event loop
never waits on the disk and a delete never overtakes the deploy before it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether import state
from tether.protocol import wire

log = logging.getLogger("tether.daemon")

VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")  # the names a deploy accepts (app.py)


def _size_env(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name, default)))
    except ValueError:
        log.warning("%s=%r is not a number of bytes; using %d", name, os.environ.get(name), default)
        return default


@dataclass
class Loaded:
    """What a daemon found in its manifest when it started."""

    envs: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)  # records, payload not read yet
    lost: dict[str, str] = field(default_factory=dict)  # name -> why it did not come back
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> the object's own name
    previous: dict[str, Any] | None = None  # the daemon that kept it: pid, started, and how it ended


class Manifest:
    """One daemon's manifest (see the module docstring). Methods that write are coroutines run
    on the manifest's own thread; ``load`` runs once, before the daemon serves."""

    def __init__(self, state_dir: Path, max_object: int | None = None, max_total: int | None = None) -> None:
        self.root = state_dir / state.MANIFEST
        self.objects_dir, self.payloads_dir = self.root / "objects", self.root / "payloads"
        self.envs_dir = self.root / "envs"
        self.max_object = max_object if max_object is not None else _size_env(
            "TETHER_MANIFEST_MAX_OBJECT_BYTES", 16 << 20)
        self.max_total = max_total if max_total is not None else _size_env(
            "TETHER_MANIFEST_MAX_BYTES", 256 << 20)
        self.sizes: dict[str, int] = {}  # name -> payload bytes kept (change it through _size)
        self._total = 0  # their sum, kept as they change: a sum per deploy made the N-th one O(N)
        self.off = False  # forgotten (teardown): nothing more is written
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tether-manifest")

    @property
    def total(self) -> int:
        return self._total

    def _size(self, name: str, size: int | None) -> None:
        """Set (None: forget) the bytes kept for ``name``, and the total with it."""
        self._total -= self.sizes.pop(name, 0)
        if size is not None:
            self.sizes[name] = size
            self._total += size

    # -- start -----------------------------------------------------------------------------------

    def load(self) -> Loaded:
        """Read what the previous daemon kept (records only: payloads are read when needed), and
        take the manifest over: ``owner.json`` names this process from now on."""
        found = Loaded()
        self._folders()
        owner, ended = state.read_json(self.root / "owner.json"), state.read_json(self.root / "exit.json")
        if isinstance(owner, dict):
            clean = isinstance(ended, dict) and ended.get("pid") == owner.get("pid")
            found.previous = {"pid": owner.get("pid"), "started": owner.get("started"),
                              "ended": "stopped" if clean else "was killed or crashed"}
        for path in sorted(self.envs_dir.glob("*.json")):
            config = state.read_json(path)
            if isinstance(config, dict) and config.get("name") == path.stem:
                found.envs[path.stem] = config
            else:
                log.warning("manifest: ignoring unreadable env file %s", path)
        named: set[str] = set()
        for path in self.objects_dir.glob("*.json"):
            name = path.name[:-len(".json")]
            record = state.read_json(path)
            if not isinstance(record, dict) or record.get("name") != name:
                found.lost[name] = "its manifest entry was unreadable"
                log.warning("manifest: the entry of %r (%s) is unreadable; it was not restored", name, path)
                continue
            if not isinstance(record.get("version", VERSION), int) or record.get("version", VERSION) > VERSION:
                found.lost[name] = f"its manifest entry was written by a newer tether (format {record.get('version')})"
                named.add(str(record.get("payload")))  # left as it is, for that tether
                continue
            if not record.get("kept", True):
                found.lost[name] = record.get("why", "it was not kept")
                continue
            payload = record.get("payload")
            if payload and not (self.payloads_dir / payload).is_file():
                found.lost[name] = f"its payload file {payload} is missing"
                log.warning("manifest: the payload of %r (%s) is missing; it was not restored", name, payload)
                continue
            if payload:
                named.add(payload)
            self._size(name, int(record.get("size", 0)))
            found.objects.append(record)
        for path in self.payloads_dir.iterdir():  # written, then never committed by a record
            if path.name not in named:
                path.unlink(missing_ok=True)
        found.objects.sort(key=lambda r: r.get("created", 0))
        aliases = state.read_json(self.root / "aliases.json")
        if isinstance(aliases, dict):
            found.aliases = {k: v for k, v in aliases.items()
                             if isinstance(v, str) and _NAME.match(k) and _NAME.match(v)}
        (self.root / "exit.json").unlink(missing_ok=True)
        state.write_json(self.root / "owner.json", {"pid": os.getpid(), "started": time.time()})
        return found

    def _folders(self) -> None:
        for folder in (self.objects_dir, self.payloads_dir, self.envs_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def payload(self, record_payload: str | None) -> list[bytes]:
        """The payload frames of a restored object (read from disk; blocking)."""
        if not record_payload:
            return []
        msg = wire.decode((self.payloads_dir / record_payload).read_bytes())
        return [bytes(f) for f in msg.frames]

    async def read_payload(self, record_payload: str | None) -> list[bytes]:
        return await self._run(self.payload, record_payload)

    # -- changes -----------------------------------------------------------------------------------

    async def save(self, record: dict[str, Any], payload: list[bytes]) -> str | None:
        """Keep one object (replacing any by its name). Returns None when it is kept, else a
        sentence for its deployer saying why it was not (too big, a name not fit for a file, the
        disk refused)."""
        name = record["name"]
        if self.off:
            return None
        if not _NAME.match(name):
            return f"{name!r} is not kept across daemon restarts: its name is not a file name"
        size = sum(len(p) for p in payload)
        why = None
        if size > self.max_object:
            why = (f"it is {size:,} bytes, over TETHER_MANIFEST_MAX_OBJECT_BYTES "
                   f"({self.max_object:,} bytes)")
        elif self.total - self.sizes.get(name, 0) + size > self.max_total:
            why = (f"the manifest holds {self.total - self.sizes.get(name, 0):,} bytes and it is "
                   f"{size:,} more, over TETHER_MANIFEST_MAX_BYTES ({self.max_total:,} bytes)")
        self._size(name, size if why is None else None)
        try:
            await self._run(self._write_object, record, payload, size, why)
        except OSError as exc:
            self._size(name, None)
            log.warning("manifest: could not keep %r: %s", name, exc)
            return f"{name!r} is not kept across daemon restarts: writing it failed ({exc})"
        if why is None:
            return None
        log.warning("manifest: %r is not kept across daemon restarts: %s", name, why)
        return (f"{name!r} is not kept across daemon restarts: {why}. If the daemon restarts, "
                f"deploy or put it again")

    def _write_object(self, record: dict[str, Any], payload: list[bytes], size: int, why: str | None) -> None:
        name = record["name"]
        self._folders()
        path = self.objects_dir / f"{name}.json"
        old = state.read_json(path)
        if why is not None:
            record = {"version": VERSION, "name": name, "kept": False, "kind": record.get("kind"),
                      "env": record.get("env"), "why": f"it was not kept: {why}"}
        else:
            file = f"{name}.{os.urandom(4).hex()}.bin" if payload else None
            if file is not None:
                state.write_private(self.payloads_dir / file, wire.encode_bytes(wire.CONTROL, payload))
            record = {**record, "version": VERSION, "kept": True, "payload": file, "size": size}
        state.write_json(path, record)  # the commit point
        if isinstance(old, dict) and old.get("payload") and old["payload"] != record.get("payload"):
            (self.payloads_dir / old["payload"]).unlink(missing_ok=True)

    async def drop(self, name: str) -> None:
        """Forget one object (deleted, or a kept result that died with its worker)."""
        self._size(name, None)
        if _NAME.match(name) and not self.off:
            await self._run(self._remove_object, name)

    def _remove_object(self, name: str) -> None:
        path = self.objects_dir / f"{name}.json"
        old = state.read_json(path)
        path.unlink(missing_ok=True)
        if isinstance(old, dict) and old.get("payload"):
            (self.payloads_dir / old["payload"]).unlink(missing_ok=True)

    async def save_env(self, config: dict[str, Any]) -> None:
        if _NAME.match(config["name"]) and not self.off:
            await self._run(self._write_env, config)

    def _write_env(self, config: dict[str, Any]) -> None:
        self._folders()
        state.write_json(self.envs_dir / f"{config['name']}.json", config)

    async def drop_env(self, name: str) -> None:
        if _NAME.match(name) and not self.off:
            await self._run(lambda: (self.envs_dir / f"{name}.json").unlink(missing_ok=True))

    async def save_aliases(self, aliases: dict[str, str]) -> None:
        """Keep the objects' other names (the whole map: a few small entries)."""
        if not self.off:
            await self._run(state.write_json, self.root / "aliases.json", dict(aliases))

    async def forget(self) -> None:
        """Forget everything (``teardown()``): the next daemon of this state dir starts empty.
        Runs after the writes already asked for; none is made after it."""
        self.off = True
        self.sizes.clear()
        self._total = 0
        await self._run(shutil.rmtree, self.root, True)

    def closed(self) -> None:
        """The daemon stops cleanly (the next one says its predecessor "stopped")."""
        self._thread.shutdown(wait=True)
        if self.off:
            return
        try:
            state.write_json(self.root / "exit.json", {"pid": os.getpid(), "at": time.time()})
        except OSError as exc:
            log.warning("manifest: could not record the clean stop: %s", exc)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
