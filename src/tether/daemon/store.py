"""The object store: names -> objects living in worker processes, one worker per env.

The store remembers how each object was made (its deploy message), so that when a worker dies or
is restarted for fresh code, the next call re-creates its objects in a new worker. Instances come
back freshly constructed (state held in memory is lost with the process that held it).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.daemon import remote
from tether.daemon.envs import EnvBuilder
from tether.daemon.limits import Limits
from tether.daemon.nodes import Nodes
from tether.daemon.workers import EnvSpec, WorkerProcess, WorkerStartError, runtime_path
from tether.protocol import shm, wire

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
    node: int = 0  # where it lives: 0 is this daemon; else another node (``daemon/remote.py``)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "env": self.env, "kind": self.kind,
                "type": self.interface.get("type"), "created": self.created,
                "interface": self.interface, "node": self.node}


@dataclass
class EnvState:
    spec: EnvSpec
    worker: WorkerProcess | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # An env whose code was edited is likely edited again: a started worker with no objects
    # waits for the next restart, which then skips the interpreter start (~0.1 s).
    spare: WorkerProcess | None = None
    spare_task: asyncio.Task | None = None


class UnknownName(LookupError):
    pass


class CrossNodeRef(ValueError):
    """A RemoteRef passed to a call on another node (the caller gets a 400)."""


class Store:
    def __init__(self, state_dir: Path, default_python: str, prestarted: WorkerProcess | None = None,
                 limits: Limits | None = None) -> None:
        self.state_dir = state_dir
        self.prestarted = prestarted  # the default env's first worker, spawned at daemon start
        self.builder = EnvBuilder(state_dir / "envs", default_python)
        self.runtime_dir = runtime_path(state_dir)
        self.objects: dict[str, ObjectRecord] = {}
        self.envs: dict[str, EnvState] = {}
        self.shm, self.shm_probe = _prepare_shm(state_dir)
        self.nodes = Nodes()  # the cluster's other nodes, when this daemon is a multi-node head
        self.log = log
        # memory=, cpus= of the cluster (made by the daemon's main, shared with its first worker)
        self.limits = limits if limits is not None else Limits.for_daemon(state_dir.name, state_dir)

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

    async def _new_worker(self, spec: EnvSpec, progress=None) -> WorkerProcess:
        async def report(text: str) -> None:
            if progress is not None:
                await progress(text)

        python = await self.builder.python_for(spec.name, spec.reqs, spec.python, report)
        worker = WorkerProcess(
            spec=spec, python=python, runtime_dir=self.runtime_dir,
            log_path=self.state_dir / "logs" / f"worker-{spec.name}.log",
            extra_env={"TETHER_SHM_DIR": str(self.shm)} if self.shm else {},
            limits=self.limits,
        )
        await worker.start()
        return worker

    async def _start(self, state: EnvState, progress=None, skip: str | None = None,
                     use_spare: bool = False) -> WorkerProcess:
        worker = await self._take_spare(state) if use_spare else None
        if worker is None:
            worker = await self._take_prestarted(state)
        if worker is None:
            worker = await self._new_worker(state.spec, progress)
        state.worker = worker
        for rec in [r for r in self.objects.values()
                    if r.env == state.spec.name and not r.node and r.name != skip]:
            if rec.meta.get("ref"):  # a kept result lived only in the old process
                del self.objects[rec.name]
                continue
            try:
                await worker.control(rec.meta, *rec.payload)
            except Exception as exc:  # noqa: BLE001 - one broken object must not block the others
                log.warning("could not re-create %r in env %r: %s", rec.name, rec.env, exc)
        return worker

    async def _restart(self, state: EnvState, progress=None, skip: str | None = None) -> WorkerProcess:
        """A fresh worker for edited code: the spare if there is one, and a new spare after."""
        async with state.lock:
            if state.worker is not None:
                await state.worker.stop()
                state.worker = None
            worker = await self._start(state, progress, skip, use_spare=True)
        if state.spare is None and (state.spare_task is None or state.spare_task.done()):
            state.spare_task = asyncio.ensure_future(self._make_spare(state))
        return worker

    async def _take_prestarted(self, state: EnvState) -> WorkerProcess | None:
        worker = self.prestarted
        if worker is None or state.spec.name != worker.spec.name:
            return None
        self.prestarted = None
        if state.spec != worker.spec or state.spec.python not in (None, worker.python):
            await worker.stop()  # the default env was asked for with env vars, reqs...
            return None
        try:
            await worker.attach()
        except WorkerStartError as exc:
            log.warning("the prestarted worker did not start (%s); starting another", exc)
            return None
        return worker

    async def _take_spare(self, state: EnvState) -> WorkerProcess | None:
        task = state.spare_task
        if state.spare is None and task is not None and not task.done():
            await asyncio.shield(task)  # started before this restart: sooner ready than a new one
        spare, state.spare = state.spare, None
        if spare is None:
            return None
        if spare.alive and spare.spec == state.spec:
            return spare
        asyncio.ensure_future(spare.stop())
        return None

    async def _make_spare(self, state: EnvState) -> None:
        try:
            spare = await self._new_worker(state.spec)
        except Exception as exc:  # noqa: BLE001 - only an optimisation: the next restart starts one
            log.info("no spare worker for env %r: %s", state.spec.name, exc)
            return
        if self.envs.get(state.spec.name) is state and state.spare is None and spare.spec == state.spec:
            state.spare = spare
        else:
            await spare.stop()

    async def _drop_spare(self, state: EnvState) -> None:
        if state.spare_task is not None:
            state.spare_task.cancel()
        spare, state.spare = state.spare, None
        if spare is not None:
            await spare.stop()

    async def _use_spec(self, spec: EnvSpec) -> EnvState:
        state = self.envs.get(spec.name)
        if state is None:
            state = self.envs[spec.name] = EnvState(spec)
        elif state.spec != spec:
            async with state.lock:  # a changed env: its next worker gets the new spec
                state.spec = spec
                await self._drop_spare(state)
                if state.worker is not None:
                    await state.worker.stop()
                    state.worker = None
        return state

    # -- deploy, call, delete -----------------------------------------------------------------

    async def deploy(self, meta: dict[str, Any], payload: list[memoryview], out: asyncio.Queue) -> None:
        """Create (op=deploy) or only check (op=inspect) an object; messages go to ``out``."""

        async def progress(text: str) -> None:
            out.put_nowait(wire.Message(wire.LOG, 0, [memoryview(b"err"), memoryview(text.encode())]))

        node = remote.node_of(meta)
        if node:
            await remote.deploy(self, node, meta, payload, out)
            return
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
                    await self.commit(name, spec.name, meta, payload, msg.json(0))
                out.put_nowait(msg)
                if msg.kind in wire.TERMINAL_KINDS:
                    return
        except Exception as exc:  # noqa: BLE001
            out.put_nowait(_error(exc))

    async def commit(self, name: str, env: str, meta, payload, interface, node: int = 0) -> None:
        """Record a deployed object (here, or on ``node``); one by that name elsewhere goes."""
        old = self.objects.get(name)
        if old is not None and (old.env, old.node) != (env, node):
            await self._forget(old)
        self.objects[name] = ObjectRecord(
            name=name, env=env, kind=meta["kind"], interface=interface,
            meta={**meta, "stream_logs": False}, payload=[bytes(p) for p in payload], node=node,
        )

    async def call(self, name: str, frames: list, flags: int = 0) -> tuple[WorkerProcess, int, asyncio.Queue]:
        """Send a CALL to the worker holding ``name``: (worker, id on its connection, replies)."""
        rec = self.objects.get(name)
        if rec is None:
            raise UnknownName(self.missing(name))
        worker = await self.worker(rec.env)
        ipc_id, queue = worker.request_with_id(wire.CALL, frames, flags)
        return worker, ipc_id, queue

    def register_ref(self, name: str, env: str, node: int = 0) -> None:
        """A call's result kept in its worker (``fn.remote()``): callable and fetchable by name."""
        self.objects[name] = ObjectRecord(
            name=name, env=env, kind="value", interface={"kind": "value", "type": "ref", "methods": {},
                                                         "properties": []},
            meta={"ref": True}, payload=[], node=node)

    async def bring_refs(self, refs: list[str], target: str) -> None:
        """Copy kept results that live in another env into the worker of ``target``, worker to
        worker through the daemon (never through the caller)."""
        rec = self.objects.get(target)
        if rec is None:
            return  # the call itself answers 404
        for name in refs:
            ref = self.objects.get(name)
            if ref is None or not ref.meta.get("ref") or (ref.env, ref.node) == (rec.env, rec.node):
                continue  # unknown refs fail in the worker with a clear message
            if ref.node or rec.node:
                raise CrossNodeRef(
                    f"the remote result {name!r} lives on node {ref.node} and the call goes to node "
                    f"{rec.node}: results do not move between nodes yet; fetch() it and pass the value")
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
            await self._forget(rec)
            return {"deleted": name, "kind": "object"}
        remote_envs = {o.node for o in self.objects.values() if o.env == name and o.node}
        if name in self.envs or remote_envs:
            for obj in [o for o in self.objects.values() if o.env == name]:
                del self.objects[obj.name]
            for node in sorted(remote_envs):
                await remote.delete(self, node, name)
            state = self.envs.pop(name, None)
            if state is not None:
                await self._drop_spare(state)
                if state.worker is not None:
                    await state.worker.stop()
            return {"deleted": name, "kind": "env"}
        raise UnknownName(self.missing(name))

    async def _forget(self, rec: ObjectRecord) -> None:
        if rec.node:
            await remote.forget(self, rec)
        else:
            await self._forget_in_worker(rec)

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
            "objects": {name: {"env": r.env, "kind": r.kind, "type": r.interface.get("type"), "node": r.node}
                        for name, r in self.objects.items()},
            "nodes": self.nodes.info(),
            "envs": {name: {"spec": s.spec.config(), "worker": s.worker.info() if s.worker else None,
                            "spare_pid": s.spare.pid if s.spare else None}
                     for name, s in self.envs.items()},
            "limits": self.limits.info(),
        }

    async def shutdown(self) -> None:
        self.nodes.close()
        if self.prestarted is not None:
            await self.prestarted.stop()
        await asyncio.gather(*(self._drop_spare(s) for s in self.envs.values()), return_exceptions=True)
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
        probe = shm.write_daemon_probe(folder)
    except OSError as exc:
        log.warning("no shared memory for big arguments (%s): they go through the socket", exc)
        return None, ""
    return folder, probe


def _error(exc: BaseException) -> wire.Message:
    return wire.Message(wire.ERROR, 0, [memoryview(f) for f in wire.error_frames(exc)])
