"""Fixtures shared by every test: an isolated TETHER_HOME and real local clusters.

Nothing of tether is mocked: a cluster here is a real daemon subprocess with real worker
processes, on loopback.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

# Isolate every run from the developer's ~/.tether before tether is imported anywhere.
_HOME = tempfile.mkdtemp(prefix="tether-test-home-")
os.environ["TETHER_HOME"] = _HOME
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)

import tether  # noqa: E402

_counter = itertools.count()


@pytest.fixture(scope="session")
def tether_home() -> Path:
    return Path(_HOME)


@pytest.fixture(scope="session")
def session_cluster():
    """One local cluster (a real daemon) shared by the tests that only deploy and call."""
    cluster = tether.cluster(name=f"session-{uuid.uuid4().hex[:6]}", launcher="local")
    cluster.up_if_not()
    yield cluster
    cluster.teardown()


@pytest.fixture(scope="module")
def sqlite_registry(tmp_path_factory):
    """A team registry server (``tether registry serve``) on SQLite with users alice, bob, carol
    (carol in group ml): ``.url``, ``.tokens[user]``, ``.db_url``
    (tests/integration/registry/registry_support.py)."""
    registry_tests = str(Path(__file__).parent / "integration" / "registry")
    if registry_tests not in sys.path:
        sys.path.insert(0, registry_tests)
    from registry_support import RegistryServer

    home = tmp_path_factory.mktemp("registry")
    server = RegistryServer.start(f"sqlite:///{home / 'registry.sqlite'}", home)
    yield server
    server.stop()


@pytest.fixture
def make_cluster():
    """Factory of fresh local clusters (own daemon each), torn down after the test."""
    made = []

    def make(**spec):
        cluster = tether.cluster(name=f"t{next(_counter)}-{uuid.uuid4().hex[:6]}", launcher="local", **spec)
        made.append(cluster)
        return cluster.up_if_not()

    yield make
    for cluster in made:
        cluster.teardown()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throwaway project folder on sys.path: ``project.write("mod.py", src)`` then import it."""

    class Project:
        root = tmp_path / "proj"

        def write(self, relpath: str, source: str) -> Path:
            path = self.root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
            return path

        def module_name(self, stem: str) -> str:
            """A module name unique to this test, so workers never see a stale one."""
            return f"{stem}_{uuid.uuid4().hex[:8]}"

    proj = Project()
    proj.root.mkdir()
    (proj.root / "pyproject.toml").write_text("[project]\nname = 'proj'\n")
    monkeypatch.syspath_prepend(str(proj.root))
    yield proj
    for name in [m for m in sys.modules if getattr(sys.modules[m], "__file__", "") and str(proj.root) in str(sys.modules[m].__file__)]:
        del sys.modules[name]


# -- two test processes (pytest-xdist: ``make test`` passes -n 2) ----------------------------------

try:
    import xdist
except ImportError:  # without pytest-xdist the suite runs in one process
    xdist = None

if xdist is not None:

    def pytest_xdist_make_scheduler(config, log):
        """Each folder of integration and provider tests runs in one test process: its session
        fixtures (a Prefect server, Airflow's database, PostgreSQL, the SSH test hosts and their
        installs) are made once, and its modules keep their order. Unit test files go to
        whichever process is free. The suite waits on daemons, sshd and orchestrators about half
        the time, so two processes use the two cores (README, "Two commands"). xdist's own
        ``--dist loadgroup`` cannot be used: it renames test ids in a way pytest 9 ignores."""
        from xdist.scheduler import LoadScopeScheduling

        class FolderScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                path = nodeid.split("::", 1)[0]
                parts = path.split("/")
                if len(parts) > 3 and parts[0] == "tests" and parts[1] in ("integration", "providers"):
                    return "/".join(parts[:3])
                return path

        return FolderScheduling(config, log)


# -- on a failure: what the kernel's OOM killer did ------------------------------------------------


def kernel_oom_lines(since: float, last: int = 24) -> list[str]:
    """The kernel log's OOM lines since ``since`` (epoch s; who invoked the killer, whom it killed,
    what the reaper freed): root only, else empty. Tests whose workers run into memory limits
    failed in CI now and then with *two* victims; these lines tell a real second kill from a
    misreport. The kernel log is the machine's: on a shared machine it also holds other tenants'
    kills, hence the window."""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
        booted = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return []
    keys = ("invoked oom-killer", "oom-kill:", "Killed process", "oom_reaper", "Memory cgroup out of memory")
    lines = []
    for line in out.splitlines():
        if any(k in line for k in keys):
            stamp = line[1:line.find("]")] if line.startswith("[") else ""
            try:
                if booted + float(stamp) < since:
                    continue
            except ValueError:
                pass  # a line without a stamp is kept
            lines.append(line)
    return lines[-last:]


def recent_cluster_logs(since: float, tail: int = 25) -> list[tuple[str, str]]:
    """(path, last lines) of every daemon and worker log written since ``since`` (epoch s): this
    session's local clusters and the test hosts' nodes (their homes are on this filesystem)."""
    patterns = [f"{_HOME}/clusters/*/daemon.log", f"{_HOME}/clusters/*/logs/*.log",
                "/home/tth*/.tether/clusters/*/daemon.log", "/home/tth*/.tether/clusters/*/logs/*.log"]
    found = []
    for path in sorted({p for pattern in patterns for p in glob.glob(pattern)}):
        try:
            if os.stat(path).st_mtime < since:
                continue
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * 1024))
                lines = f.read().decode(errors="replace").splitlines()[-tail:]
        except OSError:
            continue
        found.append((path, "\n".join(lines)))
    return found[-8:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        lines = kernel_oom_lines(call.start - 1)
        if lines:
            uptime = Path("/proc/uptime").read_text().split()[0]
            report.sections.append((f"kernel OOM log during the test ({len(lines)} lines; uptime now {uptime} s)",
                                    "\n".join(lines)))
        for path, text in recent_cluster_logs(call.start - 1):
            report.sections.append((f"log written during the test: {path}", text))
