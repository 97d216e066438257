"""A Ray actor on a local Ray instance started by this process (``ray.init``).

Ray runs on loopback only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes it use 127.0.0.1 instead of
the machine's address), with token auth, without its dashboard or usage reporting, with its session
files in this run's throwaway folder and nothing written to ``~/.ray``. ``stop`` is ``ray.shutdown()``, which ends every process Ray started.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import measure
from bench.peers import Measured, Peer

ROOT = Path(__file__).resolve().parents[2]
OBJECT_STORE_BYTES = 2 * 1024**3  # room for the 100 MB argument, its result and spares


class RayPeer(Peer):
    key = "ray"
    title = "Ray"
    echo_mode = "ray.put + actor call returning the array: shared-memory object store, the result is a zero-copy read-only view"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.ray = None
        self.actor = None

    def start(self) -> None:
        prepare_environ()
        t0 = measure.clock()
        import ray

        t_import = measure.clock()
        self.ray = ray
        init(ray, self.workdir / "ray")
        t_init = measure.clock()
        from bench.bench_code import Target

        self.actor = ray.remote(Target).remote()
        ray.get(self.actor.noop.remote())
        t_call = measure.clock()
        self.details["start"] = {
            "import_ray_s": t_import - t0, "ray_init_s": t_init - t_import,
            "actor_and_first_call_s": t_call - t_init, "init_to_first_call_s": t_call - t_import,
            "note": "in the benchmark's own process",
        }

    def stop(self) -> None:
        if self.ray is not None:  # also after an interrupted ray.init(): it ends what it started
            self.actor = None
            self.ray.shutdown()
        os.environ.pop("RAY_AUTH_TOKEN", None)

    def noop(self) -> Callable[[], object]:
        ray, actor = self.ray, self.actor
        return lambda: ray.get(actor.noop.remote())

    def in_flight(self, n: int, seconds: float, warmup: int, max_calls: int) -> Measured:
        """A window of ``n`` ``.remote()`` refs: each finished one is replaced by a new call."""
        ray, noop = self.ray, self.actor.noop
        ray.get([noop.remote() for _ in range(max(n, warmup))])
        pending = [noop.remote() for _ in range(n)]
        done = 0
        start = measure.clock()
        end = start + seconds
        while done < max_calls and measure.clock() < end:
            ready, pending = ray.wait(pending, num_returns=1, timeout=60)
            if not ready:
                raise RuntimeError("no Ray call finished within 60 s")
            ray.get(ready)
            done += len(ready)
            pending.extend(noop.remote() for _ in ready)
        elapsed = measure.clock() - start
        ray.get(pending, timeout=60)  # drain (not counted)
        return {"value": done / elapsed, "mode": f"{n} .remote() refs in flight (ray.wait window)",
                "calls_per_s": done / elapsed, "calls": done, "seconds": elapsed, "concurrency": n}

    def echo(self) -> Callable[[Any], Any]:
        ray, echo = self.ray, self.actor.echo

        def call(array):
            # ray.put copies the array into the shared-memory object store; the actor gets a
            # zero-copy read-only view of it; what it returns is stored again, and ray.get maps
            # that into this process without a copy (a read-only array).
            return ray.get(echo.remote(ray.put(array)))

        return call

    def extra_figures(self, settings) -> list[tuple[str, Callable[[], Measured | None]]]:
        start = self.details.get("start", {})
        if not start:
            return []
        return [("cold_start_s", lambda: {
            "value": start["init_to_first_call_s"],
            "mode": "ray.init() + new actor + first call, in process (after import ray)"})]


def prepare_environ() -> None:
    """Before ``import ray``: loopback only, no usage reporting, token auth with a token of this run."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no reporting home
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # bind and connect on 127.0.0.1 only
    # Ray's token auth (on by default, like tether's bearer token), with a token of this run
    # instead of one Ray would write to ~/.ray/auth_token.
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def init(ray: Any, temp_dir: Path) -> None:
    """``ray.init()`` as the benchmark runs it (also ``bench/scale/at_rest.py``): no dashboard,
    session files in ``temp_dir``; the benchmark's signal handlers kept."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    ray.init(
        num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
        logging_level="warning", namespace="tether-bench",
        object_store_memory=OBJECT_STORE_BYTES, _temp_dir=str(temp_dir),
        # workers import bench.bench_code.Target from this checkout
        job_config=ray.job_config.JobConfig(code_search_path=[str(ROOT)]),
    )
    for sig, handler in handlers.items():  # ray.init() installs its own: keep the benchmark's
        signal.signal(sig, handler)
