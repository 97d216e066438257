"""tether on its local cluster, in this process's throwaway ``TETHER_HOME``.

``bench/run.py`` sets ``TETHER_HOME`` before tether is imported, so nothing of ``~/.tether`` (its
daemon, its saved resources) is touched.
"""

from __future__ import annotations

import importlib
import inspect
import os
import statistics
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench import measure
from bench.peers import Measured, Peer, WrkTarget

PENDING = "threads (async API pending)"


class TetherPeer(Peer):
    key = "tether"
    title = "tether"
    echo_mode = ("pickle protocol 5, the array's buffer through shared memory (/dev/shm) both ways: "
                 "written once by the sender, mapped by the receiver; the daemon never touches it")
    socket_mode = "TETHER_SHM=0: pickle protocol 5, the array as an out-of-band frame over HTTP, both ways"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.cluster = None
        self.fn = None
        self.echo_fn = None

    def start(self) -> None:
        home = os.environ.get("TETHER_HOME", "")
        if not home or not Path(home).resolve().is_relative_to(self.workdir.parent.resolve()):
            raise RuntimeError(f"TETHER_HOME is {home!r}, not a throwaway folder of this run")
        import tether as rh
        from bench.bench_code import echo, noop

        t0 = measure.clock()
        self.cluster = rh.cluster("local")
        self.cluster.up_if_not()
        t_up = measure.clock()
        self.fn = rh.function(noop).to(self.cluster, name="noop")
        t_to = measure.clock()
        self.fn()
        t_call = measure.clock()
        self.echo_fn = rh.function(echo).to(self.cluster, name="echo")
        self.details["start"] = {"cluster_up_s": t_up - t0, "first_to_s": t_to - t_up,
                                 "first_call_s": t_call - t_to, "cold_start_to_first_call_s": t_call - t0,
                                 "note": "in the benchmark's own process (tether already imported)"}

    def stop(self) -> None:
        if self.cluster is not None:
            cluster, self.cluster = self.cluster, None
            cluster.teardown()

    def noop(self) -> Callable[[], object]:
        return self.fn  # one stub for all threads: the client keeps a connection per thread

    def in_flight(self, n: int, seconds: float, warmup: int, max_calls: int) -> Measured:
        make_async = public_async_call(self.fn)
        if make_async is None:  # measure what exists, and say so
            got = measure.threads(lambda: self.fn, n, seconds, warmup, max_calls)
            return {"value": got["calls_per_s"], "mode": f"{n} {PENDING}", **got}
        call, how = make_async

        @asynccontextmanager
        async def client():
            yield call

        got = measure.in_flight(client, n, seconds, warmup, max_calls)
        return {"value": got["calls_per_s"], "mode": f"{n} in flight, {how}", **got}

    def echo(self) -> Callable[[Any], Any]:
        return self.echo_fn

    def echo_socket(self) -> Callable[[Any], Any]:
        client = self.cluster.client

        def call(array):  # the same stub, its client told to leave shared memory out
            saved, client.shm = client.shm, None
            try:
                return self.echo_fn(array)
            finally:
                client.shm = saved

        return call

    def wrk_target(self) -> WrkTarget:
        client = self.cluster.client
        return WrkTarget(f"http://{client.host}:{client.port}/noop/call",
                         {"Authorization": f"Bearer {client.token}"})

    def extra_figures(self, settings) -> list[tuple[str, Callable[[], Measured | None]]]:
        return [
            ("to_s", lambda: self._to(settings)),
            ("redeploy_s", lambda: self._redeploy(settings)),
            ("acall64_calls_per_s", lambda: self._internal_acall(settings)),
            ("load_calls_per_s", lambda: self._load(settings)),
            ("load_bad_calls", lambda: self._load_figure("bad", "errors + mixed-up results + counter drift")),
            ("load_daemon_rss_mib", lambda: self._load_figure("daemon_rss_after_mib", "VmRSS after the run")),
        ]

    # -- tether-only figures ------------------------------------------------------------------------

    def _to(self, settings) -> Measured:
        """``.to()`` of a function on the running cluster: a new service each time, then the same
        name again (what re-running a script does)."""
        import tether as rh
        from bench.bench_code import noop

        names = [f"noop_to_{i}" for i in range(settings.deploy_reps)]
        it = iter(names)
        new = measure.repeat(lambda: rh.function(noop).to(self.cluster, name=next(it)),
                             settings.deploy_reps, settings.echo_max_s)
        same = measure.repeat(lambda: rh.function(noop).to(self.cluster, name="noop"),
                              settings.deploy_reps, settings.echo_max_s)
        for name in names[:new["reps"]]:
            try:
                self.cluster.delete(name)
            except Exception:  # noqa: BLE001 - tidying only; teardown frees everything anyway
                break
        return {"value": new["median_s"], "mode": "new service name each time; median",
                "new_name": new, "same_name": same}

    def _redeploy(self, settings) -> Measured:
        """Edit a module, ``.to()`` it again, first call: it must return the edited value."""
        import tether as rh

        folder = self.workdir / "edited"
        folder.mkdir(exist_ok=True)
        modname = f"bench_edited_{os.getpid()}"
        path = folder / f"{modname}.py"

        def write(version: int) -> None:
            path.write_text(f'"""Edited by the benchmark."""\n\n\ndef value():\n    return {version}\n')

        write(0)
        sys.path.insert(0, str(folder))
        try:
            module = importlib.import_module(modname)
            fn = rh.function(module.value).to(self.cluster, name="edited")
            if fn() != 0:
                raise RuntimeError("the first deploy of the edited module returned the wrong value")
            to_s, total_s = [], []
            end = measure.clock() + settings.echo_max_s
            for version in range(1, settings.redeploy_reps + 1):
                write(version)
                module = importlib.reload(module)  # the caller sees its edit too (not timed)
                t0 = measure.clock()
                fn = rh.function(module.value).to(self.cluster, name="edited")
                t1 = measure.clock()
                got = fn()
                t2 = measure.clock()
                if got != version:
                    raise RuntimeError(f"after an edit, the redeployed function returned {got!r}, "
                                       f"not the edited value {version!r} (old code served)")
                to_s.append(t1 - t0)
                total_s.append(t2 - t0)
                if measure.clock() > end:
                    break
        finally:
            sys.path.remove(str(folder))
            sys.modules.pop(modname, None)
        return {"value": statistics.median(total_s),
                "mode": "edit the module file, .to(), first call returns the new value; median",
                "to_only_s": to_s, "to_and_first_call_s": total_s, "reps": len(total_s)}

    def _load(self, settings) -> Measured:
        from bench import load

        self._load_result = got = load.run(self.cluster, settings.load_calls, settings.load_max_s)
        if not got["complete"]:
            raise RuntimeError(f"the load run stopped after {got['calls']} of {settings.load_calls} calls "
                               f"({settings.load_max_s:g} s bound)")
        return {"value": got["calls_per_s"], "mode": f"{got['calls']:,} calls: {load.THREADS} threads + "
                f"{load.IN_FLIGHT} async in flight on one instance", **got}

    def _load_figure(self, key: str, mode: str) -> Measured | None:
        got = getattr(self, "_load_result", None)
        if got is None or got.get(key) is None:
            return None
        return {"value": got[key], "mode": mode}

    def _internal_acall(self, settings) -> Measured | None:
        """64 in flight through ``DaemonClient.acall``: the client's async call path, which no
        public API exposes yet. Informational, no target."""
        if public_async_call(self.fn) is not None:
            return None  # the public API is measured in the main "in flight" figure
        client = self.cluster.client
        acall = getattr(client, "acall", None)
        if acall is None:
            return None

        @asynccontextmanager
        async def open_client():
            async def call():
                return await acall("noop", "call")

            yield call

        got = measure.in_flight(open_client, settings.inflight, settings.seconds,
                                settings.warmup_calls, settings.max_calls)
        return {"value": got["calls_per_s"], "mode": "DaemonClient.acall (internal, not a public API)",
                **got}


def public_async_call(fn) -> tuple[Callable[[], Any], str] | None:
    """The public async form of calling ``fn`` if tether has one: ``fn.aio()`` or
    ``fn(run_async=True)`` (Runhouse's names, issue 3). None while it does not."""
    aio = getattr(fn, "aio", None)
    if callable(aio):
        return (lambda: aio()), "Function.aio()"
    code = type(fn).__call__.__code__
    if "run_async" in code.co_varnames or "run_async" in code.co_consts:
        probe = fn(run_async=True)
        if inspect.isawaitable(probe):
            import asyncio

            asyncio.run(_await(probe))
            return (lambda: fn(run_async=True)), "Function(run_async=True)"
    return None


async def _await(awaitable) -> Any:
    return await awaitable
