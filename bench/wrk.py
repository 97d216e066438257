"""``wrk`` (Debian's package) against a peer's HTTP endpoint.

The headers (tether's bearer token) go in a Lua script written 0600 to this run's throwaway
folder, not on wrk's command line; the script's ``done`` hook prints the summary as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.peers import Measured, WrkTarget

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), latency.mean))
end
"""


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find(install: bool, log) -> tuple[str | None, str | None]:
    """wrk's path, installing Debian's package first if it is missing and we may (root, apt-get).

    Returns (path, None), or (None, why the wrk figure is skipped).
    """
    path = shutil.which("wrk")
    if path:
        return path, None
    if not install:
        return None, "wrk is not installed (--no-install); `apt-get install wrk`"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "wrk is not installed and this is not root with apt-get: `sudo apt-get install wrk`"
    log("wrk: not found, installing Debian's package (apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "wrk"]):
        try:
            subprocess.run(step, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(step)}` took over 300 s"
        path = shutil.which("wrk")
        if path:
            return path, None
    return None, "`apt-get install wrk` failed"


def version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0].strip() if out else "unknown"


def run(path: str, target: WrkTarget, workdir: Path, seconds: float, threads: int,
        connections: int) -> Measured:
    """Requests/s of wrk on ``target``; every request must succeed."""
    script = workdir / "wrk.lua"
    lines = ['wrk.method = "GET"']
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in target.headers.items()]
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n" + _DONE)
    duration = max(1, round(seconds))
    argv = [path, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
            "-s", str(script), target.url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    summary: dict[str, Any] | None = None
    for line in proc.stdout.splitlines():
        if line.startswith("WRKJSON "):
            summary = json.loads(line[len("WRKJSON "):])
    if proc.returncode != 0 or summary is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-500:]}")
    failed = sum(summary[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    if failed:
        raise RuntimeError(f"wrk: {failed} of {summary['requests']} requests failed: {summary}")
    rps = summary["requests"] / (summary["duration_us"] / 1e6)
    return {"value": rps, "mode": f"wrk -t{threads} -c{connections} -d{duration}s, GET /{target.url.split('/', 3)[-1]}",
            "requests": summary["requests"], "seconds": summary["duration_us"] / 1e6,
            "p50_ms": summary["p50_us"] / 1e3, "p99_ms": summary["p99_us"] / 1e3,
            "mean_ms": summary["mean_us"] / 1e3, "threads": threads, "connections": connections}
