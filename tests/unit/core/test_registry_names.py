"""What a name means with and without a team registry (no server: forms that need none)."""

from __future__ import annotations

import pytest

import tether
from tether.core.registry.names import resolve
from tether.errors import ConfigError


@pytest.fixture
def no_registry(monkeypatch, tmp_path):
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    monkeypatch.delenv("TETHER_REGISTRY", raising=False)
    monkeypatch.delenv("TETHER_TOKEN", raising=False)


def test_without_a_registry_names_stay_local(no_registry):
    assert resolve("team/embed") == resolve("~/team/embed")
    address = resolve("team/embed")
    assert address.local and address.path == address.name == "team/embed"
    assert address.rns_address == "~/team/embed"
    for name in ("@/embed", "/alice/embed"):
        with pytest.raises(ConfigError, match="none is configured.*tether login"):
            resolve(name)


def test_local_names_have_one_version(no_registry):
    tether.env(reqs=["numpy"], name="one").save()
    assert tether.load("one").rns_address == "~/one"
    with pytest.raises(ConfigError, match="keeps one version"):
        tether.load("one", version=1)
    with pytest.raises(ConfigError, match="saved on this machine only"):
        tether.load("one").share("bob")


def test_absolute_names_need_no_round_trip(no_registry, monkeypatch):
    monkeypatch.setenv("TETHER_REGISTRY", "http://127.0.0.1:9")  # nothing listens: not asked
    address = resolve("/alice/nlp/embed")
    assert not address.local and address.path == "/alice/nlp/embed" and address.name == "nlp/embed"
    assert resolve("~/x").local
    with pytest.raises(ConfigError, match="bad registry name"):
        resolve("/alice")
