"""The reaper: a tiny process that kills the daemon's children's process groups when the daemon
dies, however it dies (SIGKILL included).

The daemon starts it with a pipe on its stdin and writes ``+<pgid>`` when a child (a worker, a
``run_bash`` command) starts in its own process group, ``-<pgid>`` when it ended. When the pipe
closes (the daemon exited or was killed: the kernel closes its end either way), the reaper sends
SIGKILL to every group still listed, then exits. ``PR_SET_PDEATHSIG`` (``daemon/children.py``)
kills the direct children; the reaper is what also reaches their own children (``bash -c 'a | b'``,
a worker's subprocesses).

Run as ``python -I -S reaper.py``: standard library only, nothing of tether is imported.
"""

import os
import signal
import sys


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # a Ctrl-C or a hang-up meant for the daemon's terminal
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        try:
            pgid = int(line[1:])
        except ValueError:
            continue
        if line[:1] == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    main()
