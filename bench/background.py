"""How much CPU *other* work used during the run (the machine may be shared): a sampler process.

Started by ``bench/run.py`` as ``python bench/background.py``; every 0.5 s it reads each process's
CPU time from ``/proc`` and adds the growth to "ours" (the process carries this run's
``TETHER_BENCH_RUN`` marker, is the benchmark, this sampler or below the benchmark, or runs on a
test host the run made: a network namespace that appeared after the sampler started) or to
"others". It stops when its stdin closes
(the benchmark ended or died) or after ``--max-seconds``, and prints one JSON line with the
others' top commands (who they were: kernel threads such as writeback, a test host's sshd, or
another tenant). Approximate: a process that starts and ends between two samples is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from pathlib import Path

MARKER = "TETHER_BENCH_RUN"


def _stat(pid: str) -> tuple[str, list[str]] | None:
    """``/proc/<pid>/stat``: the part up to the command's ")" and the fields after it (state,
    ppid, ...), or None if the process is gone."""
    try:
        head, tail = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
    except (OSError, ValueError):
        return None
    return head, tail.split()


def _cpu(pid: str) -> tuple[str, float, str] | None:
    """(start time, user+system seconds, command) of ``pid``, or None if it is gone."""
    got = _stat(pid)
    if got is None:
        return None
    head, fields = got
    tick = os.sysconf("SC_CLK_TCK")
    # kworker/u8:1-flush-254:0 -> kworker (the suffix changes with the work it does)
    command = head.split("(", 1)[-1].split("/", 1)[0]
    return fields[19], (int(fields[11]) + int(fields[12])) / tick, command


def _netns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _ancestors(pid: str, limit: int = 32) -> list[int]:
    """``pid``'s parent, its parent's parent, ... (as far as /proc tells)."""
    found: list[int] = []
    while len(found) < limit:
        got = _stat(pid)
        if got is None:
            break
        ppid = int(got[1][1])
        if ppid <= 1:
            break
        found.append(ppid)
        pid = str(ppid)
    return found


def _ours(pid: str, marker: bytes, parent: int, old_netns: set[str]) -> bool:
    if int(pid) in (os.getpid(), parent):  # the benchmark set the marker after it started
        return True
    # started by the benchmark with an environment of its own (a cold start's child, an
    # orchestrator's child and what it starts: Prefect's server, their daemons)
    if parent in _ancestors(pid):
        return True
    # a test host the run made (bench/netns_hosts.py): its sshd's sessions start with a clean
    # environment (no marker), but they run in a network namespace newer than this sampler
    netns = _netns(pid)
    if netns is not None and netns not in old_netns:
        return True
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--max-seconds", type=float, default=900.0)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--parent", type=int, default=os.getppid(), help="the benchmark's pid")
    args = p.parse_args()
    marker = f"{MARKER}={os.environ.get(MARKER, '')}".encode()
    seen: dict[str, tuple[str, float, bool]] = {}  # pid -> (start time, last cpu, ours)
    totals = {"ours": 0.0, "others": 0.0}
    by_command: dict[str, float] = {}
    start = time.monotonic()
    first = True
    old_netns = {_netns(pid) for pid in os.listdir("/proc") if pid.isdigit()} - {None}
    while time.monotonic() - start < args.max_seconds:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            got = _cpu(entry)
            if got is None:
                continue
            started, cpu, command = got
            known = seen.get(entry)
            if known is None or known[0] != started:  # new (or a reused pid)
                ours = _ours(entry, marker, args.parent, old_netns)
                # a process already running at the first sample: count only what it uses from now
                seen[entry] = (started, cpu if first else 0.0, ours)
                known = seen[entry]
            totals["ours" if known[2] else "others"] += cpu - known[1]
            if not known[2] and cpu > known[1]:
                by_command[command] = by_command.get(command, 0.0) + cpu - known[1]
            seen[entry] = (started, cpu, known[2])
        first = False
        if select.select([sys.stdin], [], [], args.interval)[0] and not sys.stdin.buffer.read1(4096):
            break
    wall = time.monotonic() - start
    print(json.dumps({"wall_s": round(wall, 1), "ours_cpu_s": round(totals["ours"], 1),
                      "others_cpu_s": round(totals["others"], 1),
                      "others_cores": round(totals["others"] / wall, 2) if wall else 0.0,
                      "others_top": {c: round(v, 1) for c, v in sorted(by_command.items(), key=lambda kv: -kv[1])[:5]},
                      "others_by_command": {c: round(v, 2) for c, v in by_command.items()}}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
