"""Whether this machine can give a local cluster a real memory limit through cgroups.

Outside CI a test that needs them skips with the reason; in CI (``CI`` set, as ``.ci/run`` does)
the same test fails instead, so that a CI machine without them cannot pass by skipping.
"""

from __future__ import annotations

import os

import pytest

from tether.daemon import cgroups


def cgroup_problem() -> str | None:
    """Why cgroups cannot be used here, or None."""
    if os.geteuid() != 0:
        return "creating cgroups needs root"
    mounts = cgroups.find_mounts()
    if mounts.v2 is None and mounts.v1_memory is None:
        return "no memory cgroup controller (neither cgroup v2 with 'memory' nor a v1 memory hierarchy)"
    return None


def require_cgroups() -> None:
    problem = cgroup_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the cgroup memory-limit tests, and here {problem}")
    pytest.skip(problem)
