"""Worker processes and the daemon's side of the socket to each of them.

One worker process per env. The daemon starts it with the env's interpreter, env vars and working
directory, listens on a private Unix socket and waits for the worker to connect back. Many calls
share that one connection: each message carries a call id, and a reader task hands each reply to
the queue of its call. When the worker dies, every call in flight gets an ERROR message saying how
it died (exit code or signal), and the next call starts a fresh worker.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether import state
from tether.daemon import children, events, liveness, sweep, usage
from tether.daemon import secrets as secret_files
from tether.daemon.flow import CallQueue
from tether.daemon.limits import oom_message
from tether.errors import LaunchError
from tether.protocol import wire
from tether.protocol.streams import MessageParser

log = logging.getLogger("tether.daemon")
_clock = liveness.clock

_TETHER_PACKAGE = Path(__file__).parents[1]  # src/tether: the worker imports tether.worker


@dataclass(frozen=True)
class EnvSpec:
    """What a worker process is made of. Two specs that compare equal share one worker."""

    name: str = "default"
    reqs: tuple[str, ...] = ()
    env_vars: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    python: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> EnvSpec:
        config = config or {}
        return cls(
            name=config.get("name") or "default",
            reqs=tuple(config.get("reqs") or ()),
            env_vars=tuple(sorted((config.get("env_vars") or {}).items())),
            working_dir=config.get("working_dir"),
            python=config.get("python"),
        )

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "reqs": list(self.reqs), "env_vars": dict(self.env_vars),
                "working_dir": self.working_dir, "python": self.python}


class WorkerStartError(LaunchError, RuntimeError):
    """A worker process could not be started (bad interpreter, working dir, crash at start)."""


def runtime_path(state_dir: Path) -> Path:
    """A folder holding only what a worker needs to import (tether and cloudpickle), as links.

    Put first on a worker's PYTHONPATH, it lets any interpreter run the worker runtime without the
    daemon's own dependencies becoming importable.
    """
    import cloudpickle

    target = state_dir / "runtime"
    target.mkdir(parents=True, exist_ok=True)
    for src in (_TETHER_PACKAGE, Path(cloudpickle.__file__).parent):
        link = target / src.name
        if link.is_symlink() and os.readlink(link) == str(src):
            continue
        tmp = target / f".{src.name}.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(src)
        os.replace(tmp, link)
    return target


def describe_exit(returncode: int | None) -> dict[str, Any]:
    if returncode is None:
        return {"exitcode": None, "signal": None, "how": "closed its connection"}
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return {"exitcode": returncode, "signal": name, "how": f"was killed by {name} ({sig})"}
    return {"exitcode": returncode, "signal": None, "how": f"exited with code {returncode}"}


class _WorkerLink(asyncio.BufferedProtocol):
    """The daemon's end of one worker's socket: messages are parsed as bytes arrive (a big
    payload is received in place) and handed to the worker's calls."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.parser = MessageParser()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        if not self.worker._attach(self):
            transport.close()  # only the first connection is the worker's
            return
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.parser.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        for msg in self.parser.feed(nbytes):
            self.worker._on_message(msg)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.transport is not None:
            self.worker._on_lost()


