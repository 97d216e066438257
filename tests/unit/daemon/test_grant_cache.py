"""The daemon's grant verifier (``daemon/tokens.py`` ``Grants``): verified once, cached until expiry,
bounded; its settings from the env or the state dir. Grants are signed here with a test key (in
production the team registry signs them)."""

from __future__ import annotations

import time

import pytest

from tether import state
from tether.daemon.tokens import Grants
from tether.protocol import grants

KEY = grants.new_private_key()
PUB = grants.public_key(KEY)


def _bearer(**kw) -> bytes:
    return f"Bearer {grants.sign(KEY, **{'user': 'bob', 'cluster': '/alice/gpu', 'access': 'read', **kw})}".encode()


def test_cached_until_expiry():
    verifier = Grants(PUB, "/alice/gpu")
    token = _bearer(ttl=1)
    first = verifier.check(token)
    assert verifier.check(token) is first  # the same object: a dict lookup, no verification
    stale = verifier._verified[token] = grants.Grant(**{**first.__dict__, "expires": time.time() - 100})
    again = verifier.check(token)  # past the cached expiry: verified again (this token is still valid)
    assert again is not stale and again == first


def test_expired_other_cluster_forged():
    verifier = Grants(PUB, "/alice/gpu")
    with pytest.raises(grants.GrantError, match="expired"):
        verifier.check(_bearer(now=time.time() - 1000, ttl=60))
    with pytest.raises(grants.GrantError, match="for cluster '/alice/other'"):
        verifier.check(_bearer(cluster="/alice/other"))
    forged = f"Bearer {grants.sign(grants.new_private_key(), user='bob', cluster='/alice/gpu', access='write')}"
    with pytest.raises(grants.GrantError, match="bad signature"):
        verifier.check(forged.encode())


def test_bounded():
    verifier = Grants(PUB, "/alice/gpu", limit=3)
    tokens = [_bearer() for _ in range(5)]
    for token in tokens:
        verifier.check(token)
    assert len(verifier._verified) <= 3 and tokens[-1] in verifier._verified


def test_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("TETHER_REGISTRY_KEY", raising=False)
    monkeypatch.delenv("TETHER_CLUSTER_PATH", raising=False)
    assert Grants.configured(tmp_path) is None
    monkeypatch.setenv("TETHER_REGISTRY_KEY", PUB)
    monkeypatch.setenv("TETHER_CLUSTER_PATH", "/alice/env")
    assert Grants.configured(tmp_path).cluster == "/alice/env"  # a daemon started by hand
    state.write_registry(tmp_path, PUB, "/alice/gpu")
    assert Grants.configured(tmp_path).cluster == "/alice/gpu"  # the state dir's setting wins
    state.write_registry(tmp_path, None, None)
    assert state.read_registry(tmp_path) == (None, None)
    monkeypatch.setenv("TETHER_CLUSTER_PATH", "no-slash")
    assert Grants.configured(tmp_path) is None  # invalid: logged, no grants
