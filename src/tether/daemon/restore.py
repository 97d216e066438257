"""Restarts and worker deaths that lose nothing silently.

* At start, the store takes back what the previous daemon's manifest held (``load``): objects are
  listed at once (``keys()``, ``cluster.get()`` find them), and are made again in their workers in
  the background (``start``; ``TETHER_RESTORE=lazy``: on each env's first call instead). An object
  that cannot be made again is logged and shown in ``/_tether/status`` (``error``), and its calls
  answer 404 saying why; the others carry on.
* An instance made again from its constructor arguments (after a daemon restart, a worker that
  died, an env restarted for changed code) is marked ``state_reset`` with why and when, shown in
  ``/_tether/status`` and in its info, and its next caller is told once (``warning``): a WARN
  message to a client that announces ``x-tether-accept: warn`` (``tether.StateResetWarning``), a
  LOG line on stderr to an older Python client. A JSON caller (curl) is not told and does not use
  the warning up: the next Python caller still gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

from tether.daemon.records import EnvState, ObjectRecord
from tether.daemon.workers import EnvSpec, describe_exit
from tether.protocol import wire

if TYPE_CHECKING:
    from tether.daemon.manifest import Loaded
    from tether.daemon.store import Store
    from tether.daemon.workers import WorkerProcess

log = logging.getLogger("tether.daemon")

#: how a caller hears of a state reset: not at all (JSON), a LOG line (older clients), a WARN
TELL_NOTHING, TELL_LOG, TELL_WARN = 0, 1, 2
MAX_LOST = 1000  # names remembered as lost (a result kept by .remote() whose worker died...)


def when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def env_restarted(env: str, why: str) -> str:
    return f"env {env!r} was restarted {why} at {when(time.time())}"


async def death_reason(worker: WorkerProcess) -> str:
    """How a worker that is gone died (waits a moment for its exit code)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.died.wait(), 5)
    how = describe_exit(worker.returncode)["how"]
    return f"its worker process (env {worker.spec.name!r}, pid {worker.pid}) {how} at {when(time.time())}"


async def remake(store: Store, worker: WorkerProcess, state: EnvState, skip: str | None) -> None:
    """Make an env's objects again in its new worker; instances are marked "state reset" with
    why their old worker is gone (``state.reset_reason``). The worker is not locked meanwhile: a
    call waits for its own object only (``Store.call``), so a constructor may call an object
    made before it."""
    reason, state.reset_reason = state.reset_reason, None
    todo = [r for r in store.objects.values() if r.env == state.spec.name and not r.node and r.name != skip]
    loop = asyncio.get_running_loop()
    for rec in todo:
        rec.remaking = loop.create_future()
    try:
        for rec in todo:
            await _remake_one(store, worker, rec, reason)
            _made(rec)
    finally:
        for rec in todo:
            _made(rec)


async def _remake_one(store: Store, worker: WorkerProcess, rec: ObjectRecord, reason: str | None) -> None:
    if rec.meta.get("ref"):  # a kept result lived only in the old process
        store.objects.pop(rec.name, None)
        lose(store, rec.name, "a result kept by .remote() lives in its worker's memory, and "
                              f"{reason or 'that worker is gone'}")
        return
    try:
        if rec.payload is None:
            rec.payload = await store.manifest.read_payload(rec.stored)
        await worker.control(rec.meta, *rec.payload)
    except Exception as exc:  # noqa: BLE001 - one broken object must not block the others
        rec.error = f"it could not be made again{' after ' + reason if reason else ''}: {exc}"
        log.warning("could not re-create %r in env %r: %s", rec.name, rec.env, exc)
        return
    rec.error = None
    if reason and rec.kind == "instance":
        rec.reset = {"reason": reason, "at": time.time(), "told": False}


def _made(rec: ObjectRecord) -> None:
    """Calls waiting for ``rec`` to be made again go on."""
    if rec.remaking is not None:
        rec.remaking.set_result(None)
        rec.remaking = None


