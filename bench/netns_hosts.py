"""The test hosts of ``tests/integration/hosts.py`` (network namespaces with their own sshd),
imported by path for the bench rows that need a machine reached over SSH (``remote.py``,
``scale/nodes.py``): one copy of the code that makes them, shared with the tests."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HOSTS_PY = Path(__file__).resolve().parents[1] / "tests" / "integration" / "hosts.py"


@functools.cache
def hosts_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tether_bench_hosts", HOSTS_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def missing_requirements() -> str | None:
    """Why test hosts cannot be made here (not root, no sshd, no checkout of tests/), or None."""
    if not HOSTS_PY.is_file():
        return f"{HOSTS_PY} (the test hosts) is not in this checkout"
    return hosts_module().missing_requirements()


def create(factory, count: int = 1) -> list:
    """``factory.create(count)``, with tether's ``known_hosts`` forgetting those addresses first:
    a factory's addresses are the next one's (the same slot, e.g. ``--scale``'s four nodes, then
    the remote rows' host), and a new host at a known address has a new key, which ssh refuses
    as a changed machine ("Host key verification failed")."""
    import subprocess

    from tether.launchers.ssh.openssh import ssh_dir

    made = factory.create(count)
    known = ssh_dir() / "known_hosts"
    if known.exists():
        for host in made:
            subprocess.run(["ssh-keygen", "-R", host.ip, "-f", str(known)], capture_output=True, check=False)
    return made
