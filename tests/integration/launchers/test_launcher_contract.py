"""The launcher contract (``tether.testing.launcher_contract``), passed by both built-in launchers.

The same suite is what a third-party launcher runs against itself; here the ``local`` launcher runs
it on this machine and the ``ssh`` launcher on a test host (a network namespace with its own sshd,
``hosts.py``), each with a fresh cluster per test.
"""

from __future__ import annotations

import uuid

import pytest

import tether
from tether.testing.launcher_contract import LauncherContract


class TestLocalLauncher(LauncherContract):
    @pytest.fixture
    def contract_cluster(self):
        cluster = tether.cluster(name=f"contract-local-{uuid.uuid4().hex[:6]}", launcher="local")
        yield cluster
        cluster.teardown()


class TestSshLauncher(LauncherContract):
    @pytest.fixture
    def contract_cluster(self, ssh_hosts, ssh_cluster):
        return ssh_cluster(ssh_hosts[0], name=f"contract-ssh-{uuid.uuid4().hex[:6]}")