def lose(store: Store, name: str, why: str) -> None:
    """Remember that ``name`` is gone and why, for the 404 of its next call (bounded)."""
    store.lost[name] = why
    while len(store.lost) > MAX_LOST:
        del store.lost[next(iter(store.lost))]


def load(store: Store, loaded: Loaded) -> None:
    """Take back what the previous daemon kept: envs, then objects (their payloads stay on disk
    until their worker needs them)."""
    for name, why in loaded.lost.items():
        lose(store, name, why)
    if not loaded.objects and not loaded.envs:
        return
    previous = loaded.previous or {}
    now = time.time()
    reason = (f"the daemon restarted at {when(now)} (its previous process, pid {previous.get('pid', '?')}, "
              f"{previous.get('ended', 'ended')})")
    for name, config in loaded.envs.items():
        store.envs[name] = EnvState(EnvSpec.from_config(config))
    for rec in loaded.objects:
        try:
            obj = ObjectRecord(name=rec["name"], env=rec["env"], kind=rec["kind"],
                               interface=rec.get("interface") or {}, meta=rec["meta"], payload=None,
                               created=rec.get("created", now), node=int(rec.get("node") or 0),
                               stored=rec.get("payload"))
        except (KeyError, TypeError, ValueError) as exc:
            lose(store, str(rec.get("name")), f"its manifest entry was incomplete ({exc!r})")
            continue
        store.objects[obj.name] = obj
        state = store.envs.get(obj.env)
        if state is None and not obj.node:
            state = store.envs[obj.env] = EnvState(EnvSpec.from_config(obj.meta.get("env") or {"name": obj.env}))
        if state is not None and not obj.node:
            state.reset_reason = reason
    store.restored = {"at": now, "objects": len(loaded.objects), "lost": len(loaded.lost),
                      "previous": loaded.previous, "reason": reason}
    log.info("restored %d object(s) in %d env(s) from the manifest (%s); %d not kept",
             len(loaded.objects), len(loaded.envs), reason, len(loaded.lost))


def start(store: Store) -> asyncio.Task | None:
    """Make the restored objects again in the background, one env after another (the daemon
    answers meanwhile; a call to an env being made waits for it). ``TETHER_RESTORE=lazy``: on
    each env's first call instead."""
    mode = os.environ.get("TETHER_RESTORE", "eager").lower()
    if mode not in ("eager", "lazy"):
        log.warning("TETHER_RESTORE=%r: expected eager or lazy; using eager", mode)
    if mode == "lazy" or store.restored is None:
        return None
    return asyncio.ensure_future(_eagerly(store))


async def _eagerly(store: Store) -> None:
    envs = list(dict.fromkeys(r.env for r in store.objects.values() if not r.node))
    for env in envs:
        try:
            await store.worker(env)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one env that cannot start must not stop the others
            log.warning("could not restore env %r: %s", env, exc)
            for rec in store.objects.values():
                if rec.env == env and not rec.node:
                    rec.error = f"its env {env!r} could not be started: {exc}"
    log.info("restore done: %d env(s)", len(envs))


def warning(rec: ObjectRecord, tell: int) -> wire.Message:
    """The message telling a caller that ``rec`` was made again with fresh state."""
    reset = rec.reset
    text = (f"instance {rec.name!r} was made again from its constructor arguments, with fresh "
            f"state: {reset['reason']}. What it held in memory is gone.")
    if tell == TELL_WARN:
        meta = {"category": "state_reset", "message": text, "service": rec.name,
                "reason": reset["reason"], "at": reset["at"]}
        return wire.Message(wire.WARN, 0, [memoryview(wire.json_frame(meta))])
    line = f"[tether] StateResetWarning: {text}\n".encode()
    return wire.Message(wire.LOG, 0, [memoryview(b"err"), memoryview(line)])
