"""What a dead daemon left behind, removed when the next daemon of the same state dir starts.

A daemon killed with SIGKILL (or by the OOM killer) removes nothing: its workers' socket folders
stay in the temp dir, its shared-memory folder keeps the files of calls in flight, and a worker
whose daemon is gone may still run (its children die with it, see ``daemon/children.py``; this
is the backstop where that could not be had). Everything here is found precisely, never by a
broad pattern:

* worker sockets live in ``$TMPDIR/tether-w-<tag>-*/`` where ``<tag>`` is a hash of the state dir
  (``socket_prefix``): only this state dir's folders are removed;
* shared memory: only files named the way ``protocol/shm.py`` names them (and its ``probe``),
  only in the cluster's own folder (``shm.folder_for``);
* a stray worker is a process whose command line is ``... -m tether.worker.runtime --connect
  <a socket of this state dir>``, owned by this user; nothing else is ever signalled.

Nothing is swept while another live daemon serves the same state dir.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from tether.protocol import shm

log = logging.getLogger("tether.daemon")

_SHM_FILE = re.compile(r"^[0-9a-f]{24}\.[a-z]{1,8}$")  # shm._new_name: 12 random bytes + suffix


def socket_prefix(state_dir: Path) -> str:
    """The folder-name prefix of this state dir's worker sockets (kept short: a socket path may
    hold 108 bytes)."""
    return f"tether-w-{hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]}-"


def _processes() -> list[tuple[int, list[str]]]:
    """(pid, argv) of this user's processes (empty where there is no /proc)."""
    found = []
    uid = os.getuid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        found.append((int(entry), argv))
    return found


def _daemon_of(argv: list[str], state_dir: Path) -> bool:
    return ("tether.daemon" in argv and "--state-dir" in argv
            and argv.index("--state-dir") + 1 < len(argv)
            and os.path.realpath(argv[argv.index("--state-dir") + 1]) == str(state_dir))


def _worker_of(argv: list[str], sockets: str) -> bool:
    return ("tether.worker.runtime" in argv and "--connect" in argv
            and argv.index("--connect") + 1 < len(argv)
            and argv[argv.index("--connect") + 1].startswith(sockets))


def sweep(state_dir: Path) -> dict[str, int]:
    """Remove what a dead daemon of ``state_dir`` left (call before starting any worker)."""
    done = {"workers": 0, "sockets": 0, "shm_files": 0}
    state_dir = Path(os.path.realpath(state_dir))
    sockets = os.path.join(tempfile.gettempdir(), socket_prefix(state_dir))
    procs = _processes()
    other = [pid for pid, argv in procs if _daemon_of(argv, state_dir)]
    if other:
        log.warning("another daemon of %s runs (pid %s): nothing swept", state_dir, other[0])
        return done
    for pid, argv in procs:
        if _worker_of(argv, sockets):
            log.warning("killing worker pid %s left by a dead daemon of %s", pid, state_dir)
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:  # it leads its own group: its children go too
                    os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            done["workers"] += 1
    parent, prefix = os.path.split(sockets)
    with contextlib.suppress(OSError):
        for entry in os.listdir(parent):
            if entry.startswith(prefix):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
                done["sockets"] += 1
    folder = shm.folder_for(state_dir)
    if folder is not None:
        done["shm_files"] = _sweep_shm(folder)
    if any(done.values()):
        log.info("swept what a dead daemon of %s left: %s", state_dir, done)
    return done


def _sweep_shm(folder: Path) -> int:
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False) and (entry.name == "probe" or _SHM_FILE.match(entry.name)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def prepare_shm(state_dir: Path) -> tuple[Path | None, str]:
    """The cluster's shared-memory folder, emptied of an earlier daemon's files (they are stale),
    and a probe file by which a caller tells it shares this machine's /dev/shm."""
    folder = shm.folder_for(state_dir)
    if folder is None:
        return None, ""
    try:
        if folder.is_symlink() or (folder.exists() and folder.stat().st_uid != os.getuid()):
            raise OSError(f"{folder} is not a folder of this user's")
        _sweep_shm(folder)
        folder.mkdir(mode=0o700, exist_ok=True)
        probe = shm.write_daemon_probe(folder)  # 0600, as frames are
    except OSError as exc:
        log.warning("no shared memory for big arguments (%s): they go through the socket", exc)
        return None, ""
    return folder, probe
