"""`make bench`: tether's call path next to a bare FastAPI endpoint, on this machine, over loopback.

1. tether: a local cluster in a throwaway TETHER_HOME, ``noop`` from ``bench_code.py`` deployed on
   it; cold start to first call, a redeploy with ``.to()``, then no-op call latency from the Python
   client and calls/s from 16 threads (one stub, one keep-alive connection per thread).
2. bare: ``bare_server.py`` (FastAPI on uvicorn, same settings as the daemon) in a subprocess, the
   same figures with one keep-alive ``http.client`` connection per thread.

Prints a table with the ratio tether/bare and writes bench/results/latest.json. Everything runs on
127.0.0.1 and is torn down at the end. Timing belongs here, never in an asserting test.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"

WARMUP_CALLS = 200
LATENCY_CALLS = 2000
THREADS = 16
THROUGHPUT_SECONDS = 3.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- measuring -------------------------------------------------------------------------------------


def latency(call: Callable[[], object]) -> dict[str, float]:
    """p50/p99 of ``LATENCY_CALLS`` sequential calls after ``WARMUP_CALLS``, in milliseconds."""
    for _ in range(WARMUP_CALLS):
        call()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(LATENCY_CALLS):
        t0 = clock()
        call()
        samples.append(clock() - t0)
    samples.sort()

    def pct(p: float) -> float:  # nearest rank
        return samples[max(0, math.ceil(p / 100 * len(samples)) - 1)] / 1e6

    return {"p50_ms": pct(50), "p99_ms": pct(99), "mean_ms": sum(samples) / len(samples) / 1e6,
            "calls": len(samples)}


def throughput(make_call: Callable[[], Callable[[], object]]) -> dict[str, float]:
    """Calls/s from ``THREADS`` threads calling in a loop for ``THROUGHPUT_SECONDS``.

    ``make_call`` is run once per thread (so each thread can own its connection); every thread
    warms up, then all start together.
    """
    counts = [0] * THREADS
    errors: list[BaseException] = []
    ready = threading.Barrier(THREADS + 1)
    go = threading.Event()
    deadline = [0.0]

    def worker(i: int) -> None:
        try:
            call = make_call()
            for _ in range(20):
                call()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            ready.wait()
            return
        ready.wait()
        go.wait()
        n, end, clock = 0, deadline[0], time.perf_counter
        try:
            while clock() < end:
                call()
                n += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        counts[i] = n

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    deadline[0] = start + THROUGHPUT_SECONDS
    go.set()
    for t in threads:
        t.join(THROUGHPUT_SECONDS + 60)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} thread(s) failed; first: {errors[0]!r}") from errors[0]
    total = sum(counts)
    return {"calls_per_s": total / elapsed, "calls": total, "seconds": elapsed, "threads": THREADS}


# -- tether ----------------------------------------------------------------------------------------


def bench_tether() -> dict[str, object]:
    home = tempfile.mkdtemp(prefix="tether-bench-")
    os.environ["TETHER_HOME"] = home  # before tether is imported: nothing of ~/.tether is touched
    sys.path.insert(0, str(HERE))
    from bench_code import noop

    import tether as rh

    cluster = rh.cluster("local")
    try:
        log("tether: starting a local cluster, deploying bench_code.noop")
        t0 = time.perf_counter()
        cluster.up_if_not()
        t_up = time.perf_counter()
        remote = rh.function(noop).to(cluster, name="noop")
        t_to = time.perf_counter()
        remote()
        t_call = time.perf_counter()
        remote = rh.function(noop).to(cluster, name="noop")  # again, on the running cluster
        redeploy = time.perf_counter() - t_call
        remote()

        log(f"tether: latency, {LATENCY_CALLS} calls")
        lat = latency(remote)
        log(f"tether: calls/s, {THREADS} threads for {THROUGHPUT_SECONDS:.0f} s")
        tput = throughput(lambda: remote)
        return {
            "cold_start_to_first_call_s": t_call - t0,
            "cluster_up_s": t_up - t0,
            "first_to_s": t_to - t_up,
            "redeploy_to_s": redeploy,
            "latency": lat,
            "throughput": tput,
        }
    finally:
        cluster.teardown()
        shutil.rmtree(home, ignore_errors=True)


# -- a bare FastAPI endpoint -----------------------------------------------------------------------


class BareClient:
    """One keep-alive ``http.client`` connection (TCP_NODELAY, like tether's client)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __call__(self) -> object:
        self.conn.request("POST", "/noop/call", body=b"{}", headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"bare endpoint answered {resp.status}: {body[:200]!r}")
        return json.loads(body)


def bench_bare() -> dict[str, object]:
    log("bare: starting FastAPI + uvicorn on 127.0.0.1")
    proc = subprocess.Popen([sys.executable, str(HERE / "bare_server.py")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            raise RuntimeError(f"bare_server.py did not start (exit code {proc.poll()})")
        port = int(line)
        client = BareClient(port)
        log(f"bare: latency, {LATENCY_CALLS} calls")
        lat = latency(client)
        log(f"bare: calls/s, {THREADS} threads for {THROUGHPUT_SECONDS:.0f} s")
        tput = throughput(lambda: BareClient(port))
        return {"latency": lat, "throughput": tput}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# -- report ----------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {}
    for dist in ("tether", "fastapi", "uvicorn", "uvloop", "httptools", "cloudpickle"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def table(tether: dict, bare: dict) -> str:
    rows = [
        ("no-op call p50 latency (ms)", tether["latency"]["p50_ms"], bare["latency"]["p50_ms"], "{:.3f}"),
        ("no-op call p99 latency (ms)", tether["latency"]["p99_ms"], bare["latency"]["p99_ms"], "{:.3f}"),
        (f"calls/s, {THREADS} client threads", tether["throughput"]["calls_per_s"],
         bare["throughput"]["calls_per_s"], "{:,.0f}"),
        ("local cluster cold start to first call (s)", tether["cold_start_to_first_call_s"], None, "{:.3f}"),
        (".to() on a running cluster (s)", tether["redeploy_to_s"], None, "{:.3f}"),
    ]
    lines = [f"{'figure':<44}{'tether':>12}{'bare FastAPI':>14}{'tether/bare':>13}", "-" * 83]
    for label, t, b, fmt in rows:
        bare_s = fmt.format(b) if b is not None else "-"
        ratio = f"{t / b:.2f}" if b else "-"
        lines.append(f"{label:<44}{fmt.format(t):>12}{bare_s:>14}{ratio:>13}")
    return "\n".join(lines)


def main() -> int:
    load = os.getloadavg()  # other work on the machine skews every figure: recorded with them
    tether = bench_tether()
    bare = bench_bare()
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_start": [round(x, 2) for x in load]},
        "versions": versions(),
        "settings": {"warmup_calls": WARMUP_CALLS, "latency_calls": LATENCY_CALLS,
                     "threads": THREADS, "throughput_seconds": THROUGHPUT_SECONDS},
        "tether": tether,
        "bare_fastapi": bare,
        "ratios_tether_over_bare": {
            "p50_latency": tether["latency"]["p50_ms"] / bare["latency"]["p50_ms"],
            "p99_latency": tether["latency"]["p99_ms"] / bare["latency"]["p99_ms"],
            "calls_per_s": tether["throughput"]["calls_per_s"] / bare["throughput"]["calls_per_s"],
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table(tether, bare))
    print(f"\n{result['machine']['cpus']} CPUs, load average {load[0]:.2f} at start, Python "
          f"{result['machine']['python']}; written to {RESULTS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
