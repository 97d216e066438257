"""``python -m tether.daemon``: run a daemon in the foreground (launchers detach it).

It binds its listening socket before anything else, then writes ``daemon.json`` (pid, host, port,
versions) and ``daemon.pid`` into its state dir: a client that reads the file can connect at once.
The default env's first worker is started before FastAPI is imported, so both boot at once
(``TETHER_PRESTART=0`` turns that off).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

GRACEFUL_SHUTDOWN_SECONDS = 5


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)


def _stopping_server(config, store):
    """A uvicorn server that stops the workers first when it shuts down.

    Calls in flight then end at once with an error that says the worker was stopped, sent as an
    ordinary response; otherwise uvicorn would wait for them, then cut them off with a bare 500.
    """
    import uvicorn

    from tether.daemon import children

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            children.REAPER.start()  # this daemon's children die with it, however it dies
            store.start_restore()  # what the manifest held is made again, in the background

        async def shutdown(self, sockets=None) -> None:
            await store.shutdown()
            await super().shutdown(sockets)

        async def main_loop(self) -> None:
            """uvicorn's wakes every 0.1 s to look at ``should_exit``; this one sleeps until it is
            set (``__setattr__`` wakes it) or a second passes (the Date header). An idle daemon
            wakes a few times a second instead of ten: less CPU on a laptop, and on a machine out
            of memory a daemon that runs less often is less often the task whose page fault
            meets the OOM killer in the milliseconds a killed worker's memory is being freed
            (docs/daemon.md, "Out of memory")."""
            self._wake_loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
            counter = 0
            while not await self.on_tick(counter):
                counter += 10  # on_tick refreshes the Date header when counter % 10 == 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)

        def __setattr__(self, name: str, value) -> None:
            super().__setattr__(name, value)
            if name == "should_exit" and value and "_wake" in self.__dict__:
                # from a signal handler or the autostop thread: the loop may be asleep
                with contextlib.suppress(RuntimeError):  # the loop is closed: it is over anyway
                    self._wake_loop.call_soon_threadsafe(self._wake.set)

    return Server(config)


def _prestart_default_worker(state_dir: Path, python: str, limits):
    """Start the default env's first worker now: it boots on the other core while this process
    imports FastAPI and uvicorn (~0.5 s), and is usually the worker the first deploy wants."""
    from tether.daemon.workers import EnvSpec, WorkerProcess, runtime_path
    from tether.protocol import shm

    folder = shm.folder_for(state_dir)
    worker = WorkerProcess(spec=EnvSpec(), python=python, runtime_dir=runtime_path(state_dir),
                           log_path=state_dir / "logs" / "worker-default.log",
                           extra_env={"TETHER_SHM_DIR": str(folder)} if folder else {}, limits=limits)
    try:
        worker.spawn()
    except Exception as exc:  # noqa: BLE001 - the first deploy starts one and reports the error
        logging.getLogger("tether.daemon").warning("could not prestart the default worker: %s", exc)
        return None
    return worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tether.daemon", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path, help="token, pid, logs, envs")
    parser.add_argument("--cluster", default="local", help="the cluster's name (shown in errors)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--python", default=None, help="interpreter of the default env's workers")
    parser.add_argument("--cluster-host", default=None,
                        help="also listen on this address (a non-head node of a multi-node cluster, "
                             "for its head to reach it)")
    parser.add_argument("--tls", choices=("auto", "on", "off"), default="auto",
                        help="TLS with a certificate made at start, pinned by its callers: 'auto' "
                             "(the default) on every listener off loopback, 'on' on all, 'off' none")
    parser.add_argument("--autostop-mins", type=float, default=-1,
                        help="stop after this many minutes without requests (fractions allowed; -1: never)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from tether.daemon import malloc

    malloc.keep_chunks()  # big bodies' chunks reuse the heap's pages (daemon/malloc.py)
    state_dir: Path = args.state_dir.expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    python = args.python or os.environ.get("TETHER_WORKER_PYTHON") or sys.executable
    from tether.daemon import sweep

    sweep.sweep(state_dir)  # what a dead daemon of this state dir left: before any worker starts
    from tether.daemon.limits import Limits

    limits = Limits.for_daemon(state_dir.name, state_dir)  # memory=, cpus=: workers run in them
    prestarted = (_prestart_default_worker(state_dir, python, limits)
                  if os.environ.get("TETHER_PRESTART", "1") != "0" else None)

    import uvicorn

    from tether import state
    from tether._version import __version__
    from tether.daemon.app import create_app
    from tether.daemon.autostop import Autostop, IdleTracker
    from tether.daemon.store import Store
    from tether.protocol import wire

    token, token_path = state.ensure_token(state_dir), state_dir / state.TOKEN
    # The HTTP edge's bounds (header size and time, keep-alive, connection caps): http_guard.
    from tether.daemon import http_guard

    edge = http_guard.EdgeLimits.from_env(open_files=http_guard.raise_open_files())
    logging.getLogger("tether.daemon").info("HTTP edge: %s", edge)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    sockets = [sock]
    if args.cluster_host:
        extra = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        extra.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        extra.bind((args.cluster_host, 0))
        extra.listen(2048)
        sockets.append(extra)

    store = Store(state_dir, python, prestarted=prestarted, limits=limits)
    info = {"cluster": args.cluster, "pid": os.getpid(), "token_path": str(token_path),
            "state_dir": str(state_dir), "python": python, "started": time.time(),
            "autostop_mins": args.autostop_mins,
            "shm": {"dir": str(store.shm), "probe": store.shm_probe} if store.shm else None}
    tracker = IdleTracker(create_app(store, token, info))
    # A call that never returns must not keep a stopping daemon alive (see _stopping_server); the
    # grace period is a backstop for requests that wait on something else than a worker.
    config = uvicorn.Config(tracker, log_level="warning", access_log=False, lifespan="on", proxy_headers=False,
                            http=edge.protocol(), ws="none", timeout_keep_alive=edge.keep_alive,
                            server_header=False, date_header=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    server = _stopping_server(config, store)
    state.write_autostop(state_dir, args.autostop_mins)
    Autostop(tracker, state_dir, lambda: setattr(server, "should_exit", True), info).start()

    record = {"pid": os.getpid(), "host": host, "port": port, "tether": __version__,
              "protocol": wire.PROTOCOL_VERSION, "started": info["started"]}
    if len(sockets) > 1:
        record["cluster_address"] = list(sockets[1].getsockname()[:2])
    from tether.daemon.tls import serve_tls_where_wanted

    plain, tls_record = serve_tls_where_wanted(server, sockets, args.tls, state_dir, args.cluster)
    record.update(tls_record)
    # uvicorn re-raises SIGTERM after its graceful shutdown, under the handler it found: with the
    # default one the process would die before removing daemon.json below.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        state.write_daemon_record(state_dir, record)
        logging.getLogger("tether.daemon").info("tether %s daemon for %r on %s:%s", __version__, args.cluster, host, port)
        server.run(sockets=plain)
    finally:
        state.remove_daemon_record(state_dir, pid=os.getpid())

if __name__ == "__main__":
    main()