@dataclass
class WorkerProcess:
    """A running worker: its process, its socket connection and the calls in flight on it."""

    spec: EnvSpec
    python: str
    log_path: Path
    runtime_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    limits: Any = None  # the cluster's tether.daemon.limits.Limits (memory, cpus), or None
    _slot: Any = None  # this worker's place in them: its cgroup, and the report of its death
    proc: subprocess.Popen | None = None
    pid: int | None = None
    returncode: int | None = None
    alive: bool = False
    stopping: bool = False  # stop() was asked for: calls it cuts short are told why
    _link: _WorkerLink | None = None
    _listener: socket.socket | None = None
    _hello: asyncio.Future | None = None
    _exit: asyncio.Future | None = None
    _pending: dict[int, CallQueue] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _sock_dir: str | None = None
    _server: asyncio.AbstractServer | None = None
    _death: asyncio.Task | None = None
    died: asyncio.Event = field(default_factory=asyncio.Event)
    # when the daemon last heard from it (``daemon/liveness.py``), and the watch that pings it
    heard: float = 0.0
    watch: Any = None

    async def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        await self.attach(timeout)

    def spawn(self) -> None:
        """Start the process, listening for it on a fresh socket. Needs no event loop: the daemon
        starts its default worker this way before importing FastAPI, so both boot at once."""
        # short path (sun_path is 108 bytes), named after the state dir (runtime_dir's parent) so
        # that the next daemon sweeps this one's leftovers and nobody else's (daemon/sweep.py)
        self._sock_dir = tempfile.mkdtemp(prefix=sweep.socket_prefix(self.runtime_dir.parent))
        path = os.path.join(self._sock_dir, "w.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        # an Image's env vars (set_env_vars), re-read at each start: the env's own win over them
        image_env = state.read_image_env(self.runtime_dir.parent)
        env = {**os.environ, **image_env, **dict(self.spec.env_vars),
               **secret_files.env_vars(self.runtime_dir.parent, self.spec.name), **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.runtime_dir), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._slot = self.limits.slot(self.spec.name) if self.limits is not None else None
        try:
            with open(self.log_path, "ab") as logf:
                self.proc = subprocess.Popen(
                    [*(self._slot.prefix if self._slot else ()),
                     self.python, "-m", "tether.worker.runtime", "--connect", path],
                    env=env, cwd=self.spec.working_dir or None, stdin=subprocess.DEVNULL,
                    stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=children.preexec(),  # it dies with the daemon, even a killed one
                )
        except OSError as exc:  # its message may not say which path is wrong: name both
            self._abandon()
            raise WorkerStartError(
                f"the worker for env {self.spec.name!r} could not be started with interpreter "
                f"{self.python!r} in working dir {self.spec.working_dir or os.getcwd()!r}: {exc}"
            ) from None
        self.pid = self.proc.pid
        children.watch(self.pid)  # its process group (its own children) too
        if self._slot is not None:
            self._slot.started(self.pid)

    async def attach(self, timeout: float = 60.0) -> None:
        """Accept the spawned process's connection and wait for its HELLO."""
        loop = asyncio.get_running_loop()
        self._hello, self._exit = loop.create_future(), loop.create_future()
        threading.Thread(target=self._wait_exit, args=(loop,), name=f"wait-worker-{self.pid}",
                         daemon=True).start()
        self._server = await loop.create_unix_server(lambda: _WorkerLink(self), sock=self._listener)
        done, _ = await asyncio.wait({self._hello, self._exit}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._hello not in done:
            if self._exit not in done:
                self.proc.kill()
            await asyncio.shield(self._exit)
            if self._link is not None and self._link.transport is not None:
                self._link.transport.close()
            self._abandon()
            tail = state.tail(self.log_path)
            raise WorkerStartError(
                f"the worker for env {self.spec.name!r} ({self.python}) did not start: "
                f"{describe_exit(self.proc.returncode)['how']}. Last lines of {self.log_path}:\n{tail}"
            )
        self._server.close()
        self.watch = liveness.Watch(self)
        log.info("worker for env %r started (pid %s)", self.spec.name, self.pid)
        events.record("worker_started", f"worker for env {self.spec.name!r} started (pid {self.pid})",
                      env=self.spec.name, pid=self.pid)

    def _wait_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        """A thread per worker waits for its exit (what asyncio's child watcher does too)."""
        code = self.proc.wait()
        try:
            loop.call_soon_threadsafe(lambda: self._exit.done() or self._exit.set_result(code))
        except RuntimeError:
            pass  # the loop is closed: the daemon is gone

    async def _exited(self, timeout: float | None = None) -> int:
        """The exit code, once the process ended (TimeoutError after ``timeout``)."""
        if self._exit is None:  # never attached
            return self.proc.wait(timeout)
        return await asyncio.wait_for(asyncio.shield(self._exit), timeout)

    # -- the link (callbacks of _WorkerLink, on the loop) --------------------------------------

    def _attach(self, link: _WorkerLink) -> bool:
        if self._link is not None:
            return False
        self._link = link
        return True

    def _on_message(self, msg: wire.Message) -> None:
        self.heard = _clock()
        if not self.alive:
            if msg.kind == wire.HELLO and self._hello is not None and not self._hello.done():
                self.alive = True
                self._hello.set_result(msg)
            return
        queue = self._pending.get(msg.call_id)
        if queue is None:
            return
        if msg.kind in wire.TERMINAL_KINDS:
            del self._pending[msg.call_id]
        queue.put_nowait(msg)

    def _on_lost(self) -> None:
        if self._death is None:
            self._death = asyncio.ensure_future(self._on_death())

    async def _on_death(self) -> None:
        self.alive = False
        if self.proc is not None:
            try:
                self.returncode = await self._exited(5)
            except TimeoutError:
                self.proc.kill()
                self.returncode = await self._exited()
        how = describe_exit(self.returncode)
        oom = self._slot.report(self.returncode) if self._slot is not None else None
        pending, self._pending = self._pending, {}
        for queue in pending.values():
            message = (
                f"the worker process of env {self.spec.name!r} (pid {self.pid}) {how['how']} during "
                f"the call. The daemon keeps serving; the next call starts a fresh worker. "
                f"Worker log: {self.log_path}"
            )
            if oom and not self.stopping:  # killed for lack of memory: say so, with limit and peak
                message = oom_message(self.spec.name, self.pid, oom, self.log_path)
            if self.stopping:
                message = (
                    f"the worker process of env {self.spec.name!r} (pid {self.pid}) was stopped during "
                    f"the call: its env was deleted or restarted, or the daemon is stopping. "
                    f"Worker log: {self.log_path}"
                )
            frames = wire.plain_error_frames(
                wire.WORKER_DIED, message, "OOMKilled" if oom else "WorkerDied", exitcode=how["exitcode"],
                signal=how["signal"], env=self.spec.name, pid=self.pid, **(oom or {}),
            )
            queue.put_nowait(wire.Message(wire.ERROR, 0, [memoryview(f) for f in frames]))
        self.died.set()
        self._cleanup_socket()
        self._release_slot()
        if oom:
            log.warning("worker for env %r (pid %s) ran out of memory: %s (limit %s, peak %s)",
                        self.spec.name, self.pid, oom["oom_reason"], oom["limit"], oom["peak"])
        elif self.returncode not in (0, None):
            log.warning("worker for env %r (pid %s) %s", self.spec.name, self.pid, how["how"])
        if oom:
            events.record("oom_kill", f"worker for env {self.spec.name!r} (pid {self.pid}) ran out of "
                          f"memory: {oom['oom_reason']}", env=self.spec.name, pid=self.pid,
                          limit=oom["limit"], peak=oom["peak"], calls=len(pending))
        else:
            events.record("worker_died", f"worker for env {self.spec.name!r} (pid {self.pid}) "
                          f"{'was stopped' if self.stopping else how['how']}", env=self.spec.name,
                          pid=self.pid, exitcode=how["exitcode"], signal=how["signal"],
                          stopped=self.stopping, calls=len(pending))

    # -- requests ------------------------------------------------------------------------------

    def request(self, kind: int, frames) -> asyncio.Queue:
        """Send a message to the worker; replies for it arrive on the returned queue."""
        return self.request_with_id(kind, frames)[1]

    def request_with_id(self, kind: int, frames, flags: int = 0) -> tuple[int, asyncio.Queue]:
        """Like ``request``; also returns the message's id on this connection (to cancel it)."""
        link = self._link
        if not self.alive or link is None or link.transport is None or link.transport.is_closing():
            raise RuntimeError("worker is not running")
        call_id = next(self._ids)
        queue = CallQueue(self, call_id)
        if not self._pending:
            self.heard = _clock()  # silence counts from when the daemon waits for an answer
        self._pending[call_id] = queue
        parts = wire.encode(kind, frames, call_id, flags)
        if sum(memoryview(p).nbytes for p in parts) <= 1 << 16:
            link.transport.write(b"".join(parts))  # one system call (writelines makes one per part)
        else:
            link.transport.writelines(parts)
        return call_id, queue

    def credit(self, call_id: int, amount: int) -> None:
        """Tell the worker a generator's caller took ``amount`` more of it (``daemon.flow``)."""
        link = self._link
        if call_id in self._pending and link is not None and link.transport is not None:
            link.transport.write(wire.encode_bytes(wire.CREDIT, wire.credit_frames(amount), call_id))

    def cancel(self, call_id: int) -> bool:
        """Ask the worker to stop a call; False if it already finished."""
        link = self._link
        if call_id not in self._pending or not self.alive or link is None or link.transport is None:
            return False
        link.transport.writelines(wire.encode(wire.CANCEL, [], call_id))
        return True

    async def control(self, meta: dict[str, Any], *payload, timeout: float | None = None) -> Any:
        """A CONTROL round trip whose logs are dropped; returns the JSON reply or raises."""
        frames = await self.control_frames(meta, *payload, timeout=timeout)
        return json.loads(bytes(frames[0]))

    async def control_frames(self, meta: dict[str, Any], *payload, timeout: float | None = None) -> list:
        """A CONTROL round trip; returns the RESULT's frames (a JSON reply, or a pickle) or raises."""
        queue = self.request(wire.CONTROL, [wire.json_frame({**meta, "stream_logs": False}), *payload])
        while True:
            msg = await asyncio.wait_for(queue.get(), timeout)
            if msg.kind == wire.RESULT:
                return msg.frames
            if msg.kind == wire.ERROR:
                raise wire.exception_from_error(msg)

    async def stop(self, timeout: float = 5.0) -> None:
        self.stopping = True
        if self.proc is None or self.proc.returncode is not None:
            self._cleanup_socket()
            return
        if self._link is not None and self._link.transport is not None:
            self._link.transport.close()  # the worker exits when its connection closes
        elif self._exit is None:
            self.proc.kill()  # spawned, never attached: nothing else would stop it
        try:
            await self._exited(timeout)
        except (TimeoutError, subprocess.TimeoutExpired):
            self.proc.kill()
            await self._exited()
        self._on_lost()  # usually done by the link already; idempotent
        await asyncio.gather(self._death, return_exceptions=True)
        self._cleanup_socket()

    def _abandon(self) -> None:
        """Forget a worker that never connected: stop listening for it, remove its socket."""
        if self._server is not None:
            self._server.close()
        elif self._listener is not None:
            self._listener.close()
        self._cleanup_socket()
        self._release_slot()

    def _release_slot(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.release()

    def _cleanup_socket(self) -> None:
        if self.pid is not None and (self.proc is None or self.proc.returncode is not None):
            children.unwatch(self.pid)
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None

    def info(self) -> dict[str, Any]:
        sample = usage.read_proc(self.pid) if self.alive and self.pid else None
        return {"env": self.spec.name, "pid": self.pid, "alive": self.alive, "python": self.python,
                "in_flight": len(self._pending), "log": str(self.log_path),
                "rss": sample[1] if sample else None, **liveness.report(self)}


