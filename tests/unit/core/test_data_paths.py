"""Where a folder's path points on each system (tether.core.data.systems)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether as rh
from tether.core.data import systems


@pytest.mark.parametrize("path", ["/bucket/key/", "bucket/key", "s3://bucket/key"])
def test_object_store_paths_are_one_form(path):
    assert systems.normalize_path("s3", path) == "/bucket/key"
    assert rh.folder(path=path, system="s3").fsspec_url == "s3://bucket/key"


def test_a_url_names_its_system():
    assert rh.folder(path="s3://b/k").system == "s3"
    assert rh.folder(path="gs://b/k").system == "gs"
    assert rh.folder(path="gcs://b/k", system="gcs").fsspec_url == "gs://b/k"


def test_local_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert rh.folder(path="data").path == str(tmp_path / "data")
    assert rh.folder(path="~/data").path == str(Path.home() / "data")
    assert rh.folder(name="imgs").path == str(tmp_path / "imgs")  # Runhouse's default: ./<name>
    assert rh.folder(name="imgs", system="s3").path == "/tether-folder/imgs"


def test_config_round_trip():
    folder = rh.folder(name="f", path="/bucket/k", system="s3")
    assert rh.Folder.from_config(folder.config()).config() == folder.config() == {
        "type": "folder", "name": "f", "path": "/bucket/k", "system": "s3"}


def test_a_bad_system_says_what_it_takes():
    with pytest.raises(rh.ConfigError, match="system= takes"):
        rh.folder(path="x", system=3)
