"""One node of an SSH cluster: probe it, install tether there, start and stop its daemon.

Every step is one SSH round trip running a small POSIX sh script (sent on stdin, so the user's
login shell does not matter):

1. *probe*: the home folder, the stamp of ``~/.tether/venv`` (tether version + source hash), the
   cluster's running daemon (its record and token), other clusters' running daemons, rsync, and
   every python3 on the PATH with its version, architecture and libc;
2. *install* (only when the stamp differs): ship the wheelhouse with rsync to ``~/.tether/wheels``,
   make ``~/.tether/venv`` (``--without-pip``) and install ``--no-index`` into it (with uv out of
   its wheel when the house has one, else, or when uv fails, with pip), then write the stamp. A
   failed install removes the half-made venv;
3. *start*: ``python -m tether.launchers.ssh.on_node up`` with the venv's interpreter (detached daemon on
   the node's loopback, ``~/.tether/clusters/<name>/``); it prints the record and token;
4. *stop*: SIGTERM to the daemon named by ``daemon.json`` (checked to be a tether daemon), then
   SIGKILL after 15 s. Pure sh, so it also stops a daemon of another tether version.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from tether._version import __version__
from tether.errors import LaunchError, VersionMismatchError
from tether.launchers.ssh import openssh as ssh
from tether.launchers.ssh import wheelhouse
from tether.launchers.ssh.wheelhouse import MIN_PYTHON, NodePython
from tether.protocol import wire

_PY_INFO = ('import sys, os, platform, json; print(json.dumps({"exe": sys.executable, '
            '"real": os.path.realpath(sys.executable), '
            '"version": list(sys.version_info[:3]), "machine": platform.machine(), '
            '"libc": list(platform.libc_ver()), "system": platform.system(), '
            '"impl": getattr(getattr(sys, "implementation", None), "name", "cpython")}))')

PROBE = r"""
cluster="$1"; want="$2"
T="$HOME/.tether"
pid_of() { sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' "$1" 2>/dev/null; }
echo "home=$HOME"
if [ -f "$T/venv/.tether-stamp" ] && [ -x "$T/venv/bin/python" ]; then
    echo "stamp=$(cat "$T/venv/.tether-stamp")"
fi
for rec in "$T"/clusters/*/daemon.json; do
    [ -f "$rec" ] || continue
    pid=$(pid_of "$rec")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
    dir=$(dirname "$rec"); name=$(basename "$dir")
    if [ "$name" = "$cluster" ]; then
        echo "daemon=$(cat "$rec")"
        echo "token=$(cat "$dir/token" 2>/dev/null)"
    else
        echo "running=$name"
    fi
done
command -v rsync >/dev/null 2>&1 && echo "rsync=yes"
code='PY_INFO'
candidates="python3 python3.14 python3.13 python3.12 python3.11 python"
[ -n "$want" ] && candidates="$want"
for py in $candidates; do
    exe=$(command -v "$py" 2>/dev/null) || continue
    info=$("$exe" -c "$code" </dev/null 2>/dev/null) && echo "python=$info"
done
echo "probe=done"
""".replace("PY_INFO", _PY_INFO)

# ``python -c`` this with (uv's wheel, a path): the uv binary out of its wheel, to install with
_UV_FROM_WHEEL = ("import os, sys, zipfile; w = zipfile.ZipFile(sys.argv[1]); "
                  "n = [x for x in w.namelist() if x.endswith(\".data/scripts/uv\")][0]; "
                  "open(sys.argv[2], \"wb\").write(w.read(n)); os.chmod(sys.argv[2], 0o755)")

INSTALL = r"""
set -e
py="$1"; mode="$2"; stamp="$3"
T="$HOME/.tether"
mkdir -p "$T"
if command -v flock >/dev/null 2>&1; then exec 9>"$T/install.lock"; flock 9; fi
# The install leaves ~100 MB of dirty page cache. On a small machine (or a memory cgroup) dirty
# pages cannot be reclaimed until written back, so a worker that then runs out of memory makes the
# kernel kill a second process after it, often the daemon: write them now (one syncfs), so the
# cache is clean and reclaimable.
done_installing() {
    sync -f "$T/venv" 2>/dev/null || sync
    printf '%s\n' "$stamp" > "$T/venv/.tether-stamp"
    echo installed
}
rm -rf "$T/venv"
if ! "$py" -m venv --without-pip "$T/venv" </dev/null >"$T/install.log" 2>&1; then
    cat "$T/install.log" >&2
    echo "tether-bootstrap: venv: cannot create a venv with $py" >&2
    exit 3
fi
pip=$(ls "$T"/wheels/pip-*.whl | head -n 1)
if [ "$mode" = index ]; then
    set -- --find-links "$T/wheels"
else
    export PIP_CONFIG_FILE=/dev/null
    set -- --isolated --no-index --find-links "$T/wheels"
    # uv (its wheel is in the house when the caller has it) installs the same pinned wheels several
    # times faster; when it cannot, pip does the install below (and says why it fails, if it does)
    # uv's binary goes straight to where the daemon looks for it (venv/bin/uv), written once: uv
    # then installs everything but itself (its ~40 MB wheel would write the same file again)
    uvw=$(ls "$T"/wheels/uv-*.whl 2>/dev/null | head -n 1); unpack='UV_FROM_WHEEL'
    if [ -n "$uvw" ] && "$py" -c "$unpack" "$uvw" "$T/venv/bin/uv" </dev/null >>"$T/install.log" 2>&1 \
            && grep -v '^uv==' "$T/wheels/requirements.txt" > "$T/venv/.tether-requirements.txt" \
            && "$T/venv/bin/uv" pip install --python "$T/venv/bin/python" --no-config --no-index \
               --find-links "$T/wheels" --no-cache --quiet -r "$T/venv/.tether-requirements.txt" \
               </dev/null >>"$T/install.log" 2>&1; then
        done_installing
        exit 0
    fi
    rm -rf "$T/venv"
    "$py" -m venv --without-pip "$T/venv" </dev/null >>"$T/install.log" 2>&1 || { cat "$T/install.log" >&2; exit 3; }
fi
if ! "$T/venv/bin/python" "$pip/pip" install "$@" --disable-pip-version-check --no-input \
        --no-cache-dir --quiet -r "$T/wheels/requirements.txt" </dev/null >>"$T/install.log" 2>&1; then
    cat "$T/install.log" >&2
    rm -rf "$T/venv"
    echo "tether-bootstrap: pip: the install failed" >&2
    exit 4
fi
done_installing
""".replace("UV_FROM_WHEEL", _UV_FROM_WHEEL)

INSTALL_PACKAGES = r"""
set -e
dir="$1"; shift
V="$HOME/.tether/venv"
# uv (in the venv when its wheel was sent with tether's) where it can, else pip, which then also
# says why the install fails
if [ -x "$V/bin/uv" ] && "$V/bin/uv" pip install --python "$V/bin/python" --no-config --no-index \
        --find-links "$dir" --no-cache --quiet "$@" </dev/null >/dev/null 2>&1; then
    exit 0
fi
export PIP_CONFIG_FILE=/dev/null
"$V/bin/python" -m pip install --isolated --no-index --find-links "$dir" \
    --disable-pip-version-check --no-input --no-cache-dir --quiet "$@" </dev/null
"""

STOP = r"""
st="$HOME/.tether/clusters/$1"
[ -f "$st/daemon.json" ] || { echo "not running"; exit 0; }
pid=$(sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' "$st/daemon.json")
# a zombie has exited (it waits for whoever adopted it, often init, to reap it): not running
alive() { kill -0 "$1" 2>/dev/null && ! grep -qs '^[0-9]* (.*) Z ' "/proc/$1/stat"; }
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q tether.daemon; then
        rm -f "$st/daemon.json" "$st/daemon.pid"; echo "stale record"; exit 0
    fi
    kill -TERM "$pid"
    i=0
    while alive "$pid" && [ "$i" -lt 300 ]; do sleep 0.05; i=$((i + 1)); done
    alive "$pid" && kill -KILL "$pid"
fi
rm -f "$st/daemon.json" "$st/daemon.pid"
echo stopped
"""

@dataclass
class Probe:
    """What one probe of a node found."""

    home: str
    stamp: dict[str, Any] | None
    daemon: dict[str, Any] | None
    token: str | None
    running: list[str]
    rsync: bool
    pythons: list[NodePython] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Probe:
        fields: dict[str, list[str]] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields.setdefault(key, []).append(value)
        if "probe" not in fields:
            raise ValueError("the probe did not finish")

        def one_json(key: str) -> dict[str, Any] | None:
            try:
                return json.loads(fields[key][0]) if fields.get(key) else None
            except ValueError:
                return None

        pythons, seen = [], set()
        for raw in fields.get("python", []):
            try:
                data = json.loads(raw)
                found = NodePython.from_probe(data)
            except (ValueError, KeyError, TypeError):
                continue
            if data.get("real", found.exe) not in seen:  # python3 and python: often one binary
                seen.add(data.get("real", found.exe))
                pythons.append(found)
        return cls(home=fields.get("home", [""])[0], stamp=one_json("stamp"), daemon=one_json("daemon"),
                   token=(fields.get("token") or [None])[0] or None, running=fields.get("running", []),
                   rsync=bool(fields.get("rsync")), pythons=pythons)


def stamp() -> dict[str, Any]:
    """What ``~/.tether/venv/.tether-stamp`` holds when the venv runs this process's tether."""
    return {"tether": __version__, "hash": wheelhouse.source_hash()}


def current(found: dict[str, Any] | None) -> bool:
    mine = stamp()
    return bool(found) and all(found.get(k) == v for k, v in mine.items())


class Node:
    """One machine of an SSH cluster, as the caller sees it."""

    def __init__(self, index: int, target: ssh.SshTarget, cluster: str, python: str | None = None) -> None:
        self.index, self.target, self.cluster, self.python = index, target, cluster, python

    @property
    def ip(self) -> str:
        return self.target.host

    def __repr__(self) -> str:
        return f"<Node {self.index} {self.target.label}>"

    def _error(self, cls: type[LaunchError] = LaunchError, message: str = "", **fields: Any):
        return cls(f"node {self.index} ({self.target.label}) of cluster {self.cluster!r}: {message}",
                   cluster=self.cluster, node=self.ip, **fields)

    def probe(self) -> Probe:
        proc = ssh.run_script(self.target, PROBE, [self.cluster, self.python or ""], what="look at the node")
        try:
            return Probe.parse(proc.stdout)
        except ValueError:
            raise self._error(message=f"the probe script failed (exit {proc.returncode}): "
                                      f"{proc.stderr.strip()[-1000:]}") from None

    def check_daemon(self, probe: Probe) -> None:
        """A daemon that speaks another protocol is a VersionMismatchError. One of another tether
        release (or other sources) that speaks this protocol serves this caller as it is, as a
        local daemon would; ``restart_server()`` puts this process's tether there."""
        if probe.daemon is None:
            return
        theirs, protocol = probe.daemon.get("tether"), probe.daemon.get("protocol")
        if protocol != wire.PROTOCOL_VERSION:
            raise self._error(
                VersionMismatchError,
                f"its daemon runs tether {theirs}, which speaks protocol {protocol}, and this process "
                f"runs tether {__version__} (protocol {wire.PROTOCOL_VERSION}). Restart it with this "
                "version: cluster.restart_server() (objects on the cluster are lost), or install "
                f"tether=={theirs} here.", daemon_version=theirs, client_version=__version__,
                daemon_protocol=protocol, client_protocol=wire.PROTOCOL_VERSION)

    def choose_python(self, probe: Probe) -> NodePython:
        """The node's interpreter for tether: one that is new enough, preferring our minor."""
        if not probe.pythons:
            wanted = f"{self.python!r} or python3" if self.python else "python3"
            raise self._error(message=f"no {wanted} on its PATH. Install Python >= "
                              f"{'.'.join(map(str, MIN_PYTHON))} there, or point the cluster at one "
                              "with python='/path/to/python3'.")
        if self.python:
            chosen = probe.pythons[0]
            if chosen.version[:2] < MIN_PYTHON:
                raise self._error(message=f"{self.python} is {chosen.describe}; tether needs "
                                  f"Python >= {'.'.join(map(str, MIN_PYTHON))}")
            return chosen
        usable = [p for p in probe.pythons if p.version[:2] >= MIN_PYTHON]
        if not usable:
            found = "; ".join(f"{p.exe}: {p.describe}" for p in probe.pythons)
            raise self._error(message=f"its Python is too old for tether ({found}); tether needs "
                              f"Python >= {'.'.join(map(str, MIN_PYTHON))}. Install one there, or point "
                              "the cluster at one with python='/path/to/python3'.")
        here = NodePython.here()
        same = [p for p in usable if p.version[:2] == here.version[:2] and p.machine == here.machine]
        return (same or usable)[0]

    def install(self, probe: Probe, python: NodePython, install_from: str) -> dict[str, Any]:
        """Ship the wheels and install tether into ``~/.tether/venv``; returns the new stamp."""
        if probe.running:
            raise self._error(message=f"its ~/.tether/venv runs other tether daemons (clusters "
                              f"{', '.join(probe.running)}) and would have to be replaced for tether "
                              f"{__version__}. Tear those clusters down first (or restart_server() them).")
        if not probe.rsync:
            raise self._error(message="rsync is not installed there; install it (e.g. apt-get install rsync)")
        house = wheelhouse.make_house(python, f"{self.ip} (node {self.index})", deps=install_from != "index")
        ssh.run_rsync(self.target, ["-rLt", "--delete", "--rsync-path=mkdir -p .tether/wheels && rsync",
                                    f"{house}/", f"{self.ip}:.tether/wheels/"],
                      what="ship tether's wheels")
        new = {**stamp(), "python": python.exe, "installed": time.time()}
        proc = ssh.run_script(self.target, INSTALL, [python.exe, install_from, json.dumps(new)],
                              what="install tether")
        if proc.returncode:
            raise self._install_error(proc.returncode, proc.stderr, python, install_from)
        return new

    def install_packages(self, reqs: list[str]) -> None:
        """pip install ``reqs`` into the node's ``~/.tether/venv`` from wheels fetched here and
        sent over SSH (the node needs no package index)."""
        probe = self.probe()
        exe = (probe.stamp or {}).get("python")
        python = next((p for p in probe.pythons if p.exe == exe), None) or self.choose_python(probe)
        house = wheelhouse.packages_house(reqs, python, f"{self.ip} (node {self.index})")
        dest = f".tether/wheels/packages/{house.name}"
        ssh.run_rsync(self.target, ["-rLt", f"--rsync-path=mkdir -p {dest} && rsync", f"{house}/",
                                    f"{self.ip}:{dest}/"], what="ship the packages' wheels")
        proc = ssh.run_script(self.target, INSTALL_PACKAGES, [dest, *reqs], what="install packages")
        if proc.returncode:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise self._error(message=f"pip install {' '.join(reqs)} from the wheels sent there failed:\n{tail}")

    def _install_error(self, code: int, stderr: str, python: NodePython, install_from: str) -> LaunchError:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        if code == 3:
            return self._error(message=f"{python.exe} cannot create a venv (on Debian/Ubuntu: apt-get "
                               f"install python3-venv):\n{tail}")
        if install_from == "index":
            return self._error(message="pip could not install tether's dependencies from the node's "
                               "own package index (install_from='index'): check its pip configuration "
                               "and network, or leave install_from out to send every wheel from this "
                               f"machine:\n{tail}")
        low = stderr.lower()
        if "no matching distribution" in low or "is not a supported wheel" in low or "could not find a version" in low:
            return self._error(message=f"the wheels sent from this machine do not install on its "
                               f"{python.describe}. Use install_from='index' (the node's own package "
                               f"index), or a matching Python there (python=...):\n{tail}")
        return self._error(message=f"installing tether into ~/.tether/venv failed:\n{tail}")

    def start(self, autostop_mins: float | None) -> dict[str, Any]:
        """Start (or find) the cluster's daemon; returns its record with the token. A node other
        than the head also listens on its address, for the head to forward calls to it."""
        cmd = [".tether/venv/bin/python", "-m", "tether.launchers.ssh.on_node", "up", "--cluster", self.cluster]
        if autostop_mins is not None:
            cmd += ["--autostop-mins", str(float(autostop_mins))]
        if self.index:
            cmd += ["--cluster-host", self.ip]
        proc = ssh.run(self.target, shlex.join(cmd), what="start the daemon")
        try:
            record = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            record = {"error": (proc.stderr or proc.stdout).strip()[-2000:] or f"exit code {proc.returncode}"}
        if "error" in record or proc.returncode:
            raise self._error(message=f"its daemon did not start: {record.get('error')}")
        return record

    def stop(self) -> str:
        return ssh.run_script(self.target, STOP, [self.cluster], what="stop the daemon").stdout.strip()

    def set_autostop(self, minutes: float | None) -> None:
        cmd = [".tether/venv/bin/python", "-m", "tether.launchers.ssh.on_node", "autostop", "--cluster",
               self.cluster, "--minutes", str(-1 if minutes is None else float(minutes))]
        proc = ssh.run(self.target, shlex.join(cmd), what="set autostop")
        if proc.returncode:
            raise self._error(message=f"could not set autostop: {(proc.stderr or proc.stdout).strip()[-1000:]}")
