"""The registry's path and principal rules (its routes use these for every request)."""

from __future__ import annotations

import pytest

from tether.errors import ConfigError
from tether.registry.access import normalize_path, principal


def test_paths():
    assert normalize_path("alice/x") == normalize_path("/alice/x/") == "/alice/x"
    assert normalize_path("/alice/nlp/embed") == "/alice/nlp/embed"
    for bad in ("/alice", "/alice/../bob/x", "/alice//x", "/al ice/x", "/alice/x y"):
        with pytest.raises(ConfigError):
            normalize_path(bad)


def test_principals():
    assert principal("bob") == principal("user:bob") == "user:bob"
    assert principal("group:ml") == "group:ml"
    for bad in ("role:x", "group:", "bo b"):
        with pytest.raises(ConfigError):
            principal(bad)
