"""The object store: names -> objects living in worker processes, one worker per env.

The store remembers how each object was made (its deploy message), so that when a worker dies or
is restarted for fresh code, the next call re-creates its objects in a new worker. Instances come
back freshly constructed (state held in memory is lost with the process that held it): each one is
marked "state reset" with why, and its next caller is told once (``daemon/restore.py``).

What was deployed is also kept on disk (``daemon/manifest.py``), so that the next daemon of this
state dir makes it again after a crash or a restart.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from tether import state as state_files
from tether.daemon import events, remote, restore, shell, sweep
from tether.daemon import secrets as secret_files
from tether.daemon.aliases import Aliases
from tether.daemon.envs import EnvBuilder
from tether.daemon.limits import Limits, describe_limits
from tether.daemon.manifest import Manifest
from tether.daemon.nodes import NodeError, Nodes
from tether.daemon.records import EnvState, ObjectRecord
from tether.daemon.workers import EnvSpec, WorkerProcess, WorkerStartError, runtime_path
from tether.protocol import wire

log = logging.getLogger("tether.daemon")


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
        self.shm, self.shm_probe = sweep.prepare_shm(state_dir)
        self.nodes = Nodes()  # the cluster's other nodes, when this daemon is a multi-node head
        self.log = log
        # memory=, cpus= of the cluster (made by the daemon's main, shared with its first worker)
        self.limits = limits if limits is not None else Limits.for_daemon(state_dir.name, state_dir)
        self.manifest = Manifest(state_dir)
        self.aliases = Aliases(self.manifest)  # other names of objects (``daemon/aliases.py``)
        self.lost: dict[str, str] = {}  # name -> why it is gone (not kept, a result whose worker died)
        self.restored: dict[str, Any] | None = None  # what came back from the manifest, and when
        self._restoring: asyncio.Task | None = None
        loaded = self.manifest.load()
        restore.load(self, loaded)
        self.aliases.load(loaded.aliases, [*self.objects, *self.lost])

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
            if state.worker is not None and not state.worker.stopping:  # it died
                state.reset_reason = await restore.death_reason(state.worker)
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
        await restore.remake(self, worker, state, skip)
        return worker

    async def _restart(self, state: EnvState, progress=None, skip: str | None = None) -> WorkerProcess:
        """A fresh worker for edited code: the spare if there is one, and a new spare after."""
        async with state.lock:
            if state.worker is not None:
                await state.worker.stop()
                state.worker = None
                state.reset_reason = restore.env_restarted(state.spec.name, "for changed code")
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
                    state.reset_reason = restore.env_restarted(spec.name, "with a new spec")
        else:
            return state
        await self.manifest.save_env(spec.config())
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
                    note = await self.commit(name, spec.name, meta, payload, msg.json(0))
                    if note:  # not kept across restarts: its deployer hears it now
                        await progress(f"[tether] warning: {note}\n")
                out.put_nowait(msg)
                if msg.kind in wire.TERMINAL_KINDS:
                    return
        except Exception as exc:  # noqa: BLE001
            out.put_nowait(_error(exc))

    async def commit(self, name: str, env: str, meta, payload, interface, node: int = 0) -> str | None:
        """Record a deployed object (here, or on ``node``); one by that name elsewhere goes. It
        is kept in the manifest too: returns why not, when it is not (too big)."""
        old = self.objects.get(name)
        if old is not None and (old.env, old.node) != (env, node):
            await self._forget(old)
        if name in self.aliases.names:  # a deploy under an alias takes the name over
            await self.aliases.drop([name])
        rec = self.objects[name] = ObjectRecord(
            name=name, env=env, kind=meta["kind"], interface=interface,
            meta={**meta, "stream_logs": False}, payload=[bytes(p) for p in payload], node=node,
        )
        self.lost.pop(name, None)
        return await self.manifest.save(rec.record(), rec.payload)

    async def call(self, name: str, frames: list, flags: int = 0,
                   tell: int = restore.TELL_NOTHING) -> tuple[WorkerProcess, int, asyncio.Queue]:
        """Send a CALL to the worker holding ``name``: (worker, id on its connection, replies).

        ``tell`` is how this caller hears that the instance lost its state (a WARN, a LOG line,
        or nothing: a JSON caller); the first caller told marks it told."""
        rec = self.objects.get(name)
        if rec is None:
            raise UnknownName(self.missing(name))
        worker = await self.worker(rec.env)
        if rec.remaking is not None:  # its worker is new and it is being made in it
            await asyncio.shield(rec.remaking)
        if rec.error is not None:
            raise UnknownName(f"{name!r} is on this cluster, but {rec.error}. Deploy it again.")
        ipc_id, queue = worker.request_with_id(wire.CALL, frames, flags)
        if rec.reset is not None and tell and not rec.reset["told"]:
            rec.reset["told"] = True
            queue.put_nowait(restore.warning(rec, tell))  # before any reply: it comes first
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
                    state.reset_reason = restore.env_restarted(env, "by cancel(force=True)")

    async def set_image_env(self, env_vars: dict[str, str]) -> dict[str, Any]:
        """An Image's env vars (``set_env_vars``) for every worker and command from now on.

        When they changed, the workers already running (the one prestarted at daemon start, the
        spares, the envs' live workers) are stopped so that their next start has them; an env
        that holds objects starts again at once and makes them again (instances with fresh state,
        as after a restart). Returns ``{"changed": bool, "restarted": [env...]}``."""
        if state_files.read_image_env(self.state_dir) == env_vars:
            return {"changed": False, "restarted": []}
        state_files.write_image_env(self.state_dir, env_vars)
        if self.prestarted is not None:
            worker, self.prestarted = self.prestarted, None
            await worker.stop()
        restarted = []
        for name, env in list(self.envs.items()):
            async with env.lock:
                await self._drop_spare(env)
                if env.worker is not None:
                    await env.worker.stop()
                    env.worker = None
                    env.reset_reason = restore.env_restarted(name, "for the image's new env vars")
                    restarted.append(name)
            if any(r.env == name and not r.node for r in self.objects.values()):
                await self.worker(name)
        return {"changed": True, "restarted": restarted}

    async def limit_env(self, env: str, memory: int | None, cpus: float | None, why: str = "") -> dict[str, Any]:
        """Give ``env``'s workers limits of their own (None: the cluster's), e.g. more memory for
        the service that ran out of it, leaving the other envs' workers (and their state) alone.

        A worker of the old size is stopped; a fresh one starts at once with the new limits and
        makes the env's objects again, instances marked "state reset" (their in-memory state
        went with the worker). Returns the env's limits now, whether they changed, and
        ``reset``: the instances of the env made again whose callers were not told yet."""
        state = self.envs.get(env)
        if state is None:
            state = self.envs[env] = EnvState(EnvSpec(name=env))
        async with state.lock:
            changed = self.limits.overrides.get(env) != {"memory": memory, "cpus": cpus}
            if changed:
                await self._drop_spare(state)
                worker, state.worker = state.worker, None
                died = ""
                if worker is not None:
                    if not worker.alive and not worker.stopping:
                        died = await restore.death_reason(worker) + "; then "
                    await worker.stop()
                self.limits.set_env(env, memory, cpus)
                size = describe_limits(memory, cpus)
                state.reset_reason = died + restore.env_restarted(env, f"with limits of its own ({size})" + (f" {why}" if why else ""))
        if any(r.env == env and not r.node for r in self.objects.values()):
            await self.worker(env)  # made again now (or after the worker that died), and marked
        reset = sorted(r.name for r in self.objects.values()
                       if r.env == env and not r.node and r.kind == "instance" and r.reset is not None
                       and not r.reset["told"])
        return {"env": env, "limits": self.limits.env_limits(env), "changed": changed, "reset": reset,
                "enforced_by": self.limits.scope(env).enforced_by}

    def lookup(self, name: str) -> ObjectRecord | None:
        """The object named ``name``, or whose alias it is."""
        rec = self.objects.get(name)
        if rec is None and name in self.aliases.names:
            rec = self.objects.get(self.aliases.names[name])
        return rec

    async def alias(self, alias: str, target: str) -> dict[str, Any]:
        """Give the object ``target`` (or whose alias it is) the other name ``alias``."""
        if self.lookup(target) is None:
            raise UnknownName(self.missing(target))
        return await self.aliases.set(alias, target, self.objects)

    async def delete(self, name: str) -> dict[str, Any]:
        if name in self.aliases.names:
            await self.aliases.drop([name])
            return {"deleted": name, "kind": "alias"}
        if name in self.objects:
            rec = self.objects.pop(name)
            await self._forget(rec)
            await self.manifest.drop(name)
            await self.aliases.drop((), [name])
            return {"deleted": name, "kind": "object"}
        if name in self.lost:
            del self.lost[name]
            await self.manifest.drop(name)
            await self.aliases.drop((), [name])
            return {"deleted": name, "kind": "lost"}
        remote_envs = {o.node for o in self.objects.values() if o.env == name and o.node}
        if name in self.envs or remote_envs:
            dropped = [o.name for o in self.objects.values() if o.env == name]
            for obj_name in dropped:
                del self.objects[obj_name]
                await self.manifest.drop(obj_name)
            await self.aliases.drop((), dropped)
            await self.manifest.drop_env(name)
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
        names = ", ".join(sorted([*self.objects, *self.aliases.names])[:50]) or "none"
        if name in self.lost:
            return (f"no object named {name!r} on this cluster any more: {self.lost[name]}. Deploy "
                    f"or put it again (objects: {names})")
        return f"no object named {name!r} on this cluster (objects: {names})"

    def info(self, rec: ObjectRecord, aliases: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """What ``/_tether/objects/{name}`` and ``keys`` say of an object, with its aliases."""
        info = rec.info()
        found = (self.aliases.of() if aliases is None else aliases).get(rec.name)
        if found:
            info["aliases"] = found
        return info

    def keys(self) -> list[dict[str, Any]]:
        aliases = self.aliases.of()
        return [self.info(rec, aliases) for rec in self.objects.values()]

    def names(self) -> list[str]:
        """Each object's name followed by its aliases, in ``keys()``'s order."""
        aliases = self.aliases.of()
        if not aliases:
            return list(self.objects)
        return [n for name in self.objects for n in (name, *aliases.get(name, ()))]

    def status(self) -> dict[str, Any]:
        return {
            "objects": {name: {"env": r.env, "kind": r.kind, "type": r.interface.get("type"), "node": r.node,
                               **({"state_reset": dict(r.reset)} if r.reset is not None else {}),
                               **({"error": r.error} if r.error is not None else {})}
                        for name, r in self.objects.items()},
            "nodes": self.nodes.info(),
            "envs": {name: {"spec": s.spec.config(), "worker": s.worker.info() if s.worker else None,
                            "spare_pid": s.spare.pid if s.spare else None}
                     for name, s in self.envs.items()},
            "limits": self.limits.info(),
            "lost": dict(self.lost),
            "aliases": dict(self.aliases.names),
            "restored": self.restored,
            "manifest": {"bytes": self.manifest.total, "max_bytes": self.manifest.max_total,
                         "max_object_bytes": self.manifest.max_object},
            "commands_running": shell.running(),
            "secrets": secret_files.names(self.state_dir),  # {env: [secret names]}: never values
        }

    async def put_secrets(self, env: str, secrets: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Give ``secrets`` to ``env``'s workers (``daemon/secrets.py``): its running worker gets
        the env vars at once (no restart: its objects keep their state); a prestarted or spare
        worker, started without them, is let go. The answer names what was set, never a value."""
        summary = secret_files.put(self.state_dir, env, secrets)
        if self.prestarted is not None and self.prestarted.spec.name == env:
            worker, self.prestarted = self.prestarted, None
            await worker.stop()
        state = self.envs.get(env)
        running = False
        if state is not None:
            async with state.lock:  # a worker starting now reads them from the file, or gets them here
                await self._drop_spare(state)
                worker = state.worker
                if worker is not None and worker.alive:
                    await worker.control({"op": "setenv", "env_vars": secret_files.env_vars(self.state_dir, env)})
                    running = True
        events.record("secrets", f"secrets {', '.join(sorted(secrets))} given to env {env!r}",
                      env=env, secrets=sorted(secrets))
        return {"env": env, "secrets": summary, "running": running}

    async def forget(self) -> dict[str, Any]:
        """Forget what was deployed, here and on the cluster's other nodes (``teardown()``, just
        before the daemons stop): the next daemons start empty."""
        secret_files.forget(self.state_dir)
        await self.manifest.forget()
        self.aliases.names.clear()
        self.limits.forget_envs()
        for index, link in sorted(self.nodes.links.items()):
            try:
                await (await link.request("POST", "/_tether/forget", [], [])).body()
            except NodeError as exc:
                log.warning("could not make node %s forget its objects: %s", index, exc)
        return {"forgotten": True}

    def start_restore(self) -> None:
        """Make what the manifest held again, in the background (``TETHER_RESTORE``)."""
        self._restoring = restore.start(self)

    async def shutdown(self) -> None:
        if self._restoring is not None:
            self._restoring.cancel()
        self.nodes.close()
        if self.prestarted is not None:
            await self.prestarted.stop()
        await asyncio.gather(*(self._drop_spare(s) for s in self.envs.values()), return_exceptions=True)
        await asyncio.gather(*(s.worker.stop() for s in self.envs.values() if s.worker), return_exceptions=True)
        if self.shm is not None:
            shutil.rmtree(self.shm, ignore_errors=True)
        self.limits.close()
        self.manifest.closed()


def _error(exc: BaseException) -> wire.Message:
    return wire.Message(wire.ERROR, 0, [memoryview(f) for f in wire.error_frames(exc)])
