"""Code sync: the caller's project root, rsync'ed to a folder on each node, so the node's worker
imports the same code by the same module path.

Which files: in a git repository, what ``git ls-files`` lists (tracked files and untracked ones
that ``.gitignore`` does not exclude; a deleted tracked file is deleted on the node too). Elsewhere
the whole tree through rsync's ``--filter=':- .gitignore'`` (every ``.gitignore`` it meets), minus
virtualenvs, caches and VCS folders. rsync's quick check runs with nanosecond mtimes, so only what
changed is sent, even an edit of the same size within the same second.

The folder on the node is ``~/.tether/code/<cluster>/<root name>-<hash of the local path>``; the
import path entries of a deploy are rewritten to point into it.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tether.core.packaging import ImportSpec
from tether.errors import ConfigError
from tether.launchers.ssh import openssh as ssh

DEFAULT_EXCLUDES = (".git/", ".hg/", ".svn/", ".venv/", "venv/", "__pycache__/", "*.pyc",
                    ".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".tox/", ".nox/",
                    "node_modules/", ".ipynb_checkpoints/")
_fingerprints: dict[tuple[str, str], str] = {}
_fingerprints_lock = threading.Lock()


@dataclass
class SyncResult:
    """What one sync sent to one node: the files (relative to the project root) and their bytes."""

    node: str
    remote_dir: str
    files: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: bool = False  # nothing changed locally since the last sync from this process

    @property
    def changed(self) -> bool:
        return bool(self.files or self.deleted)


def sync_root(spec: ImportSpec) -> Path | None:
    """The folder to sync for ``spec``: its project root, widened to hold every path entry."""
    if not spec.project_root or not spec.path_entries:
        return None
    root = os.path.commonpath([spec.project_root, *spec.path_entries])
    if root in ("/", str(Path.home())):
        raise ConfigError(
            f"the code of {spec.module} would be synced from {root}: too wide. Put a pyproject.toml "
            f"(or .git) at the root of your project, next to the folder that holds {spec.module}.")
    return Path(root)


def remote_dir(cluster: str, root: Path) -> str:
    """Where ``root`` lives on a node, relative to the node user's home."""
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    return f".tether/code/{cluster}/{root.name}-{digest}"


def remap(spec: ImportSpec, root: Path, home: str, cluster: str) -> ImportSpec:
    """``spec`` with its path entries pointing into the synced folder on a node."""
    base = f"{home.rstrip('/')}/{remote_dir(cluster, root)}"
    entries = []
    for entry in spec.path_entries:
        rel = os.path.relpath(entry, root)
        entries.append(base if rel == "." else f"{base}/{rel}")
    return ImportSpec(spec.module, spec.qualname, tuple(entries), base)


def _git_files(root: Path) -> list[str] | None:
    """Files of ``root`` by git's rules, or None if ``root`` is not in a git work tree."""
    try:
        proc = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard", "--", "."], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode:
        return None
    return sorted({p.decode() for p in proc.stdout.split(b"\0") if p})


def _fingerprint(root: Path, files: list[str] | None) -> str:
    digest = hashlib.sha1()
    if files is None:
        files = []
        skip = {e.rstrip("/") for e in DEFAULT_EXCLUDES if e.endswith("/")}
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in skip]
            files += [os.path.relpath(os.path.join(folder, n), root) for n in names if not n.endswith(".pyc")]
        files.sort()
    for rel in files:
        try:
            st = os.stat(root / rel)
            digest.update(f"{rel}\0{st.st_mtime_ns}\0{st.st_size}\0".encode())
        except OSError:
            digest.update(f"{rel}\0gone\0".encode())
    return digest.hexdigest()


def sync(target: ssh.SshTarget, root: Path, dest: str, epoch: str = "") -> SyncResult:
    """rsync ``root`` to ``dest`` (relative to the node's home) on ``target``.

    ``epoch`` names the remote state the last sync reached (e.g. the daemon's pid): when it and
    the local files are unchanged since this process's last sync, nothing is run at all.
    """
    files = _git_files(root)
    key = (f"{target.label}|{epoch}", dest)
    fingerprint = _fingerprint(root, files)
    with _fingerprints_lock:
        if _fingerprints.get(key) == fingerprint:
            return SyncResult(target.host, dest, skipped=True)
    # --rsync-path makes the folder first (rsync's own --mkpath needs 3.2.3 on both ends).
    args = ["-rlpt", "--modify-window=-1", "--out-format=%i %n",
            f"--rsync-path=mkdir -p {shlex.quote(dest)} && rsync"]
    if files is not None:
        args += ["--from0", "--files-from=-", "--delete-missing-args", f"{root}/", f"{target.host}:{dest}/"]
        data = b"\0".join(f.encode() for f in files)
    else:
        args += ["--delete", "--filter=:- .gitignore", *(f"--exclude={e}" for e in DEFAULT_EXCLUDES),
                 f"{root}/", f"{target.host}:{dest}/"]
        data = None
    proc = ssh.run_rsync(target, args, input=data, what=f"sync the code in {root}")
    result = SyncResult(target.host, dest)
    for line in proc.stdout.splitlines():
        code, _, name = line.partition(" ")
        if code[:2] in ("<f", ">f"):  # '<': sent to the remote host
            result.files.append(name)
        elif code.startswith("*deleting"):
            result.deleted.append(name.strip())
    with _fingerprints_lock:
        _fingerprints[key] = fingerprint
    return result
