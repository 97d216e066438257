"""The local registry: one JSON config per name under $TETHER_HOME/resources/."""

from __future__ import annotations

import json
import os

import pytest

from tether.core.registry import local
from tether.errors import ConfigError, NotFoundError


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    return tmp_path


def test_save_load_round_trip(home):
    config = {"type": "function", "name": "embed", "nested": {"a": [1, 2]}}
    path = local.save(config)
    assert path == home / "resources" / "embed.json"
    assert json.loads(path.read_text()) == config
    assert local.load("embed") == config


def test_exists_and_delete():
    assert not local.exists("gone")
    local.save({"type": "env", "name": "gone"})
    assert local.exists("gone")
    local.delete("gone")
    assert not local.exists("gone")
    local.delete("gone")  # deleting twice is fine


def test_folders_in_names(home):
    local.save({"type": "function", "name": "team/nlp/embed"})
    assert (home / "resources" / "team" / "nlp" / "embed.json").exists()
    assert local.load("/team/nlp/embed/")["name"] == "team/nlp/embed"  # outer slashes ignored
    assert local.names() == ["team/nlp/embed"]


def test_names_are_sorted():
    for name in ("b", "a", "f/c"):
        local.save({"type": "env", "name": name})
    assert local.names() == ["a", "b", "f/c"]


def test_names_of_an_empty_registry():
    assert local.names() == []


def test_save_overwrites_atomically(home):
    local.save({"type": "env", "name": "x", "v": 1})
    local.save({"type": "env", "name": "x", "v": 2})
    assert local.load("x")["v"] == 2
    assert [p.name for p in (home / "resources").iterdir()] == ["x.json"]  # no temp file left


def test_load_missing_lists_what_is_saved():
    local.save({"type": "env", "name": "present"})
    with pytest.raises(NotFoundError, match="present") as info:
        local.load("absent")
    assert "absent" in str(info.value)


def test_save_needs_a_name():
    with pytest.raises(ConfigError, match="name"):
        local.save({"type": "env", "name": None})


@pytest.mark.parametrize("name", ["/", "a//b", "../escape", "a/../../b", "./x"],
                         ids=["slash", "double-slash", "dotdot", "dotdot-inner", "dot"])
def test_bad_names_are_refused(name, home):
    for call in (lambda: local.save({"type": "env", "name": name}), lambda: local.load(name),
                 lambda: local.exists(name)):
        with pytest.raises(ConfigError, match="bad resource name"):
            call()
    assert not list(home.rglob("*.json"))  # nothing written, inside the home or beside it
    assert not list(home.parent.glob("*.json"))


def test_files_go_under_tether_home(home):
    local.save({"type": "env", "name": "here"})
    assert os.path.commonpath([home, local._path("here")]) == str(home)
