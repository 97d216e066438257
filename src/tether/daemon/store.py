"""The object store: names -> objects living in worker processes, one worker per env.

The store remembers how each object was made (its deploy message), so that when a worker dies or
is restarted for fresh code, the next call re-creates its objects in a new worker. Instances come
back freshly constructed (state held in memory is lost with the process that held it).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.core import shm, wire
from tether.daemon.envs import EnvBuilder
from tether.daemon.limits import Limits
from tether.daemon.workers import EnvSpec, WorkerProcess, runtime_path

log = logging.getLogger("tether.daemon")


@dataclass
class ObjectRecord:
    name: str
    env: str
    kind: str
    interface: dict[str, Any]
    meta: dict[str, Any]
    payload: list[bytes]
    created: float = field(default_factory=time.time)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "env": self.env, "kind": self.kind,
                "type": self.interface.get("type"), "created": self.created,
                "interface": self.interface}


@dataclass
class EnvState:
    spec: EnvSpec
    worker: WorkerProcess | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class UnknownName(LookupError):
    pass


class Store:
    def __init__(self, state_dir: Path, default_python: str) -> None:
        self.state_dir = state_dir
        self.builder = EnvBuilder(state_dir / "envs", default_python)
        self.runtime_dir = runtime_path(state_dir)
        self.objects: dict[str, ObjectRecord] = {}
        self.envs: dict[str, EnvState] = {}
        self.shm, self.shm_probe = _prepare_shm(state_dir)
        self.limits = Limits.for_daemon(state_dir.name, state_dir)  # memory=, cpus= of the cluster

    # -- workers -------------------------------------------------------------------------------

    async def worker(self, env_name: str, progress=None) -> WorkerProcess:
        """The live worker of an env; starts one (and re-creates the env's objects) if needed."""
        state = self.envs.get(env_name)
        if state is None:
            state = self.envs[env_name] = EnvState(EnvSpec(name=env_name))
        worker = state.worker
        if worker is not None and worker.alive:
            return worker
        async with state.lock:
            if state.worker is not None and state.worker.alive:
                return state.worker
            return await self._start(state, progress)

    async def _start(self, state: EnvState, progress=None, skip: str | None = None) -> WorkerProcess:
        async def report(text: str) -> None:
            if progress is not None:
                await progress(text)

        python = await self.builder.python_for(state.spec.name, state.spec.reqs, state.spec.python, report)
        worker = WorkerProcess(
            spec=state.spec, python=python, runtime_dir=self.runtime_dir,
            log_path=self.state_dir / "logs" / f"worker-{state.spec.name}.log",
            extra_env={"TETHER_SHM_DIR": str(self.shm)} if self.shm else {},
            limits=self.limits,
        )
        await worker.start()
        state.worker = worker
        for rec in [r for r in self.objects.values() if r.env == state.spec.name and r.name != skip]:
            if rec.meta.get("ref"):  # a kept result lived only in the old process
                del self.objects[rec.name]
                continue
            try:
                await worker.control(rec.meta, *rec.payload)
            except Exception as exc:  # noqa: BLE001 - one broken object must not block the others
                log.warning("could not re-create %r in env %r: %s", rec.name, rec.env, exc)
        return worker

    async def _restart(self, state: EnvState, progress=None, skip: str | None = None) -> WorkerProcess:
        async with state.lock:
            if state.worker is not None:
                await state.worker.stop()
                state.worker = None
            return await self._start(state, progress, skip)

    async def _use_spec(self, spec: EnvSpec) -> EnvState:
        state = self.envs.get(spec.name)
        if state is None:
            state = self.envs[spec.name] = EnvState(spec)
        elif state.spec != spec:
            async with state.lock:  # a changed env: its next worker gets the new spec
                state.spec = spec
                if state.worker is not None:
                    await state.worker.stop()
                    state.worker = None
        return state

    # -- deploy, call, delete -----------------------------------------------------------------

    async def deploy(self, meta: dict[str, Any], payload: list[memoryview], out: asyncio.Queue) -> None:
        """Create (op=deploy) or only check (op=inspect) an object; messages go to ``out``."""

        async def progress(text: str) -> None:
            out.put_nowait(wire.Message(wire.LOG, 0, [memoryview(b"err"), memoryview(text.encode())]))

        try:
            spec = EnvSpec.from_config(meta.get("env"))
            state = await self._use_spec(spec)
            worker = await self.worker(spec.name, progress)
            name = meta.get("name")
            if meta["op"] == "deploy":
                stale = (await worker.control({"op": "stale"}))["stale"]
                if stale:
                    await progress(f"[tether] code changed ({', '.join(stale[:3])}): restarting env {spec.name!r}\n")
                    worker = await self._restart(state, progress, skip=name)
            queue = worker.request(wire.CONTROL, [wire.json_frame(meta), *payload])
            while True:
                msg = await queue.get()
                if msg.kind == wire.RESULT and meta["op"] == "deploy":
                    await self._commit(name, spec.name, meta, payload, msg.json(0))
                out.put_nowait(msg)
                if msg.kind in wire.TERMINAL_KINDS:
                    return
        except Exception as exc:  # noqa: BLE001
            out.put_nowait(_error(exc))

    async def _commit(self, name: str, env: str, meta, payload, interface) -> None:
        old = self.objects.get(name)
        if old is not None and old.env != env:
            await self._forget_in_worker(old)
        self.objects[name] = ObjectRecord(
            name=name, env=env, kind=meta["kind"], interface=interface,
            meta={**meta, "stream_logs": False}, payload=[bytes(p) for p in payload],
        )

    async def call(self, name: str, frames: list, flags: int = 0) -> tuple[WorkerProcess, int, asyncio.Queue]:
        """Send a CALL to the worker holding ``name``: (worker, id on its connection, replies)."""
        rec = self.objects.get(name)
        if rec is None:
            raise UnknownName(self.missing(name))
        worker = await self.worker(rec.env)
        ipc_id, queue = worker.request_with_id(wire.CALL, frames, flags)
        return worker, ipc_id, queue

    def register_ref(self, name: str, env: str) -> None:
        """A call's result kept in its worker (``fn.remote()``): callable and fetchable by name."""
        self.objects[name] = ObjectRecord(
            name=name, env=env, kind="value", interface={"kind": "value", "type": "ref", "methods": {},
                                                         "properties": []},
            meta={"ref": True}, payload=[])

    async def bring_refs(self, refs: list[str], target: str) -> None:
        """Copy kept results that live in another env into the worker of ``target``, worker to
        worker through the daemon (never through the caller)."""
        rec = self.objects.get(target)
        if rec is None:
            return  # the call itself answers 404
        for name in refs:
            ref = self.objects.get(name)
            if ref is None or not ref.meta.get("ref") or ref.env == rec.env:
                continue  # unknown refs fail in the worker with a clear message
            source = await self.worker(ref.env)
            frames = await source.control_frames({"op": "export", "name": name})
            dest = await self.worker(rec.env)
            await dest.control({"op": "import", "name": name}, *frames)

    async def restart_env(self, env: str) -> None:
        """Stop an env's worker; its next call starts a fresh one (``cancel(force=True)``)."""
        state = self.envs.get(env)
        if state is not None and state.worker is not None:
            async with state.lock:
                if state.worker is not None:
                    await state.worker.stop()
                    state.worker = None

    async def delete(self, name: str) -> dict[str, Any]:
        if name in self.objects:
            rec = self.objects.pop(name)
            await self._forget_in_worker(rec)
            return {"deleted": name, "kind": "object"}
        if name in self.envs:
            state = self.envs.pop(name)
            for obj in [o for o in self.objects.values() if o.env == name]:
                del self.objects[obj.name]
            if state.worker is not None:
                await state.worker.stop()
            return {"deleted": name, "kind": "env"}
        raise UnknownName(self.missing(name))

    async def _forget_in_worker(self, rec: ObjectRecord) -> None:
        state = self.envs.get(rec.env)
        if state is not None and state.worker is not None and state.worker.alive:
            try:
                await state.worker.control({"op": "delete", "name": rec.name}, timeout=10)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not delete %r from its worker: %s", rec.name, exc)

    def missing(self, name: str) -> str:
        names = ", ".join(sorted(self.objects)) or "none"
        return f"no object named {name!r} on this cluster (objects: {names})"

    def keys(self) -> list[dict[str, Any]]:
        return [rec.info() for rec in self.objects.values()]

    def status(self) -> dict[str, Any]:
        return {
            "objects": {name: {"env": r.env, "kind": r.kind, "type": r.interface.get("type")}
                        for name, r in self.objects.items()},
            "envs": {name: {"spec": s.spec.config(), "worker": s.worker.info() if s.worker else None}
                     for name, s in self.envs.items()},
            "limits": self.limits.info(),
        }

    async def shutdown(self) -> None:
        await asyncio.gather(*(s.worker.stop() for s in self.envs.values() if s.worker), return_exceptions=True)
        if self.shm is not None:
            shutil.rmtree(self.shm, ignore_errors=True)
        self.limits.close()


def _prepare_shm(state_dir: Path) -> tuple[Path | None, str]:
    """The cluster's shared-memory folder, emptied (files of an earlier daemon are stale), and a
    probe file by which a caller tells it shares this machine's /dev/shm."""
    folder = shm.folder_for(state_dir)
    if folder is None:
        return None, ""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.mkdir(mode=0o700)
        probe = secrets.token_hex(16)
        (folder / "probe").write_text(probe)
    except OSError as exc:
        log.warning("no shared memory for big arguments (%s): they go through the socket", exc)
        return None, ""
    return folder, probe


def _error(exc: BaseException) -> wire.Message:
    return wire.Message(wire.ERROR, 0, [memoryview(f) for f in wire.error_frames(exc)])
