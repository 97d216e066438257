"""What the store knows of each object and env (``daemon/store.py``), apart from the store so
that ``daemon/restore.py`` can build them from a manifest."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from tether.daemon.workers import EnvSpec, WorkerProcess


@dataclass
class ObjectRecord:
    name: str
    env: str
    kind: str
    interface: dict[str, Any]
    meta: dict[str, Any]
    payload: list[bytes] | None  # None: restored, still in the manifest (``stored``)
    created: float = field(default_factory=time.time)
    node: int = 0  # where it lives: 0 is this daemon; else another node (``daemon/remote.py``)
    stored: str | None = None  # its payload file in the manifest
    reset: dict[str, Any] | None = None  # made again with fresh state: reason, at, told
    error: str | None = None  # why it could not be made again
    remaking: asyncio.Future | None = None  # set while it is being made again: calls wait for it

    def info(self) -> dict[str, Any]:
        info = {"name": self.name, "env": self.env, "kind": self.kind,
                "type": self.interface.get("type"), "created": self.created,
                "interface": self.interface, "node": self.node}
        if self.reset is not None:
            info["state_reset"] = dict(self.reset)
        if self.error is not None:
            info["error"] = self.error
        return info

    def record(self) -> dict[str, Any]:
        """What the manifest keeps of it (its payload goes beside)."""
        return {"name": self.name, "env": self.env, "kind": self.kind, "interface": self.interface,
                "meta": self.meta, "created": self.created, "node": self.node}


@dataclass
class EnvState:
    spec: EnvSpec
    worker: WorkerProcess | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # An env whose code was edited is likely edited again: a started worker with no objects
    # waits for the next restart, which then skips the interpreter start (~0.1 s).
    spare: WorkerProcess | None = None
    spare_task: asyncio.Task | None = None
    # why the next worker re-creates the env's objects (their state is gone): set where a worker
    # is lost (died, restarted, the daemon restarted), taken by the next _start
    reset_reason: str | None = None
