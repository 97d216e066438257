"""Grants to shared clusters: the registry signs one at the caller's access level, and a daemon
verifies it offline with the key from /v1/grant-key (``tether.protocol.grants``)."""

from __future__ import annotations

import uuid

import pytest
from registry_code import embed

import tether
from tether.core.registry import remote
from tether.errors import AccessDeniedError, ConfigError
from tether.protocol import grants


@pytest.fixture(scope="module")
def registry(sqlite_registry):
    """Grants do not depend on the database: SQLite only."""
    return sqlite_registry


def test_grants_carry_the_callers_access(registry, as_user):
    name = f"granted-{uuid.uuid4().hex[:6]}"
    path = f"/alice/{name}"
    as_user("alice")
    gpu = tether.cluster(name=name, launcher="local", cpus=1).save()
    gpu.share("bob", access_level="read")
    gpu.share("group:ml", access_level="write")
    tether.function(embed).save(f"{name}-fn")
    key = remote.client().grant_key()
    assert key["issuer"] == registry.url

    for user, access in (("alice", "write"), ("bob", "read"), ("carol", "write")):
        as_user(user)
        client = remote.client()
        token = client.grant_token(path)
        assert client.grant_token(path) == token  # kept until close to its expiry
        grant = grants.verify(token, key["public_key"], cluster=path)
        assert (grant.user, grant.cluster, grant.access, grant.issuer) == (user, path, access, registry.url)
        assert grant.expires - grant.issued == grants.DEFAULT_TTL

    as_user("alice")
    with pytest.raises(ConfigError, match="is a function, not a cluster"):
        remote.client().grant(f"/alice/{name}-fn")
    gpu.unshare("bob")
    as_user("bob")
    with pytest.raises(AccessDeniedError, match="bob has no access"):
        remote.client().grant(path)
