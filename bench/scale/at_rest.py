"""Memory at rest: an idle local cluster (its daemon and default worker) vs an idle ``ray.init()``.

tether: a local cluster of its own, up, nothing deployed, left idle for a few seconds; the daemon
and every process below it (the default worker, started with the daemon). Ray: ``ray.init()``
as the Ray peer runs it, in a child process (the driver), left idle as long; every process below
the driver (GCS, raylet, its agents and idle workers). Neither counts the caller: the driver's own
memory (Ray's core worker lives in it) is in the details, as the caller's is not.

RSS is summed over the processes (shared pages counted in each), PSS too (shared pages split).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import processes
from bench.scale import procs

ROOT = Path(__file__).resolve().parents[2]

RAY_CHILD = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from bench.peers import ray_peer
ray_peer.prepare_environ()
import ray
ray_peer.init(ray, Path({temp!r}))
print("ready", flush=True)
sys.stdin.read()  # until the parent closes it
ray.shutdown()
"""


def _settled(pids_of, settle_s: float) -> dict[str, Any]:
    """The tree's memory once its process count held still for ``settle_s`` (at most 4x that)."""
    end = time.monotonic() + 4 * settle_s
    last, since = None, time.monotonic()
    while time.monotonic() < end:
        pids = pids_of()
        if pids != last:
            last, since = pids, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            break
        time.sleep(0.25)
    return procs.tree(last or [])


def tether_idle(settle_s: float, cluster: Any = None) -> dict[str, Any]:
    """A new local cluster's memory once idle (``cluster``: that one instead, left up)."""
    import tether as rh

    own = cluster is None
    if own:
        cluster = rh.cluster(name="at-rest", launcher="local")
    try:
        cluster.up_if_not()
        pid = cluster.status()["pid"]
        got = _settled(lambda: [pid, *procs.descendants(pid)], settle_s)
        return {**got, "daemon_rss_mib": procs.rss_mib(pid)}
    finally:
        if own:
            cluster.teardown()


def ray_idle(workdir: Path, settle_s: float, timeout: float = 120) -> dict[str, Any]:
    code = RAY_CHILD.format(root=str(ROOT), temp=str(workdir / "ray-at-rest"))
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             start_new_session=True, env=os.environ.copy())
    try:
        if processes.read_line(child, timeout).strip() != b"ready":
            raise RuntimeError("ray.init() in a child process did not come up")
        got = _settled(lambda: procs.descendants(child.pid), settle_s)
        return {**got, "driver_rss_mib": procs.rss_mib(child.pid), "driver_pss_mib": procs.pss_mib(child.pid)}
    finally:
        try:
            child.stdin.close()
            child.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        processes.stop(child)
