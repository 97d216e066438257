"""Team registry servers for the tests: a real ``tether registry serve`` subprocess on SQLite, and
on a real PostgreSQL (Debian's ``postgresql``: one server per test session, in a temp dir).
``sqlite_registry`` (SQLite only) is in tests/conftest.py: the provider tests use it too.

Outside CI the PostgreSQL tests skip with the reason when its binaries are missing; in CI (``CI``
set, as ``.ci/run`` runs, which installs ``postgresql``) that is a failure.
"""

from __future__ import annotations

import os

import pytest
from registry_support import Postgres, RegistryServer, missing_postgres

IN_CI = os.environ.get("CI", "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """One PostgreSQL server for the session (initdb, pg_ctl start; stopped at the end)."""
    reason = missing_postgres()
    if reason:
        if IN_CI:
            pytest.fail(f"CI must run the PostgreSQL registry tests, but: {reason}")
        pytest.skip(reason)
    server = Postgres.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def registry(request, tmp_path_factory):
    """A registry server with users alice, bob, carol (carol is in group ml), on each database."""
    home = tmp_path_factory.mktemp("registry")
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'registry.sqlite'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    server = RegistryServer.start(url, home)
    yield server
    server.stop()


@pytest.fixture
def as_user(registry, monkeypatch):
    """``as_user("bob")``: this process talks to the registry as bob (the pipelines' env vars)."""

    def use(name: str) -> None:
        monkeypatch.setenv("TETHER_REGISTRY", registry.url)
        monkeypatch.setenv("TETHER_TOKEN", registry.tokens[name])

    return use
