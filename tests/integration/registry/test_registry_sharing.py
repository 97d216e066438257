"""Two users (three, with a group) sharing through a real registry server, on SQLite and PostgreSQL:
access levels enforced by the server (403 naming the access), versions and rollback, name forms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from registry_code import embed
from typer.testing import CliRunner

import tether
from tether.cli import app
from tether.errors import AccessDeniedError, ConfigError, NotFoundError


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def test_read_then_write_then_unshare(as_user):
    name = unique("gpu")
    as_user("alice")
    gpu = tether.cluster(name=name, launcher="local", cpus=2).save()
    assert gpu.rns_address == f"/alice/{name}" and gpu.name == name

    as_user("bob")
    with pytest.raises(AccessDeniedError, match=f"bob has no access to /alice/{name}.*read"):
        tether.load(f"/alice/{name}")

    as_user("alice")
    assert gpu.share("bob", access_level="read") == [{"principal": "user:bob", "access": "read"}]

    as_user("bob")
    loaded = tether.load(f"/alice/{name}")
    assert isinstance(loaded, tether.Cluster) and loaded.name == name
    assert loaded.rns_address == f"/alice/{name}" and loaded.config() == gpu.config()
    assert tether.cluster(f"/alice/{name}").config() == gpu.config()  # the factory's name= loading
    with pytest.raises(AccessDeniedError, match="bob has read access.*needs write access.*ask alice"):
        loaded.save()
    with pytest.raises(AccessDeniedError, match="only its owner alice"):
        loaded.share("carol")
    assert [(r["path"], r["access"]) for r in tether.shared_with_me()] == [(f"/alice/{name}", "read")]

    as_user("alice")
    gpu.share(["bob"], access_level="write")
    as_user("bob")
    assert loaded.save() is loaded  # a new version, by bob, at alice's name
    assert [(v["version"], v["created_by"]) for v in loaded.versions()] == [(1, "alice"), (2, "bob")]

    as_user("alice")
    gpu.unshare("bob")
    as_user("bob")
    with pytest.raises(AccessDeniedError, match="bob has no access"):
        tether.load(f"/alice/{name}")
    assert tether.shared_with_me() == []


def test_group_sharing(as_user):
    name = unique("embed")
    as_user("alice")
    fn = tether.function(embed).save(f"@/{name}")
    fn.share("group:ml")

    as_user("carol")  # in ml
    loaded = tether.function(name=f"/alice/{name}")
    assert loaded.config() == fn.config() and loaded.name == name
    assert [r["path"] for r in tether.shared_with_me()] == [f"/alice/{name}"]
    listed = CliRunner().invoke(app, ["ls", "--registry", "--json"])  # what carol may read
    assert [(r["path"], r["access"]) for r in json.loads(listed.stdout)] == [(f"/alice/{name}", "read")]

    as_user("bob")  # not in ml
    with pytest.raises(AccessDeniedError):
        tether.load(f"/alice/{name}")


def test_versions_and_rollback(as_user):
    name = unique("env")
    as_user("alice")
    tether.env(reqs=["numpy"], name=name).save()
    tether.env(reqs=["numpy", "pandas"], name=name).save()
    assert tether.load(name).reqs == ["numpy", "pandas"]
    assert tether.load(name, version=1).reqs == ["numpy"]
    assert tether.env(name=name).reqs == ["numpy", "pandas"]

    assert tether.rollback(name, 1) == 3
    assert tether.load(name).reqs == ["numpy"]
    listed = tether.versions(f"@/{name}")
    assert [(v["version"], v["current"]) for v in listed] == [(1, False), (2, False), (3, True)]
    with pytest.raises(NotFoundError, match="no version 9"):
        tether.load(name, version=9)

    tether.load(name).delete_configs()  # with its versions
    assert not tether.exists(name)
    with pytest.raises(NotFoundError, match=f"nothing is saved as /alice/{name}"):
        tether.load(name, version=1)


def test_name_forms(as_user, monkeypatch, tether_home):
    name = unique("fn")
    as_user("alice")
    fn = tether.function(embed)
    fn.save(f"@/{name}")
    assert tether.load(f"/alice/{name}").rns_address == f"/alice/{name}"
    assert tether.load(name).rns_address == f"/alice/{name}"  # bare = @/ with a registry
    assert tether.exists(f"@/{name}") and not tether.exists(f"~/{name}")

    fn.save(f"~/{name}")  # this machine only
    assert fn.rns_address == f"~/{name}"
    assert (tether_home / "resources" / f"{name}.json").exists()
    with pytest.raises(ConfigError, match="saved on this machine only"):
        fn.share("bob")

    monkeypatch.delenv("TETHER_REGISTRY")
    monkeypatch.delenv("TETHER_TOKEN")
    assert tether.load(name).rns_address == f"~/{name}"  # bare = local without a registry
    with pytest.raises(ConfigError, match="none is configured.*tether login"):
        tether.load(f"@/{name}")


def test_only_the_owner_creates_under_their_name(as_user):
    as_user("bob")
    with pytest.raises(AccessDeniedError, match="only alice .*may create names under /alice/"):
        tether.function(embed).save(f"/alice/{unique('x')}")


def test_another_machine_finds_the_name(as_user, registry, tmp_path):
    """A process with a TETHER_HOME of its own (another machine, another Airflow worker) finds the
    cluster alice saved, through the registry alone."""
    name = unique("shared")
    as_user("alice")
    gpu = tether.cluster(name=name, launcher="local", cpus=1).save()
    gpu.share("bob")
    code = (f"import json, tether; c = tether.cluster('/alice/{name}'); "
            "print(json.dumps([c.name, c.rns_address, c.config()]))")
    env = {**os.environ, "TETHER_HOME": str(tmp_path), "TETHER_REGISTRY": registry.url,
           "TETHER_TOKEN": registry.tokens["bob"]}
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=60, check=True)
    assert json.loads(found.stdout) == [name, f"/alice/{name}", json.loads(json.dumps(gpu.config()))]
    assert not (tmp_path / "resources").exists()  # nothing came from a local registry
