"""Fixtures of the SSH tests: test hosts in network namespaces (``hosts.py``) and SSH clusters.

Outside CI, the SSH tests skip with the reason when this machine cannot make test hosts (not
root, no sshd/rsync/ip). In CI (``CI`` set, as ``.ci/run`` runs) they must run, so the same reason
is a failure there.
"""

from __future__ import annotations

import atexit
import os
import uuid

import hosts
import pytest

import tether

IN_CI = os.environ.get("CI", "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def test_hosts():
    """The session's ``HostFactory``: ``test_hosts.create(n, ...)`` makes more hosts."""
    reason = hosts.missing_requirements()
    if reason:
        if IN_CI:
            pytest.fail(f"CI must run the SSH tests, but: {reason}")
        pytest.skip(reason)
    factory = hosts.HostFactory()
    atexit.register(factory.close)  # a backstop: close() is idempotent
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def ssh_hosts(test_hosts) -> list[hosts.TestHost]:
    """Two ordinary hosts (python3, rsync; key and password logins), shared by the SSH tests."""
    return test_hosts.create(2, password=hosts.PASSWORD)


@pytest.fixture
def ssh_cluster():
    """Factory: ``ssh_cluster(host_or_hosts, **spec)`` -> a new SSH cluster (own name, so its own
    daemons); every cluster made is torn down after the test."""
    made: list[tether.Cluster] = []

    def make(on, name: str | None = None, creds: dict | None = None, **spec) -> tether.Cluster:
        on = on if isinstance(on, list) else [on]
        ips = spec.pop("ips", None) or [h.ip if len(on) == 1 else f"{h.user}@{h.ip}" for h in on]
        cluster = tether.cluster(name=name or f"ssh-{uuid.uuid4().hex[:8]}", ips=ips,
                                 ssh_creds=creds if creds is not None else on[0].ssh_creds(), **spec)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        try:
            cluster.teardown()
        except tether.TetherError:
            pass  # e.g. a bad-credentials cluster that never came up
